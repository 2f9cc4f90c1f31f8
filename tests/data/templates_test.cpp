#include "m2sa/data/templates.h"

#include <gtest/gtest.h>

#include <map>
#include <set>

#include "data_test_util.h"

namespace m2sa::data {
namespace {

TEST(Templates, VerbatimListsOfTheReference) {
  EXPECT_EQ(short_question_list().size(), 4u);
  EXPECT_EQ(expand_question_list().size(), 14u);
  EXPECT_EQ(long_question_list().size(), 2u);
  EXPECT_EQ(expand_long_question_list().size(), 5u);
  EXPECT_EQ(answer_list().size(), 5u);
  EXPECT_EQ(single_answer_list().size(), 3u);
  EXPECT_EQ(multi_answer_list().size(), 11u);
  EXPECT_EQ(explanatory_question_list().size(), 3u);
  EXPECT_EQ(short_question_list()[3], "<image>\nWhat is {class_name} in this image? Please output segmentation mask.");
  EXPECT_EQ(expand_question_list()[5], "<image>\nCan you provide me with asegment of the {class_name}?");  // sic
  EXPECT_EQ(long_question_list()[0], "<image>\n{sent} Please respond with segmentation mask.");
  EXPECT_EQ(expand_long_question_list()[3], "<image>\n{sent} I'd appreciate segmentation masks.");
  EXPECT_EQ(multi_answer_list()[4], "the segmentation result of {class_name} are {seg}.");
  for (const auto* list : {&short_question_list(), &expand_question_list(), &long_question_list(), &expand_long_question_list()})
    for (const auto& q : *list) EXPECT_EQ(q.rfind("<image>\n", 0), 0u) << q;
}

TEST(Templates, Trap9ListComposition) {
  // M2SA default mix: SHORT extended by sem_seg and refer_seg, LONG by mmr.
  QuestionLists m2sa = compose_question_lists({"sem_seg", "refer_seg", "vqa", "mmr"}, true);
  EXPECT_EQ(m2sa.short_questions.size(), 32u);
  EXPECT_EQ(m2sa.long_questions.size(), 7u);
  // Each EXPAND entry appears twice, each SHORT entry once.
  std::map<std::string, int> n;
  for (const auto& q : m2sa.short_questions) ++n[q];
  EXPECT_EQ(n[short_question_list()[0]], 1);
  EXPECT_EQ(n[expand_question_list()[0]], 2);
  EXPECT_EQ(compose_question_lists({"refer_seg", "mmr"}, true).short_questions.size(), 18u);
  EXPECT_EQ(compose_question_lists({"vqa", "reason_seg"}, true).short_questions.size(), 4u);  // ReasonSeg adds nothing
  EXPECT_EQ(compose_question_lists({"vqa", "reason_seg"}, true).long_questions.size(), 2u);
  QuestionLists off = compose_question_lists({"sem_seg", "refer_seg", "vqa", "mmr"}, false);
  EXPECT_EQ(off.short_questions.size(), 4u);
  EXPECT_EQ(off.long_questions.size(), 2u);
}

TEST(Templates, PythonFormatSemantics) {
  EXPECT_EQ(py_format("{a} and {b}", {{"a", "x"}, {"b", "y"}}), "x and y");
  EXPECT_EQ(py_format("{{lit}} {a}", {{"a", "{b}"}}), "{lit} {b}");  // inserted text is not re-formatted
  EXPECT_NE(test::error_of([] { py_format("{nope}", {{"a", "x"}}, "answer 3"); }).find("answer 3: unknown field {nope}"),
            std::string::npos);
  EXPECT_NE(test::error_of([] { py_format("a } b", {}); }).find("single '}'"), std::string::npos);
  EXPECT_NE(test::error_of([] { py_format("a { b", {}); }).find("unbalanced '{'"), std::string::npos);
  EXPECT_EQ(count_of("x {seg} and {seg}.", "{seg}"), 2u);
  EXPECT_EQ(join_and({"a"}), "a");
  EXPECT_EQ(join_and({"a", "b"}), "a and b");
  EXPECT_EQ(join_and({"a", "b", "c"}), "a, b and c");
  EXPECT_EQ(lower("The Wall"), "the wall");
  EXPECT_EQ(strip_paren_suffix("bottle_(drink)"), "bottle");
  EXPECT_EQ(strip_paren_suffix("mug"), "mug");
}

TEST(Templates, AllocateClassProperties) {
  for (int n = 1; n <= 9; ++n) {
    for (uint64_t seed = 0; seed < 50; ++seed) {
      Rng rng(seed);
      auto groups = allocate_class(n, 3, 3, rng);
      ASSERT_EQ(groups.size(), static_cast<std::size_t>(std::min(n, 3)));
      std::set<int> seen;
      for (const auto& g : groups) {
        EXPECT_GE(g.size(), 1u);  // every question gets one item first
        EXPECT_LE(g.size(), 3u);
        for (int i : g) EXPECT_TRUE(seen.insert(i).second);
      }
      EXPECT_EQ(seen.size(), static_cast<std::size_t>(n));
    }
  }
  Rng rng(1);
  EXPECT_NE(test::error_of([&] { allocate_class(10, 3, 3, rng); }).find("do not fit"), std::string::npos);
}

TEST(Templates, ClassQuestionAnswers) {
  const QuestionLists lists = compose_question_lists({"sem_seg", "refer_seg", "vqa", "mmr"}, true);
  std::set<std::string> single_answers, separate, joint;
  int separate_count = 0, joint_count = 0;
  for (uint64_t seed = 0; seed < 400; ++seed) {
    Rng rng(seed);
    QuestionAnswer one = class_question({"Wall"}, lists.short_questions, rng);
    EXPECT_NE(one.question.find("wall"), std::string::npos) << "names are lowercased in the question";
    EXPECT_EQ(count_of(one.answer, "[SEG]"), 1u);
    single_answers.insert(one.answer);
    QuestionAnswer two = class_question({"Wall", "sky"}, lists.short_questions, rng);
    EXPECT_NE(two.question.find("wall and sky"), std::string::npos) << two.question;
    EXPECT_EQ(count_of(two.answer, "[SEG]"), 2u) << two.answer;
    if (two.answer.find("Wall") != std::string::npos || two.answer == "[SEG] and [SEG].") {
      separate.insert(two.answer);  // separate style keeps the name as given
      ++separate_count;
    } else {
      joint.insert(two.answer);
      ++joint_count;
    }
  }
  // ANSWER_LIST has 5 entries, all reachable.
  EXPECT_EQ(single_answers.size(), 5u);
  EXPECT_TRUE(single_answers.count("Sure, the segmentation result is [SEG]."));
  // Separate style: the 3 SINGLE_ANSWER templates, each filled per target without its final "." and joined.
  EXPECT_TRUE(separate.count("Wall is [SEG] and sky is [SEG]."));
  EXPECT_TRUE(separate.count("The segmentation result of Wall is [SEG] and The segmentation result of sky is [SEG]."));
  EXPECT_TRUE(separate.count("[SEG] and [SEG]."));
  EXPECT_EQ(separate.size(), 3u);
  // Joint style: MULTI_ANSWER templates with the lowercased joined names.
  EXPECT_TRUE(joint.count("wall and sky are [SEG] and [SEG], separately."));
  EXPECT_TRUE(joint.count("They are [SEG] and [SEG]."));
  EXPECT_GE(joint.size(), 9u);  // "{seg}." is shared with the separate style
  EXPECT_GT(separate_count, 120);
  EXPECT_GT(joint_count, 120);
  // Three targets: "a, b and c" in the question, "[SEG], [SEG] and [SEG]" in joint answers.
  Rng rng(7);
  for (int i = 0; i < 20; ++i) {
    QuestionAnswer three = class_question({"a", "b", "c"}, lists.short_questions, rng);
    EXPECT_NE(three.question.find("a, b and c"), std::string::npos);
    EXPECT_EQ(count_of(three.answer, "[SEG]"), 3u);
  }
}

TEST(Templates, PartPhraseAndDeterminism) {
  Rng rng(3);
  int obj_first = 0;
  for (int i = 0; i < 2000; ++i) {
    const std::string p = part_phrase("mug", "handle", rng);
    EXPECT_TRUE(p == "mug handle" || p == "the handle of the mug") << p;
    obj_first += p == "mug handle";
  }
  EXPECT_NEAR(obj_first / 2000.0, 0.5, 0.05);
  const QuestionLists lists = compose_question_lists({"sem_seg"}, true);
  Rng a(11), b(11);
  for (int i = 0; i < 10; ++i) {
    QuestionAnswer x = class_question({"p", "q"}, lists.short_questions, a);
    QuestionAnswer y = class_question({"p", "q"}, lists.short_questions, b);
    EXPECT_EQ(x.question, y.question);
    EXPECT_EQ(x.answer, y.answer);
  }
}

TEST(Random, UniformIntIsUnbiasedAndPortable) {
  Rng rng(5);
  std::vector<int> hist(7, 0);
  for (int i = 0; i < 70000; ++i) ++hist[uniform_int(rng, 7)];
  for (int h : hist) EXPECT_NEAR(h, 10000, 400);
  auto s = sample_without_replacement(rng, 10, 10);
  std::set<int64_t> all(s.begin(), s.end());
  EXPECT_EQ(all.size(), 10u);
  // Fixed values: the distributions are our own code, so the stream is the same with every standard library.
  Rng fixed(42);
  EXPECT_EQ(uniform_int(fixed, 1000), Rng(42)() % 1000);
}

}  // namespace
}  // namespace m2sa::data
