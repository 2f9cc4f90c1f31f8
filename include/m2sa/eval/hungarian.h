#pragma once
// Minimum-cost one-to-one assignment (Hungarian / Kuhn-Munkres with potentials, O(n^2 m) for n <= m) on a
// rectangular matrix. Used by the generate-mode evaluator to match predicted masks to GT masks by IoU.
#include <cstdint>
#include <vector>

namespace m2sa::eval {

// cost: row-major [rows, cols], finite values. Returns, for every row, the column assigned to it, or -1 when
// rows > cols and the row is left unassigned. Exactly min(rows, cols) rows are assigned, the total cost is
// minimal, and the result is deterministic. Non-finite costs or a size mismatch are m2sa::Error.
std::vector<int64_t> min_cost_assignment(const std::vector<double>& cost, int64_t rows, int64_t cols);

// The same on a score to maximise (e.g. IoU): row -> column or -1.
std::vector<int64_t> max_score_assignment(const std::vector<double>& score, int64_t rows, int64_t cols);

}  // namespace m2sa::eval
