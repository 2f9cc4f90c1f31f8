// Conversation rendering, tokenizer_image_token, target masking (hand-checked label arrays), collation and
// the image-token splice.
#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include "m2sa/core/error.h"
#include "m2sa/text/conversation.h"
#include "m2sa/text/prompt_encoding.h"
#include "m2sa/text/tokenizer.h"
#include "test_util.h"

namespace m2sa {
namespace {

using Ids = std::vector<int64_t>;
constexpr int64_t I = kIgnoreIndex;

// "A chat between ... questions. USER:" (33 pieces, ending "▁US" "ER" ":")
const Ids kSystemUser = {319,  13563, 1546,  263,   12758, 5199,  322,   385,   23116, 21082, 20255,
                         29889, 450,  20255, 4076,  8444,  29892, 13173, 29892, 322,   1248,  568,
                         6089,  304,  278,   5199,  29915, 29879, 5155,  29889, 3148,  1001,  29901};

const Tokenizer& tok() {
  static Tokenizer t = Tokenizer::load(test::fixture("llama2_tokenizer.model"));
  return t;
}

at::Tensor T(const Ids& v) { return at::tensor(at::ArrayRef<int64_t>(v), at::kLong); }

Ids cat(std::initializer_list<Ids> parts) {
  Ids out;
  for (const auto& p : parts) out.insert(out.end(), p.begin(), p.end());
  return out;
}

const std::string kSystem =
    "A chat between a curious human and an artificial intelligence assistant. The assistant gives helpful, "
    "detailed, and polite answers to the human's questions.";

TEST(Conversation, LlavaV1Rendering) {
  const Dialog one = {{"<image>\nWhat is in the image? Please output segmentation mask.", "It is [SEG]."}};
  EXPECT_EQ(render_conversation(one),
            kSystem + " USER: <im_start><image><im_end>\nWhat is in the image? Please output segmentation mask. "
                      "ASSISTANT: It is [SEG].</s>");
  EXPECT_EQ(render_conversation(one, ConvTemplate::kLlavaV1, false),
            kSystem + " USER: <image>\nWhat is in the image? Please output segmentation mask. ASSISTANT: It is [SEG].</s>");
  const Dialog two = {{"<image>\nq1", "a1"}, {"q2", "a2"}};
  EXPECT_EQ(render_conversation(two), kSystem + " USER: <im_start><image><im_end>\nq1 ASSISTANT: a1</s>USER: q2 ASSISTANT: a2</s>");
  // Generation: empty answer -> "ASSISTANT:" with no trailing space (chat.py).
  EXPECT_EQ(render_generation_prompt("Where is the cup?"),
            kSystem + " USER: <im_start><image><im_end>\nWhere is the cup? ASSISTANT:");
}

TEST(Conversation, LlavaLlama2Rendering) {
  EXPECT_EQ(render_conversation({{"<image>\nq", "a"}}, ConvTemplate::kLlavaLlama2),
            "[INST] <<SYS>>\nYou are a helpful language and vision assistant. You are able to understand the visual "
            "content that the user provides, and assist the user with a variety of tasks using natural language.\n"
            "<</SYS>>\n\n<im_start><image><im_end>\nq [/INST] a </s>");
  EXPECT_EQ(conv_template_from_name("llava_v1"), ConvTemplate::kLlavaV1);
  EXPECT_NE(test::m2sa_error_of([] { conv_template_from_name("chatml"); }).find("llava_v1"), std::string::npos);
}

TEST(PromptEncoding, TokenizerImageTokenOnTheLisaPrompt) {
  // The golden case's LISA prompt after collate_fn's <image> replacement. R1 removes the space before
  // <im_start> and the "\n" after <im_end>; the chunk after <image> loses its BOS; [SEG] strips both sides.
  const std::string prompt = wrap_image_tokens(
      kSystem + " USER: <image>\nCan you segment the dog in this image? ASSISTANT: Sure, it is [SEG].</s>");
  const Ids expected = cat({{1}, kSystemUser, {32001, -200, 32002},
                            // "Can you segment the dog in this image? ASSISTANT: Sure, it is"
                            {1815, 366, 10768, 278, 11203, 297, 445, 1967, 29973, 319, 1799, 9047, 13566, 29901,
                             18585, 29892, 372, 338},
                            {32000, 869, 2}});
  EXPECT_EQ(tokenizer_image_token(tok(), prompt), expected);
  // Several images and edge chunks: BOS once, one -200 per "<image>".
  EXPECT_EQ(tokenizer_image_token(tok(), "<image>"), (Ids{1, -200}));
  EXPECT_EQ(tokenizer_image_token(tok(), "a<image>b<image>"), (Ids{1, 263, -200, 289, -200}));
}

TEST(PromptEncoding, OneRoundTargets) {
  const std::string conv =
      render_conversation({{"<image>\nWhat is in the image? Please output segmentation mask.", "It is [SEG]."}});
  const EncodedConversation e = encode_conversation(tok(), conv);
  const Ids question = {1724, 338, 297, 278, 1967, 29973, 3529, 1962, 10768, 362, 11105, 29889,  // "What ... mask."
                        319, 1799, 9047, 13566, 29901};                                          // " ASSISTANT:"
  const Ids answer = {739, 338, 32000, 869, 2};  // "It is [SEG]." + </s>
  EXPECT_EQ(e.ids, cat({{1}, kSystemUser, {32001, -200, 32002}, question, answer}));
  // round_len = 58 (all but </s>, BOS counted instead); instruction_len = len(BOS ... ":" "▁") - 2 = 53,
  // so positions 0..53 are ignored and the answer with its </s> (54..58) is supervised.
  Ids labels(54, I);
  labels.insert(labels.end(), answer.begin(), answer.end());
  EXPECT_EQ(e.labels, labels);
}

TEST(PromptEncoding, MultiRoundVqaTargets) {
  const std::string conv =
      render_conversation({{"<image>\nWhat color is the car?", "It is red."}, {"Where is it?", "On the road."}});
  const EncodedConversation e = encode_conversation(tok(), conv);
  const Ids q1 = {1724, 2927, 338, 278, 1559, 29973, 319, 1799, 9047, 13566, 29901};  // "What color ... ASSISTANT:"
  const Ids a1 = {739, 338, 2654, 29889, 2};                                          // "It is red." </s>
  const Ids q2 = {3148, 1001, 29901, 6804, 338, 372, 29973, 319, 1799, 9047, 13566, 29901};  // "USER: Where ... ASSISTANT:"
  const Ids a2 = {1551, 278, 6520, 29889, 2};                                                // "On the road." </s>
  EXPECT_EQ(e.ids, cat({{1}, kSystemUser, {32001, -200, 32002}, q1, a1, q2, a2}));
  ASSERT_EQ(e.ids.size(), 70u);
  // Round 1: instruction_len = (1 + 33 + 3 + 11 + 1) - 2 = 47 -> ignore 1..47; round_len = 52 -> cur_len 53.
  // Round 2 starts at 53 (its "USER" follows the first </s>, which stays supervised at 52):
  // instruction_len = (1 + 12 + 1) - 2 = 12 -> ignore 53..64; round_len = 17 -> cur_len 70 = total_len.
  Ids labels(48, I);
  labels.insert(labels.end(), a1.begin(), a1.end());
  labels.insert(labels.end(), 12, I);
  labels.insert(labels.end(), a2.begin(), a2.end());
  EXPECT_EQ(e.labels, labels);
}

TEST(PromptEncoding, MaskingErrorsCarryContext) {
  // "<unk>" in the text encodes to id 0 = pad id, so the reference's total_len (ids != pad) disagrees.
  const std::string conv = render_conversation({{"<image>\nq", "It is <unk>."}});
  const std::string msg = test::m2sa_error_of([&] { encode_conversation(tok(), conv); });
  EXPECT_NE(msg.find("cur_len == total_len"), std::string::npos) << msg;
  EXPECT_NE(msg.find("It is <unk>."), std::string::npos) << msg;
  // ids: BOS + 33 + 3 + "q ASSISTANT: It is " (9, R2 keeps the trailing "▁") + <unk> + "▁." + </s> = 49;
  // the reference's total_len counts ids != 0 and misses <unk>: 48.
  EXPECT_NE(msg.find("add up to 49 tokens but the conversation has 48"), std::string::npos) << msg;
  // A question containing the separator splits into three parts.
  const std::string bad = render_conversation({{"q ASSISTANT: x", "a"}});
  EXPECT_NE(test::m2sa_error_of([&] { encode_conversation(tok(), bad); }).find("3 parts"), std::string::npos);
  // Generation prompts have no </s>; llava_llama_2 masking is not defined.
  EXPECT_NE(test::m2sa_error_of([&] { encode_conversation(tok(), render_generation_prompt("q")); }).find("</s>"), std::string::npos);
  EXPECT_NE(test::m2sa_error_of([&] { encode_conversation(tok(), "x</s>", ConvTemplate::kLlavaLlama2); }).find("trap 11"),
            std::string::npos);
}

TEST(PromptEncoding, CollatePadsMasksAndTruncates) {
  std::vector<EncodedConversation> convs = {{{1, 5, -200, 7, 2}, {I, I, I, 7, 2}}, {{1, -200, 9}, {I, I, 9}}};
  CollateOptions o;
  o.truncate = false;
  CollatedBatch b = collate(convs, o);
  EXPECT_TRUE(b.input_ids.equal(T({1, 5, -200, 7, 2, 1, -200, 9, 0, 0}).view({2, 5})));
  EXPECT_TRUE(b.labels.equal(T({I, I, I, 7, 2, I, I, 9, I, I}).view({2, 5})));
  EXPECT_TRUE(b.attention_mask.equal(T({1, 1, 1, 1, 1, 1, 1, 1, 0, 0}).view({2, 5}).to(at::kBool)));
  // Training truncation: model_max_length - (N - 1) columns, here 6 - (3 - 1) = 4.
  o.truncate = true;
  o.model_max_length = 6;
  o.num_image_tokens = 3;
  b = collate(convs, o);
  EXPECT_EQ(b.input_ids.sizes(), (at::IntArrayRef{2, 4}));
  EXPECT_EQ(b.labels[0][3].item<int64_t>(), 7);
  EXPECT_THROW(collate({}, o), Error);
}

TEST(PromptEncoding, ImageSplice) {
  const ImageSplice s = image_splice({1, 5, -200, 7, 2}, 4);
  EXPECT_EQ(s.placeholder, 2);
  EXPECT_EQ(s.image_begin, 2);
  EXPECT_EQ(s.image_end, 6);
  EXPECT_EQ(s.expanded_length, 8);
  EXPECT_EQ(s.expanded_position(1), 1);
  EXPECT_EQ(s.expanded_position(3), 6);
  EXPECT_EQ(s.expanded_position(4), 7);
  EXPECT_THROW(s.expanded_position(2), Error);
  EXPECT_NE(test::m2sa_error_of([] { image_splice({1, 2}, 4); }).find("no image placeholder"), std::string::npos);
  EXPECT_NE(test::m2sa_error_of([] { image_splice({-200, 1, -200}, 4); }).find("more than one"), std::string::npos);

  const at::Tensor ids = T({1, 5, -200, 7, 2, 1, -200, 9, 0, 0}).view({2, 5});
  const at::Tensor labels = T({I, I, I, 7, 2, I, I, 9, I, I}).view({2, 5});
  const at::Tensor expanded = expand_labels(labels, ids, 3);
  EXPECT_TRUE(expanded.equal(T({I, I, I, I, I, 7, 2, I, I, I, I, 9, I, I}).view({2, 7})));
  const at::Tensor mask = ids.ne(0);
  const at::Tensor em = expand_attention_mask(mask, 3);
  // Right padding: prepending N-1 ones equals inserting ones at the image positions.
  EXPECT_TRUE(em.equal(T({1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0}).view({2, 7}).to(at::kBool)));
  const auto splices = image_splices(ids, 3);
  EXPECT_EQ(splices[1].placeholder, 1);
  EXPECT_EQ(splices[1].expanded_length, 7);
}

}  // namespace
}  // namespace m2sa
