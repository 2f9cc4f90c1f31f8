// `m2sa eval --nproc 2` (two Gloo ranks, each scoring its share of the items) reports exactly the totals of one
// process, on an item count that two ranks do not divide evenly (no padded item is counted twice). Label `long`.
#include <gtest/gtest.h>

#include "infer/infer_test_util.h"
#include "m2sa/core/json_reader.h"
#include "m2sa/data/synth.h"
#include "m2sa/infer/model_export.h"
#include "test_util.h"

namespace m2sa {
namespace {
namespace fs = std::filesystem;

TEST(EvalDist, TwoRanksReportTheTotalsOfOneProcess) {
  test::TempDir tmp("m2sa_eval_dist");
  data::SynthOptions so;
  so.train_images = 2;
  so.val_images = 7;  // odd: rank 0 scores 4 items, rank 1 scores 3
  so.test_images = 1;
  so.min_size = 96;
  so.max_size = 160;
  data::write_synthetic_dataset(tmp / "data", so);
  infer::ExportOptions eo;
  eo.dtype = at::kFloat;
  m2sa_model::M2SAForCausalLM model = test::tiny_model(3);
  model->eval();
  infer::export_model(*model, test::tiny_tokenizer(), tmp / "model", eo);

  for (const std::string mode : {"teacher-forced", "generate"}) {
    SCOPED_TRACE(mode);
    auto run = [&](int nproc) {
      const fs::path out = tmp / (mode + "_" + std::to_string(nproc) + ".json");
      const auto r = test::run_cli({"eval", "--model", (tmp / "model").string(), "--dataset-dir",
                                    (tmp / "data").string(), "--split", "val", "--mode", mode, "--max-new-tokens", "8",
                                    "--batch", "2", "--nproc", std::to_string(nproc), "--out", out.string()},
                                   "M2SA_NUM_THREADS=1 OMP_NUM_THREADS=1");
      EXPECT_EQ(r.exit_code, 0) << r.output;
      return read_json_file(out);
    };
    const json one = run(1), two = run(2);
    EXPECT_EQ(one.at("world_size"), 1);
    EXPECT_EQ(two.at("world_size"), 2);
    EXPECT_EQ(one.at("counts"), two.at("counts"));
    EXPECT_EQ(one.at("seg_count"), two.at("seg_count"));
    EXPECT_EQ(one.at("sums"), two.at("sums"));
    EXPECT_EQ(one.at("giou").get<double>(), two.at("giou").get<double>());
    EXPECT_EQ(one.at("ciou").get<double>(), two.at("ciou").get<double>());
    EXPECT_EQ(one.at("counts").at("images_seen"), 7);
    std::printf("%s: gIoU %.6f cIoU %.6f over %d images with 1 and 2 ranks\n", mode.c_str(),
                one.at("giou").get<double>(), one.at("ciou").get<double>(), 7);
  }
}

}  // namespace
}  // namespace m2sa
