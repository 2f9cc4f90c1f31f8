#pragma once
// Question / answer templates of the reference (MMR:utils/utils.py, ../shared/spec/M2SA.md section 2.3) and the
// way the training datasets fill them (MMR:utils/{sem_seg,refer_seg,multi_part_reason_seg,reason_seg}_dataset.py).
// The lists are verbatim, typos included ("asegment"). Every choice is drawn from an explicit Rng.
#include <map>
#include <string>
#include <vector>

#include "m2sa/data/random.h"

namespace m2sa::data {

// The token every answer uses for a mask, and the image placeholder questions start with.
inline constexpr const char* kSegToken = "[SEG]";
inline constexpr const char* kImageToken = "<image>";

// Verbatim lists (each question template already starts with "<image>\n").
const std::vector<std::string>& short_question_list();         // 4
const std::vector<std::string>& expand_question_list();        // 14
const std::vector<std::string>& long_question_list();          // 2
const std::vector<std::string>& expand_long_question_list();   // 5
const std::vector<std::string>& answer_list();                 // 5
const std::vector<std::string>& single_answer_list();          // 3
const std::vector<std::string>& multi_answer_list();           // 11
const std::vector<std::string>& explanatory_question_list();   // 3 (no "<image>\n": appended to a sentence)

// The question lists every dataset of one training run samples from.
//
// Trap 9 (M2SA.md section 8): the reference's datasets `.extend` the *module-level* lists in their constructors,
// so every dataset sees the lists as extended by all datasets built before sampling starts:
//  - SemSegDataset and ReferSegDataset each append EXPAND_QUESTION_LIST (14) to SHORT_QUESTION_LIST when
//    use_expand_question_list is on (it is, and cannot be switched off in train_ds.py);
//  - MultiPartReasonSegDataset (MMR) appends EXPAND_LONG_QUESTION_LIST (5) to LONG_QUESTION_LIST;
//  - HybridDataset builds ReasonSegDataset without use_expand_question_list, so it appends nothing; VQA neither.
// For the M2SA default mix (sem_seg, refer_seg, vqa, mmr) this gives SHORT = 4 + 14 + 14 = 32 entries (each
// EXPAND entry twice as likely as a SHORT entry) and LONG = 2 + 5 = 7. With only one of sem_seg / refer_seg it is
// 18; with neither, 4. We reproduce the composition explicitly instead of mutating globals.
struct QuestionLists {
  std::vector<std::string> short_questions;
  std::vector<std::string> long_questions;
};
// `families`: the training families in the run ("sem_seg", "refer_seg", "vqa", "reason_seg", "mmr").
QuestionLists compose_question_lists(const std::vector<std::string>& families, bool use_expand_question_list);

// Python str.format for the templates: "{name}" is replaced by args[name], "{{" / "}}" are literal braces.
// An unknown field or an unbalanced brace is an error naming `what` (Python would raise KeyError / ValueError).
std::string py_format(const std::string& tmpl, const std::map<std::string, std::string>& args,
                      const std::string& what = "template");
// Non-overlapping occurrences of `needle` (Python str.count).
std::size_t count_of(const std::string& text, const std::string& needle);
// Python str.lower() for ASCII (other bytes unchanged).
std::string lower(std::string s);
// "a", "a and b", "a, b and c" (the reference's ', '.join(xs[:-1]) + ' and ' + xs[-1]).
std::string join_and(const std::vector<std::string>& items);

// `allocate_class` (MMR:utils/sem_seg_dataset.py): spreads n items over min(n, max_questions) questions. Items
// are visited in a random order; each goes to a random question that is still empty, or, once none is empty, to a
// random question holding fewer than max_per_question items. Returns the item indices per question. n must be at
// most max_questions * max_per_question (the callers sample at most that many).
std::vector<std::vector<int>> allocate_class(int n, int max_questions, int max_per_question, Rng& rng);

// One question over one or more targets, with its answer (sem_seg, refer_seg, PACO / PASCAL-Part):
//  - question = random SHORT template with class_name = join_and(names).lower();
//  - one target: a random ANSWER_LIST entry with {seg} = "[SEG]";
//  - several targets, "separate" style (coin flip, always drawn): one random SINGLE_ANSWER_LIST template filled
//    per target with the name as given (not lowercased), each without its final character, joined with
//    join_and, plus ".";
//  - several targets, "joint" style: a random MULTI_ANSWER_LIST template with class_name = the lowercased
//    joined names and {seg} = join_and(["[SEG]"] * n).
// Draw order as in the reference: question template, separate flag, answer template.
struct QuestionAnswer {
  std::string question;
  std::string answer;
};
QuestionAnswer class_question(const std::vector<std::string>& names, const std::vector<std::string>& short_questions,
                              Rng& rng);

// PACO / PASCAL-Part part names: "obj part" or "the part of the obj", with probability 0.5 each.
std::string part_phrase(const std::string& object, const std::string& part, Rng& rng);
// PACO category names drop a "_(" suffix: "bottle_(drink)" -> "bottle" (the reference's name.split("_(")[0]).
std::string strip_paren_suffix(const std::string& name);

}  // namespace m2sa::data
