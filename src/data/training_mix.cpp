#include "m2sa/data/training_mix.h"

#include <spdlog/spdlog.h>

#include <iomanip>
#include <sstream>

#include "m2sa/data/mmr_dataset.h"
#include "m2sa/data/refer_datasets.h"
#include "m2sa/data/sem_seg_datasets.h"
#include "m2sa/data/templates.h"
#include "m2sa/data/vqa_reason_datasets.h"

namespace m2sa::data {

TrainingMix::TrainingMix(const DataConfig& c, int rank) : skip_bad_(c.skip_bad), max_redraws_(c.max_redraws) {
  c.validate();
  const QuestionLists lists = compose_question_lists(c.datasets, c.use_expand_question_list);
  SemSegOptions sem;
  sem.num_classes_per_sample = c.num_classes_per_sample;
  sem.num_classes_per_question = c.num_classes_per_question;
  sem.ade20k_classes = c.ade20k_classes;
  sem.cocostuff_classes = c.cocostuff_classes;
  sem.skip_bad = c.skip_bad;
  for (std::size_t i = 0; i < c.datasets.size(); ++i) {
    DatasetFamily fam;
    fam.name = c.datasets[i];
    fam.rate = c.sample_rates[i];
    with_context("opening training family " + fam.name, [&] {
      if (fam.name == "sem_seg") {
        for (const auto& ds : c.sem_seg_data) {
          if (ds == "ade20k") fam.datasets.push_back(make_ade20k_dataset(c.dataset_dir, sem, lists));
          else if (ds == "cocostuff") fam.datasets.push_back(make_cocostuff_dataset(c.dataset_dir, sem, lists));
          else if (ds == "mapillary") fam.datasets.push_back(make_mapillary_dataset(c.dataset_dir, sem, lists));
          else if (ds == "paco_lvis") fam.datasets.push_back(make_paco_lvis_dataset(c.dataset_dir, sem, lists, report_.get()));
          else if (ds == "pascal_part") fam.datasets.push_back(make_pascal_part_dataset(c.dataset_dir, sem, lists, report_.get()));
        }
      } else if (fam.name == "refer_seg") {
        ReferOptions ro{c.num_classes_per_sample, c.num_classes_per_question, c.skip_bad};
        for (const auto& ds : c.refer_seg_data)
          fam.datasets.push_back(std::make_unique<ReferTrainDataset>(c.dataset_dir, ds, ro, lists, report_.get()));
      } else if (fam.name == "vqa") {
        fam.datasets.push_back(std::make_unique<VqaDataset>(c.dataset_dir, c.vqa_data, c.skip_bad, report_.get()));
      } else if (fam.name == "reason_seg") {
        fam.datasets.push_back(std::make_unique<ReasonSegTrainDataset>(c.dataset_dir, c.reason_seg_data, c.explanatory,
                                                                       c.num_classes_per_sample, lists));
      } else if (fam.name == "mmr") {
        MmrOptions mo{c.mmr_data, c.num_classes_per_sample, c.skip_bad};
        fam.datasets.push_back(std::make_unique<MmrTrainDataset>(c.dataset_dir, mo, lists, report_.get()));
      }
      return 0;
    });
    families_.push_back(std::move(fam));
  }
  init_sampler(c.seed, rank);
  if (report_->count() > 0) spdlog::warn("training data: {}", report_->summary());
}

TrainingMix::TrainingMix(std::vector<DatasetFamily> families, uint64_t seed, int rank, bool skip_bad, int max_redraws)
    : families_(std::move(families)), skip_bad_(skip_bad), max_redraws_(max_redraws) {
  M2SA_CHECK(max_redraws_ >= 1, "TrainingMix: max_redraws must be >= 1");
  init_sampler(seed, rank);
}

void TrainingMix::init_sampler(uint64_t seed, int rank) {
  std::vector<SamplerFamily> fams;
  for (const auto& f : families_) {
    SamplerFamily sf{f.name, f.rate, {}, {}};
    M2SA_CHECK(!f.datasets.empty(), "training family ", f.name, " has no datasets");
    for (const auto& d : f.datasets) {
      if (d->size() < 1) fail("training dataset ", d->name(), " (family ", f.name, ") has no items");
      sf.datasets.push_back(d->name());
      sf.sizes.push_back(d->size());
    }
    fams.push_back(std::move(sf));
  }
  sampler_ = MixedSampler(std::move(fams), seed, rank);
}

Sample TrainingMix::sample(int64_t step) const {
  std::string last_problem;
  for (int attempt = 0; attempt < max_redraws_; ++attempt) {
    const Draw d = sampler_.draw(step, attempt);
    const TrainDataset& ds = *families_[static_cast<std::size_t>(d.family)].datasets[static_cast<std::size_t>(d.dataset)];
    Rng rng(d.seed);
    try {
      std::optional<Sample> s = ds.get(d.item, rng);
      if (s) return std::move(*s);
      ++empty_draws_;
      last_problem = ds.name() + " item " + std::to_string(d.item) + " has nothing to segment";
    } catch (const BadEntry& e) {
      if (!skip_bad_)
        fail(e.what(), "\n(training step ", step, ", dataset ", ds.name(), ", item ", d.item,
             "; set skip_bad / --skip-bad to skip bad entries and count them)");
      report_->add(ds.name(), e.what());
      last_problem = e.what();
    }
  }
  fail("training step ", step, ": ", max_redraws_, " draws in a row gave no usable sample; last: ", last_problem);
}

std::string TrainingMix::describe() const {
  std::ostringstream out;
  const auto p = sampler_.probabilities();
  for (std::size_t i = 0; i < families_.size(); ++i) {
    out << families_[i].name << ": rate " << families_[i].rate << " (p=" << std::fixed << std::setprecision(3) << p[i]
        << ")";
    out.unsetf(std::ios::fixed);
    for (const auto& d : families_[i].datasets) out << ", " << d->name() << " " << d->size();
    out << "\n";
  }
  return out.str();
}

}  // namespace m2sa::data
