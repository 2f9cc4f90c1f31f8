#include "m2sa/eval/hungarian.h"

#include <algorithm>
#include <cmath>
#include <limits>

#include "m2sa/core/error.h"

namespace m2sa::eval {

namespace {

// Shortest augmenting path with row/column potentials; needs n <= m. a(i, j) is the cost of row i, column j.
// Returns the column of each row. (Classic formulation: potentials u, v keep reduced costs a - u - v >= 0;
// each row is added by a Dijkstra-like search over columns, then the path is flipped.)
template <typename Cost>
std::vector<int64_t> solve(int64_t n, int64_t m, const Cost& a) {
  const double inf = std::numeric_limits<double>::infinity();
  std::vector<double> u(static_cast<size_t>(n + 1), 0.0), v(static_cast<size_t>(m + 1), 0.0);
  std::vector<int64_t> p(static_cast<size_t>(m + 1), 0), way(static_cast<size_t>(m + 1), 0);  // p[j]: row of col j
  for (int64_t i = 1; i <= n; ++i) {
    p[0] = i;
    int64_t j0 = 0;
    std::vector<double> minv(static_cast<size_t>(m + 1), inf);
    std::vector<char> used(static_cast<size_t>(m + 1), 0);
    do {
      used[static_cast<size_t>(j0)] = 1;
      const int64_t i0 = p[static_cast<size_t>(j0)];
      double delta = inf;
      int64_t j1 = -1;
      for (int64_t j = 1; j <= m; ++j) {
        if (used[static_cast<size_t>(j)]) continue;
        const double cur = a(i0 - 1, j - 1) - u[static_cast<size_t>(i0)] - v[static_cast<size_t>(j)];
        if (cur < minv[static_cast<size_t>(j)]) {
          minv[static_cast<size_t>(j)] = cur;
          way[static_cast<size_t>(j)] = j0;
        }
        if (j1 < 0 || minv[static_cast<size_t>(j)] < delta) {
          delta = minv[static_cast<size_t>(j)];
          j1 = j;
        }
      }
      for (int64_t j = 0; j <= m; ++j) {
        if (used[static_cast<size_t>(j)]) {
          u[static_cast<size_t>(p[static_cast<size_t>(j)])] += delta;
          v[static_cast<size_t>(j)] -= delta;
        } else {
          minv[static_cast<size_t>(j)] -= delta;
        }
      }
      j0 = j1;
    } while (p[static_cast<size_t>(j0)] != 0);
    do {
      const int64_t j1 = way[static_cast<size_t>(j0)];
      p[static_cast<size_t>(j0)] = p[static_cast<size_t>(j1)];
      j0 = j1;
    } while (j0 != 0);
  }
  std::vector<int64_t> row_to_col(static_cast<size_t>(n), -1);
  for (int64_t j = 1; j <= m; ++j)
    if (p[static_cast<size_t>(j)] != 0) row_to_col[static_cast<size_t>(p[static_cast<size_t>(j)] - 1)] = j - 1;
  return row_to_col;
}

}  // namespace

std::vector<int64_t> min_cost_assignment(const std::vector<double>& cost, int64_t rows, int64_t cols) {
  M2SA_CHECK(rows >= 0 && cols >= 0 && static_cast<int64_t>(cost.size()) == rows * cols,
             "assignment: cost matrix has ", cost.size(), " entries, expected rows x cols = ", rows, " x ", cols);
  for (size_t k = 0; k < cost.size(); ++k)
    M2SA_CHECK(std::isfinite(cost[k]), "assignment: cost[", static_cast<int64_t>(k) / std::max<int64_t>(cols, 1),
               "][", static_cast<int64_t>(k) % std::max<int64_t>(cols, 1), "] is not finite (", cost[k], ")");
  if (rows == 0) return {};
  if (cols == 0) return std::vector<int64_t>(static_cast<size_t>(rows), -1);
  if (rows <= cols)
    return solve(rows, cols, [&](int64_t i, int64_t j) { return cost[static_cast<size_t>(i * cols + j)]; });
  // More rows than columns: solve the transpose (columns as rows), then invert.
  std::vector<int64_t> col_to_row =
      solve(cols, rows, [&](int64_t j, int64_t i) { return cost[static_cast<size_t>(i * cols + j)]; });
  std::vector<int64_t> row_to_col(static_cast<size_t>(rows), -1);
  for (int64_t j = 0; j < cols; ++j) row_to_col[static_cast<size_t>(col_to_row[static_cast<size_t>(j)])] = j;
  return row_to_col;
}

std::vector<int64_t> max_score_assignment(const std::vector<double>& score, int64_t rows, int64_t cols) {
  std::vector<double> cost(score.size());
  for (size_t k = 0; k < score.size(); ++k) cost[k] = -score[k];
  return min_cost_assignment(cost, rows, cols);
}

}  // namespace m2sa::eval
