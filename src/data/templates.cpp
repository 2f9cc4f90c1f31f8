#include "m2sa/data/templates.h"

#include "m2sa/core/error.h"

namespace m2sa::data {

namespace {
std::vector<std::string> with_image(std::initializer_list<const char*> items) {
  std::vector<std::string> out;
  for (const char* s : items) out.push_back(std::string(kImageToken) + "\n" + s);
  return out;
}
}  // namespace

const std::vector<std::string>& short_question_list() {
  static const std::vector<std::string> v = with_image({
      "Can you segment the {class_name} in this image?",
      "Please segment the {class_name} in this image.",
      "What is {class_name} in this image? Please respond with segmentation mask.",
      "What is {class_name} in this image? Please output segmentation mask.",
  });
  return v;
}

const std::vector<std::string>& expand_question_list() {
  static const std::vector<std::string> v = with_image({
      "Could you identify the {class_name} in this picture?",
      "Are you able to delineate the {class_name} in the image?",
      "Can you pinpoint the {class_name} in this photo?",
      "Is it possible for you to highlight the {class_name} in this image?",
      "Can you discern the {class_name} in the given picture?",
      "Can you provide me with asegment of the {class_name}?",  // sic
      "Please perform image segmentation to isolate the {class_name} in this image.",
      "Help me segment the {class_name}.",
      "Would you be willing to segment the {class_name}?",
      "Can you identify {class_name} in this picture? Please provide a segmentation mask.",
      "Could you point out {class_name} in this image and show it with a segmentation mask?",
      "In this image, where is {class_name}? I'd appreciate a segmentation mask.",
      "Please highlight {class_name} in this image using a segmentation mask.",
      "In the picture provided, can you show where {class_name} is with a segmentation mask?",
  });
  return v;
}

const std::vector<std::string>& long_question_list() {
  static const std::vector<std::string> v = with_image({
      "{sent} Please respond with segmentation mask.",
      "{sent} Please output segmentation mask.",
  });
  return v;
}

const std::vector<std::string>& expand_long_question_list() {
  static const std::vector<std::string> v = with_image({
      "{sent} Provide the segmentation mask.",
      "{sent} Output the segmentation mask.",
      "{sent} Please show the segmentation mask.",
      "{sent} I'd appreciate segmentation masks.",
      "{sent} Please highlight the segmentation mask.",
  });
  return v;
}

const std::vector<std::string>& answer_list() {
  static const std::vector<std::string> v = {
      "It is {seg}.", "Sure, {seg}.", "Sure, it is {seg}.", "Sure, the segmentation result is {seg}.", "{seg}.",
  };
  return v;
}

const std::vector<std::string>& single_answer_list() {
  static const std::vector<std::string> v = {
      "{class_name} is {seg}.",
      "The segmentation result of {class_name} is {seg}.",
      "{seg}.",
  };
  return v;
}

const std::vector<std::string>& multi_answer_list() {
  static const std::vector<std::string> v = {
      "{class_name} are {seg}, separately.",
      "{class_name} are {seg}.",
      "Sure, {class_name} are {seg}, separately.",
      "Sure, {class_name} are {seg}.",
      "the segmentation result of {class_name} are {seg}.",
      "the segmentation result of {class_name} are {seg}, separately.",
      "Sure, the segmentation result of {class_name} are {seg}.",
      "Sure, the segmentation result of {class_name} are {seg}, separately.",
      "Sure, they are {seg}.",
      "They are {seg}.",
      "{seg}.",
  };
  return v;
}

const std::vector<std::string>& explanatory_question_list() {
  static const std::vector<std::string> v = {
      "Please output segmentation mask and explain why.",
      "Please output segmentation mask and explain the reason.",
      "Please output segmentation mask and give some explanation.",
  };
  return v;
}

QuestionLists compose_question_lists(const std::vector<std::string>& families, bool use_expand) {
  QuestionLists q{short_question_list(), long_question_list()};
  if (!use_expand) return q;
  for (const auto& f : families) {
    if (f == "sem_seg" || f == "refer_seg")
      q.short_questions.insert(q.short_questions.end(), expand_question_list().begin(), expand_question_list().end());
    else if (f == "mmr")
      q.long_questions.insert(q.long_questions.end(), expand_long_question_list().begin(),
                              expand_long_question_list().end());
  }
  return q;
}

std::string py_format(const std::string& tmpl, const std::map<std::string, std::string>& args, const std::string& what) {
  std::string out;
  out.reserve(tmpl.size() + 32);
  for (std::size_t i = 0; i < tmpl.size(); ++i) {
    const char c = tmpl[i];
    if (c == '{') {
      if (i + 1 < tmpl.size() && tmpl[i + 1] == '{') {
        out += '{';
        ++i;
        continue;
      }
      const std::size_t end = tmpl.find('}', i);
      if (end == std::string::npos) fail(what, ": unbalanced '{' at position ", i, " in \"", tmpl, "\"");
      const std::string name = tmpl.substr(i + 1, end - i - 1);
      auto it = args.find(name);
      if (it == args.end())
        fail(what, ": unknown field {", name, "} in \"", tmpl, "\" (Python str.format would raise KeyError)");
      out += it->second;
      i = end;
    } else if (c == '}') {
      if (i + 1 < tmpl.size() && tmpl[i + 1] == '}') {
        out += '}';
        ++i;
        continue;
      }
      fail(what, ": single '}' at position ", i, " in \"", tmpl, "\"");
    } else {
      out += c;
    }
  }
  return out;
}

std::size_t count_of(const std::string& text, const std::string& needle) {
  if (needle.empty()) return text.size() + 1;
  std::size_t n = 0;
  for (std::size_t p = text.find(needle); p != std::string::npos; p = text.find(needle, p + needle.size())) ++n;
  return n;
}

std::string lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return s;
}

std::string join_and(const std::vector<std::string>& items) {
  if (items.empty()) return "";
  if (items.size() == 1) return items[0];
  std::string out;
  for (std::size_t i = 0; i + 1 < items.size(); ++i) out += (i ? ", " : "") + items[i];
  return out + " and " + items.back();
}

std::vector<std::vector<int>> allocate_class(int n, int max_questions, int max_per_question, Rng& rng) {
  M2SA_CHECK(n >= 0 && max_questions >= 1 && max_per_question >= 1, "allocate_class: bad arguments n=", n,
             " max_questions=", max_questions, " max_per_question=", max_per_question);
  M2SA_CHECK(n <= max_questions * max_per_question, "allocate_class: ", n, " items do not fit in ", max_questions,
             " questions of ", max_per_question);
  const int q = std::min(n, max_questions);
  std::vector<std::vector<int>> out(static_cast<std::size_t>(q));
  std::vector<int> order(static_cast<std::size_t>(n));
  for (int i = 0; i < n; ++i) order[static_cast<std::size_t>(i)] = i;
  shuffle(rng, order);
  std::vector<int> candidates;
  for (int i = 0; i < n; ++i) {
    candidates.clear();
    for (int k = 0; k < q; ++k)
      if (out[static_cast<std::size_t>(k)].empty()) candidates.push_back(k);
    if (candidates.empty())
      for (int k = 0; k < q; ++k)
        if (static_cast<int>(out[static_cast<std::size_t>(k)].size()) < max_per_question) candidates.push_back(k);
    out[static_cast<std::size_t>(choice(rng, candidates))].push_back(order[static_cast<std::size_t>(i)]);
  }
  return out;
}

QuestionAnswer class_question(const std::vector<std::string>& names, const std::vector<std::string>& short_questions,
                              Rng& rng) {
  M2SA_CHECK(!names.empty(), "class_question: no targets");
  const std::string target = join_and(names);
  QuestionAnswer qa;
  qa.question = py_format(choice(rng, short_questions), {{"class_name", lower(target)}});
  const bool separate = coin(rng);
  if (names.size() == 1) {
    qa.answer = py_format(choice(rng, answer_list()), {{"class_name", lower(target)}, {"seg", kSegToken}});
  } else if (separate) {
    const std::string& tmpl = choice(rng, single_answer_list());
    std::vector<std::string> parts;
    for (const auto& name : names) {
      std::string one = py_format(tmpl, {{"class_name", name}, {"seg", kSegToken}});
      one.pop_back();  // the reference's `[:-1]` drops the final "."
      parts.push_back(one);
    }
    qa.answer = join_and(parts) + ".";
  } else {
    std::vector<std::string> segs(names.size(), kSegToken);
    qa.answer = py_format(choice(rng, multi_answer_list()), {{"class_name", lower(target)}, {"seg", join_and(segs)}});
  }
  return qa;
}

std::string part_phrase(const std::string& object, const std::string& part, Rng& rng) {
  if (uniform01(rng) < 0.5) return object + " " + part;
  return "the " + part + " of the " + object;
}

std::string strip_paren_suffix(const std::string& name) {
  const std::size_t p = name.find("_(");
  return p == std::string::npos ? name : name.substr(0, p);
}

}  // namespace m2sa::data
