#include "m2sa/text/prompt_encoding.h"

#include <ATen/ATen.h>

#include <algorithm>

#include "m2sa/core/error.h"

namespace m2sa {

namespace {

std::vector<std::string> split(const std::string& s, const std::string& sep) {
  std::vector<std::string> out;
  std::size_t start = 0, pos;
  while ((pos = s.find(sep, start)) != std::string::npos) {
    out.push_back(s.substr(start, pos - start));
    start = pos + sep.size();
  }
  out.push_back(s.substr(start));
  return out;
}

std::string shorten(const std::string& s, std::size_t max = 300) {
  return s.size() <= max ? s : s.substr(0, max) + "...";
}

}  // namespace

std::vector<int64_t> tokenizer_image_token(const Tokenizer& tokenizer, std::string_view prompt) {
  std::vector<std::vector<int64_t>> chunks;
  for (const auto& chunk : split(std::string(prompt), kImageToken)) chunks.push_back(tokenizer.encode(chunk, true));
  std::vector<int64_t> ids;
  std::size_t offset = 0;
  if (!chunks.empty() && !chunks[0].empty() && chunks[0][0] == tokenizer.bos_id()) {
    offset = 1;
    ids.push_back(chunks[0][0]);
  }
  // insert_separator(chunks, [-200] * (offset + 1)), then x[offset:] of every element.
  for (std::size_t c = 0; c < chunks.size(); ++c) {
    if (c > 0) {
      const std::vector<int64_t> sep(offset + 1, kImageTokenIndex);
      ids.insert(ids.end(), sep.begin() + static_cast<std::ptrdiff_t>(offset), sep.end());
    }
    const auto& x = chunks[c];
    if (x.size() > offset) ids.insert(ids.end(), x.begin() + static_cast<std::ptrdiff_t>(offset), x.end());
  }
  return ids;
}

EncodedConversation encode_conversation(const Tokenizer& tokenizer, const std::string& conversation,
                                        ConvTemplate t) {
  if (t != ConvTemplate::kLlavaV1)
    fail("target masking: conv_type ", conv_template_name(t),
         " is not supported; the reference masks every template with the llava_v1 separator \" ASSISTANT: \" "
         "(M2SA.md trap 11), so only llava_v1 training conversations are defined");
  const std::string sep = kLlavaV1AssistantSep;
  const std::string sep2 = kLlavaV1RoundSep;
  if (conversation.find(sep2) == std::string::npos)
    fail("target masking: the conversation has no \"</s>\" (not a rendered training conversation; the reference "
         "would leave its labels unmasked): \"", shorten(conversation), "\"");

  EncodedConversation out;
  out.ids = tokenizer_image_token(tokenizer, conversation);
  out.labels = out.ids;
  const int64_t pad = tokenizer.pad_id();
  const int64_t total_len = std::count_if(out.ids.begin(), out.ids.end(), [&](int64_t id) { return id != pad; });
  const bool has_image = conversation.find(kImageToken) != std::string::npos;
  auto length = [&](const std::string& text) {
    return static_cast<int64_t>(has_image ? tokenizer_image_token(tokenizer, text).size()
                                          : tokenizer.encode(text, true).size());
  };
  const int64_t n = static_cast<int64_t>(out.labels.size());
  auto ignore = [&](int64_t begin, int64_t end) {
    for (int64_t i = std::max<int64_t>(begin, 0); i < std::min(end, n); ++i) out.labels[i] = kIgnoreIndex;
  };

  int64_t cur_len = 1;
  ignore(0, cur_len);
  const auto rounds = split(conversation, sep2);
  for (std::size_t r = 0; r < rounds.size(); ++r) {
    const std::string& rou = rounds[r];
    if (rou.empty()) break;
    const auto parts = split(rou, sep);
    if (parts.size() != 2)
      fail("target masking: round ", r, " splits into ", parts.size(), " parts on \"", sep,
           "\" (expected 2: the question and the answer): \"", shorten(rou), "\"");
    const int64_t round_len = length(rou);
    const int64_t instruction_len = length(parts[0] + sep) - 2;
    ignore(cur_len, cur_len + instruction_len);
    cur_len += round_len;
  }
  ignore(cur_len, n);
  if (cur_len < tokenizer.model_max_length() && cur_len != total_len)
    fail("target masking: tokenization mismatch, the rounds add up to ", cur_len, " tokens but the conversation has ",
         total_len, " (the reference asserts cur_len == total_len; the tokenizer does not behave like the one the "
         "templates expect): \"", shorten(conversation, 600), "\"");
  return out;
}

CollatedBatch collate(const std::vector<EncodedConversation>& conversations, const CollateOptions& options) {
  M2SA_CHECK(!conversations.empty(), "collate: no conversations");
  M2SA_CHECK(options.num_image_tokens >= 1, "collate: num_image_tokens must be >= 1, got ", options.num_image_tokens);
  const int64_t batch = static_cast<int64_t>(conversations.size());
  int64_t max_len = 0;
  for (std::size_t b = 0; b < conversations.size(); ++b) {
    const auto& c = conversations[b];
    M2SA_CHECK(c.ids.size() == c.labels.size(), "collate: conversation ", b, " has ", c.ids.size(), " ids but ",
               c.labels.size(), " labels");
    max_len = std::max<int64_t>(max_len, static_cast<int64_t>(c.ids.size()));
  }
  at::Tensor ids = at::full({batch, max_len}, options.pad_id, at::kLong);
  at::Tensor labels = at::full({batch, max_len}, kIgnoreIndex, at::kLong);
  auto ids_a = ids.accessor<int64_t, 2>();
  auto labels_a = labels.accessor<int64_t, 2>();
  for (int64_t b = 0; b < batch; ++b) {
    const auto& c = conversations[static_cast<std::size_t>(b)];
    for (std::size_t i = 0; i < c.ids.size(); ++i) {
      ids_a[b][static_cast<int64_t>(i)] = c.ids[i];
      labels_a[b][static_cast<int64_t>(i)] = c.labels[i];
    }
  }
  if (options.truncate) {
    const int64_t truncate_len = options.model_max_length - (options.num_image_tokens - 1);
    M2SA_CHECK(truncate_len >= 1, "collate: model_max_length ", options.model_max_length,
               " leaves no room for ", options.num_image_tokens, " image tokens");
    if (max_len > truncate_len) {
      ids = ids.slice(1, 0, truncate_len).contiguous();
      labels = labels.slice(1, 0, truncate_len).contiguous();
    }
  }
  return {ids, labels, ids.ne(options.pad_id)};
}

int64_t ImageSplice::expanded_position(int64_t i) const {
  M2SA_CHECK(i != placeholder, "image splice: position ", i, " is the image placeholder");
  return i < placeholder ? i : i + num_image_tokens - 1;
}

ImageSplice image_splice(const std::vector<int64_t>& ids, int64_t num_image_tokens) {
  M2SA_CHECK(num_image_tokens >= 1, "image splice: num_image_tokens must be >= 1, got ", num_image_tokens);
  ImageSplice s;
  for (std::size_t i = 0; i < ids.size(); ++i) {
    if (ids[i] != kImageTokenIndex) continue;
    if (s.placeholder >= 0)
      fail("image splice: the sequence holds more than one image placeholder -200 (at ", s.placeholder, " and ", i,
           "); one image per conversation is supported");
    s.placeholder = static_cast<int64_t>(i);
  }
  if (s.placeholder < 0) fail("image splice: the sequence (", ids.size(), " tokens) holds no image placeholder -200");
  s.num_image_tokens = num_image_tokens;
  s.image_begin = s.placeholder;
  s.image_end = s.placeholder + num_image_tokens;
  s.expanded_length = static_cast<int64_t>(ids.size()) + num_image_tokens - 1;
  return s;
}

std::vector<ImageSplice> image_splices(const at::Tensor& input_ids, int64_t num_image_tokens) {
  M2SA_CHECK(input_ids.dim() == 2 && input_ids.scalar_type() == at::kLong,
             "image splice: input_ids must be int64 [B, L], got ", input_ids.scalar_type(), " ", input_ids.sizes());
  at::Tensor cpu = input_ids.cpu().contiguous();
  std::vector<ImageSplice> out;
  for (int64_t b = 0; b < cpu.size(0); ++b) {
    const int64_t* row = cpu[b].data_ptr<int64_t>();
    out.push_back(with_context("batch row " + std::to_string(b), [&] {
      return image_splice(std::vector<int64_t>(row, row + cpu.size(1)), num_image_tokens);
    }));
  }
  return out;
}

at::Tensor expand_labels(const at::Tensor& labels, const at::Tensor& input_ids, int64_t num_image_tokens) {
  M2SA_CHECK(labels.sizes() == input_ids.sizes(), "expand_labels: labels ", labels.sizes(), " and input_ids ",
             input_ids.sizes(), " differ in shape");
  const auto splices = image_splices(input_ids, num_image_tokens);
  std::vector<at::Tensor> rows;
  for (int64_t b = 0; b < labels.size(0); ++b) {
    const auto& s = splices[static_cast<std::size_t>(b)];
    at::Tensor row = labels[b];
    rows.push_back(at::cat({row.slice(0, 0, s.placeholder),
                            at::full({num_image_tokens}, kIgnoreIndex, labels.options()),
                            row.slice(0, s.placeholder + 1)}));
  }
  return at::stack(rows);
}

at::Tensor expand_attention_mask(const at::Tensor& attention_mask, int64_t num_image_tokens) {
  M2SA_CHECK(attention_mask.dim() == 2, "expand_attention_mask: expected [B, L], got ", attention_mask.sizes());
  M2SA_CHECK(num_image_tokens >= 1, "expand_attention_mask: num_image_tokens must be >= 1");
  return at::cat({at::ones({attention_mask.size(0), num_image_tokens - 1}, attention_mask.options()), attention_mask},
                 1);
}

}  // namespace m2sa
