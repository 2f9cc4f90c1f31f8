// The trainer's TensorBoard log and validation previews, read back with TensorBoard's own EventAccumulator
// (tests/tools/check_tensorboard.py, in the test Python that scripts/setup-deps.sh prepares).
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <fstream>

#include "m2sa/core/json_reader.h"
#include "m2sa/io/tensorboard_events.h"
#include "m2sa/vision/image_io.h"
#include "test_util.h"
#include "train/toy_task.h"

namespace m2sa {
namespace {
namespace fs = std::filesystem;

test::CliResult check_tensorboard(const fs::path& run_dir, int min_images) {
  return test::run_python({std::string(M2SA_SOURCE_DIR) + "/tests/tools/check_tensorboard.py", run_dir.string(),
                           "--min-images", std::to_string(min_images)});
}

TEST(TrainTensorboard, EveryScalarOnceAfterAKillAndResume) {
  test::ToyOptions o;
  o.steps = 4;
  o.epochs = 2;  // validations at steps 4 and 8
  o.validate = true;
  o.val_samples = 8;
  // A 8x16 picture of the first validation item's image and the model's prediction.
  o.previews = [](const train::StepInfo& info) {
    at::Tensor img = at::full({8, 16, 3}, static_cast<int64_t>(10 * info.step % 256), at::kByte);
    return std::vector<train::PreviewImage>{{"item-0", encode_image(img, ".png"), 8, 16, 3, json{{"question", "q"}}}};
  };
  auto comm = dist::make_local_communicator();
  test::TempDir dir;
  // Killed in step 6, after its metrics line and events were written; the checkpoint of step 5 is the latest.
  ASSERT_TRUE(test::run_toy_until_killed(o, *comm, dir.path(), 6));
  // A record torn by the kill at the end of the file.
  const std::vector<fs::path> files = io::event_files(dir / "tb");
  ASSERT_EQ(files.size(), 1u);
  {
    std::ofstream(files[0], std::ios::app | std::ios::binary) << std::string("\x20\x00\x00", 3);
  }
  test::ToyRun resumed = test::run_toy(o, *comm, dir.path(), /*resume=*/true);
  EXPECT_EQ(resumed.summary.start_step, 5);
  EXPECT_EQ(io::event_files(dir / "tb").size(), 2u);

  const test::CliResult r = check_tensorboard(dir.path(), 2);
  std::cout << r.output;
  ASSERT_EQ(r.exit_code, 0) << "with " << test::test_python() << " (scripts/setup-deps.sh installs tensorboard)";
  const json counts = json::parse(r.output.substr(0, r.output.find('\n')));
  EXPECT_EQ(counts["max_step"], 8);
  EXPECT_EQ(counts["image_events"], 2);  // steps 4 and 8
  for (const char* tag : {"train/loss", "train/lr", "train/grad_norm", "train/samples_per_s", "train/mask_bce",
                          "train/mask_dice", "val/giou", "val/ciou"})
    EXPECT_NE(std::find(counts["tags"].begin(), counts["tags"].end(), tag), counts["tags"].end()) << tag;
  // The previews of both validations, as files for the report.
  for (const char* step : {"step-000004", "step-000008"}) {
    EXPECT_TRUE(fs::exists(dir / "previews" / step / "item-0.png")) << step;
    const json index = read_json_file(dir / "previews" / step / "previews.json");
    ASSERT_EQ(index.size(), 1u);
    EXPECT_EQ(index[0]["file"], "item-0.png");
    EXPECT_EQ(index[0]["question"], "q");
  }
}

// The check itself fails on a duplicated step (what a resume without the trim would leave).
TEST(TrainTensorboard, CheckerCatchesADuplicatedStep) {
  test::ToyOptions o;
  o.steps = 2;
  auto comm = dist::make_local_communicator();
  test::TempDir dir;
  test::run_toy(o, *comm, dir.path());
  io::EventWriter extra(dir / "tb");
  extra.add_scalar("train/loss", 2, 0.5);
  const test::CliResult r = check_tensorboard(dir.path(), 0);
  EXPECT_NE(r.exit_code, 0);
  EXPECT_NE(r.output.find("('train/loss', 2) logged 2 times"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace m2sa
