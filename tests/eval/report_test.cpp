#include "m2sa/eval/report.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <functional>

#include "eval/text_masks.h"
#include "m2sa/core/error.h"
#include "test_util.h"

namespace m2sa::eval {
namespace {

using test::text_masks;

// Two images, 1 x 4 pixels:
//   image 1: cup  gt 1100 / pred 1100 (I 2, U 2), handle (part) gt 0011 / pred 0010 (I 1, U 2)
//   image 2: no prediction for 1 GT mask -> skipped (teacher-forced)
// gIoU = (2/(2+1e-5) + 1/(2+1e-5)) / (2 + 1e-5) = 0.7499944; cIoU = 3 / 4.
SegMeter small_meter() {
  SegMeter meter(EvalMode::kTeacherForced);
  meter.add(text_masks({{"1100"}, {"0010"}}), text_masks({{"1100"}, {"0011"}}), {},
            {{"the cup", "cup", false}, {"its handle", "cup:handle", true}});
  meter.add(text_masks({}, 1, 4), text_masks({{"0110"}}), {}, {{"the mug", "mug", false}});
  return meter;
}

TEST(EvalReport, JsonHasScoresCountsCategoriesAndTiming) {
  SegMeter meter = small_meter();
  ReportInfo info;
  info.split = "test/obj";
  info.model = "runs/tiny";
  info.seconds = 4.0;
  info.top_k = 5;
  info.extra = {{"batch_size", 2}};
  json r = make_report(meter, info);
  EXPECT_EQ(r["split"], "test/obj");
  EXPECT_EQ(r["mode"], "teacher-forced");
  const double giou = (2 / (2 + 1e-5) + 1 / (2 + 1e-5)) / (2 + 1e-5);
  EXPECT_DOUBLE_EQ(r["giou"].get<double>(), giou);
  EXPECT_DOUBLE_EQ(r["ciou"].get<double>(), 3.0 / (4.0 + 1e-10));
  EXPECT_EQ(r["counts"]["images_seen"], 2);
  EXPECT_EQ(r["counts"]["images_skipped"], 1);
  EXPECT_EQ(r["counts"]["masks_scored"], 2);
  EXPECT_EQ(r["counts"]["masks_skipped"], 1);
  EXPECT_EQ(r["seg_count"]["exact"], 1);
  EXPECT_EQ(r["seg_count"]["too_few"], 1);
  EXPECT_EQ(r["categories"]["objects"]["num_categories"], 1);  // the skipped mug is not counted
  EXPECT_EQ(r["categories"]["objects"]["most_frequent"][0]["name"], "cup");
  EXPECT_EQ(r["categories"]["parts"]["most_frequent"][0]["name"], "cup:handle");
  EXPECT_DOUBLE_EQ(r["categories"]["parts"]["most_frequent"][0]["ciou"].get<double>(), 1 / (2 + 1e-10));
  EXPECT_DOUBLE_EQ(r["timing"]["s_per_image"].get<double>(), 2.0);
  EXPECT_EQ(r["extra"]["batch_size"], 2);
  // The raw sums let a later tool recompute or merge: they give back the same gIoU.
  EXPECT_DOUBLE_EQ(MetricSums::from_json(r["sums"], "report.sums").giou(), giou);

  test::TempDir dir;
  write_report(dir / "eval" / "report.json", r);
  json back = read_json_file(dir / "eval" / "report.json");
  EXPECT_EQ(back, r);
  // No temp file is left behind next to the report.
  int files = 0;
  for (const auto& e : std::filesystem::directory_iterator(dir / "eval")) files += e.is_regular_file() ? 1 : 0;
  EXPECT_EQ(files, 1);
}

TEST(EvalReport, TableShowsPercentagesCountsAndCategories) {
  ReportInfo info;
  info.split = "val";
  info.seconds = 1.5;
  json r = make_report(small_meter(), info);
  std::string t = format_report_table(r);
  EXPECT_NE(t.find("split val  mode teacher-forced"), std::string::npos) << t;
  EXPECT_NE(t.find("gIoU 75.00   cIoU 75.00"), std::string::npos) << t;  // 0.7499944 -> 75.00
  EXPECT_NE(t.find("1 skipped (no prediction)"), std::string::npos) << t;
  EXPECT_NE(t.find("1 exact, 1 too few, 0 too many"), std::string::npos) << t;
  EXPECT_NE(t.find("Most frequent object categories (1 of 1)"), std::string::npos) << t;
  EXPECT_NE(t.find("Least frequent part categories (1 of 1)"), std::string::npos) << t;
  EXPECT_NE(t.find("cup:handle"), std::string::npos) << t;
  std::string summary = format_summary_table({r, r});
  EXPECT_NE(summary.find("val    teacher-forced"), std::string::npos) << summary;
  EXPECT_NE(summary.find("75.00   75.00"), std::string::npos) << summary;
  json broken = r;
  broken.erase("counts");
  try {
    format_report_table(broken);
    FAIL() << "expected an error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("counts: required field is missing"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace m2sa::eval
