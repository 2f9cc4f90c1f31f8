#include "m2sa/eval/hungarian.h"

#include <gtest/gtest.h>

#include <cmath>
#include <functional>
#include <limits>
#include <random>

#include "m2sa/core/error.h"

namespace m2sa::eval {
namespace {

// Minimum total cost over all assignments of min(rows, cols) pairs, by exhaustive search.
double brute_force_min(const std::vector<double>& cost, int64_t rows, int64_t cols) {
  const bool by_rows = rows <= cols;  // assign every element of the smaller side
  const int64_t n = by_rows ? rows : cols, m = by_rows ? cols : rows;
  std::vector<char> used(static_cast<size_t>(m), 0);
  double best = std::numeric_limits<double>::infinity();
  std::function<void(int64_t, double)> rec = [&](int64_t k, double acc) {
    if (k == n) {
      best = std::min(best, acc);
      return;
    }
    for (int64_t t = 0; t < m; ++t) {
      if (used[static_cast<size_t>(t)]) continue;
      used[static_cast<size_t>(t)] = 1;
      const double c = by_rows ? cost[static_cast<size_t>(k * cols + t)] : cost[static_cast<size_t>(t * cols + k)];
      rec(k + 1, acc + c);
      used[static_cast<size_t>(t)] = 0;
    }
  };
  rec(0, 0.0);
  return best;
}

// Checks that `a` is a valid assignment (each column at most once, exactly min(rows, cols) rows assigned) and
// returns its total cost.
double total_cost(const std::vector<int64_t>& a, const std::vector<double>& cost, int64_t rows, int64_t cols) {
  EXPECT_EQ(static_cast<int64_t>(a.size()), rows);
  std::vector<int> col_used(static_cast<size_t>(cols), 0);
  int64_t assigned = 0;
  double total = 0;
  for (int64_t i = 0; i < rows; ++i) {
    const int64_t j = a[static_cast<size_t>(i)];
    if (j < 0) continue;
    EXPECT_LT(j, cols);
    EXPECT_EQ(col_used[static_cast<size_t>(j)]++, 0) << "column " << j << " assigned twice";
    ++assigned;
    total += cost[static_cast<size_t>(i * cols + j)];
  }
  EXPECT_EQ(assigned, std::min(rows, cols));
  return total;
}

TEST(Hungarian, BeatsGreedyOnIouMatrix) {
  // IoU (GT rows x prediction columns). Greedy takes the largest entry first (0.9 at [0][0]), which forces
  // [1][1] = 0.0: total 0.9. The optimum pairs [0][1] + [1][0] = 0.8 + 0.85 = 1.65.
  const std::vector<double> iou = {0.9, 0.8,  //
                                   0.85, 0.0};
  std::vector<int64_t> a = max_score_assignment(iou, 2, 2);
  EXPECT_EQ(a, (std::vector<int64_t>{1, 0}));
}

TEST(Hungarian, RectangularBothWays) {
  // 2 rows x 3 columns: row 0 prefers column 2, row 1 column 0; column 1 stays free.
  const std::vector<double> cost = {5, 4, 1,  //
                                    2, 3, 6};
  EXPECT_EQ(min_cost_assignment(cost, 2, 3), (std::vector<int64_t>{2, 0}));
  // 3 rows x 2 columns (the transpose): one row is left unassigned.
  const std::vector<double> t = {5, 2,  //
                                 4, 3,  //
                                 1, 6};
  EXPECT_EQ(min_cost_assignment(t, 3, 2), (std::vector<int64_t>{1, -1, 0}));
}

TEST(Hungarian, MatchesBruteForceOnRandomMatrices) {
  std::mt19937 rng(1234);
  std::uniform_real_distribution<double> uni(-1.0, 1.0);
  std::uniform_int_distribution<int> coarse(0, 3);  // many ties
  for (int trial = 0; trial < 300; ++trial) {
    const int64_t rows = 1 + trial % 6, cols = 1 + (trial / 6) % 6;
    std::vector<double> cost(static_cast<size_t>(rows * cols));
    for (double& c : cost) c = trial % 2 ? uni(rng) : coarse(rng);
    std::vector<int64_t> a = min_cost_assignment(cost, rows, cols);
    EXPECT_NEAR(total_cost(a, cost, rows, cols), brute_force_min(cost, rows, cols), 1e-12)
        << "trial " << trial << " (" << rows << "x" << cols << ")";
  }
}

TEST(Hungarian, EmptyAndBadInputs) {
  EXPECT_TRUE(min_cost_assignment({}, 0, 3).empty());
  EXPECT_EQ(min_cost_assignment({}, 2, 0), (std::vector<int64_t>{-1, -1}));
  try {
    min_cost_assignment({1.0, std::nan("")}, 1, 2);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("cost[0][1] is not finite"), std::string::npos) << e.what();
  }
  EXPECT_THROW(min_cost_assignment({1.0, 2.0, 3.0}, 2, 2), Error);
}

}  // namespace
}  // namespace m2sa::eval
