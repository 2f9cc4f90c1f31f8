// Request parsing and validation of `m2sa serve` (serve/request.h), without HTTP: every malformed request gets an
// error that names the field, with the status the server answers.
#include "m2sa/serve/request.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>

#include <string>

#include "m2sa/core/json_reader.h"
#include "m2sa/serve/openai.h"
#include "serve/serve_test_util.h"
#include "test_util.h"

namespace m2sa {
namespace {

using serve::Body;
using serve::ServeLimits;

Body json_body(const json& j) { return Body{false, j.dump(), {}}; }
Body text_body(const std::string& s) { return Body{false, s, {}}; }

const at::Tensor& image() {
  static const at::Tensor rgb = test::random_rgb(40, 56, 3);
  return rgb;
}

// The field and status of a refused segment request.
std::pair<std::string, int> segment_error(const Body& b, const ServeLimits& limits = {}) {
  const auto p = serve::parse_segment_request(b, limits);
  EXPECT_FALSE(p.ok()) << "expected an error for " << b.json_text.substr(0, 200);
  return {p.error.field, p.error.status};
}

TEST(ServeRequest, SegmentJsonWithBase64AndDataUri) {
  for (const std::string& img : {test::png_base64(image()), test::png_data_uri(image())}) {
    const auto p = serve::parse_segment_request(
        json_body({{"image", img}, {"question", "Where is the cup?"}, {"max_new_tokens", 7}, {"mask_format", "png"},
                   {"overlay", true}}),
        {});
    ASSERT_TRUE(p.ok()) << p.error.field << ": " << p.error.message;
    EXPECT_TRUE(p.value->image.rgb.equal(image()));
    EXPECT_EQ(p.value->question, "Where is the cup?");
    EXPECT_EQ(p.value->max_new_tokens, 7);
    EXPECT_EQ(p.value->output.mask_format, serve::MaskFormat::kPng);
    EXPECT_TRUE(p.value->output.overlay);
    EXPECT_EQ(p.value->image.sha256.size(), 64u);
  }
  ServeLimits limits;
  limits.default_max_new_tokens = 33;
  const auto p = serve::parse_segment_request(json_body({{"image", test::png_base64(image())}, {"question", "q?"}}), limits);
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.value->max_new_tokens, 33);
  EXPECT_EQ(p.value->output.mask_format, serve::MaskFormat::kRle);
  EXPECT_FALSE(p.value->output.overlay);
}

TEST(ServeRequest, SegmentMultipart) {
  Body b;
  b.multipart = true;
  b.fields = {{"image", "a.png", "image/png", test::png_bytes(image())},
              {"question", "", "", "What is red?"},
              {"max_new_tokens", "", "", "12"},
              {"overlay", "", "", "true"}};
  const auto p = serve::parse_segment_request(b, {});
  ASSERT_TRUE(p.ok()) << p.error.message;
  EXPECT_TRUE(p.value->image.rgb.equal(image()));
  EXPECT_EQ(p.value->max_new_tokens, 12);
  EXPECT_TRUE(p.value->output.overlay);
  b.fields[2].content = "12.5";
  EXPECT_EQ(segment_error(b).first, "max_new_tokens");
  b.fields[2].content = "12";
  b.fields.erase(b.fields.begin());
  EXPECT_EQ(segment_error(b).first, "image");
  b.fields.push_back({"image", "a.txt", "text/plain", "just some text"});
  EXPECT_EQ(segment_error(b).first, "image");
}

TEST(ServeRequest, EveryBadFieldIsNamed) {
  const std::string img = test::png_base64(image());
  const json ok{{"image", img}, {"question", "Where?"}};
  auto with = [&](const std::string& key, const json& v) {
    json j = ok;
    j[key] = v;
    return json_body(j);
  };
  auto without = [&](const std::string& key) {
    json j = ok;
    j.erase(key);
    return json_body(j);
  };
  ServeLimits small;
  small.max_question_bytes = 10;
  small.max_image_pixels = 1000;
  small.max_image_bytes = 100000;
  EXPECT_EQ(segment_error(text_body("")), std::make_pair(std::string("body"), 400));
  EXPECT_EQ(segment_error(text_body("{\"image\": ")).first, "body");
  EXPECT_EQ(segment_error(text_body("[1, 2]")).first, "body");
  EXPECT_EQ(segment_error(without("question")).first, "question");
  EXPECT_EQ(segment_error(with("question", "")).first, "question");
  EXPECT_EQ(segment_error(with("question", "   \n")).first, "question");
  EXPECT_EQ(segment_error(with("question", 42)).first, "question");
  EXPECT_EQ(segment_error(with("question", "a question that is too long"), small).first, "question");
  EXPECT_EQ(segment_error(with("question", "what is <image>?")).first, "question");
  // Invalid UTF-8 is invalid JSON; in a form field it is the question's fault.
  EXPECT_EQ(segment_error(text_body("{\"image\": \"" + img + "\", \"question\": \"bad \xff utf8\"}")).first, "body");
  Body form{true, "", {{"image", "a.png", "image/png", test::png_bytes(image())}, {"question", "", "", "bad \xff utf8"}}};
  EXPECT_EQ(segment_error(form).first, "question");
  EXPECT_EQ(segment_error(with("max_new_tokens", "ten")).first, "max_new_tokens");
  EXPECT_EQ(segment_error(with("max_new_tokens", 0)).first, "max_new_tokens");
  EXPECT_EQ(segment_error(with("max_new_tokens", 2.5)).first, "max_new_tokens");
  EXPECT_EQ(segment_error(with("max_new_tokens", 1e12)).first, "max_new_tokens");
  EXPECT_EQ(segment_error(with("max_new_tokens", true)).first, "max_new_tokens");
  EXPECT_EQ(segment_error(with("max_new_tokens", 100000)).first, "max_new_tokens");
  EXPECT_EQ(segment_error(with("mask_format", "gif")).first, "mask_format");
  EXPECT_EQ(segment_error(with("overlay", "yes")).first, "overlay");
  EXPECT_EQ(segment_error(with("colour", 1)).first, "colour");
  EXPECT_EQ(segment_error(without("image")).first, "image");
  EXPECT_EQ(segment_error(with("image", 5)).first, "image");
  EXPECT_EQ(segment_error(with("image", "")).first, "image");
  EXPECT_EQ(segment_error(with("image", "@@@@")).first, "image");                       // bad base64
  EXPECT_EQ(segment_error(with("image", "QUJD=QUJD")).first, "image");                  // data after padding
  EXPECT_EQ(segment_error(with("image", base64_encode("hello, not an image"))).first, "image");
  const std::string png = test::png_bytes(image());
  EXPECT_EQ(segment_error(with("image", base64_encode(png.substr(0, png.size() / 2)))).first, "image");  // truncated
  EXPECT_EQ(segment_error(with("image", base64_encode(test::png_header_only(100000, 100000)))).first, "image");
  EXPECT_EQ(segment_error(with("image", base64_encode(test::png_header_only(3000, 3000))), small).first, "image");
  EXPECT_EQ(segment_error(with("image", "data:image/gif;base64," + img)).first, "image");
  EXPECT_EQ(segment_error(with("image", "data:image/png," + img)).first, "image");
  EXPECT_EQ(segment_error(with("image", std::string(200000, 'A')), small), std::make_pair(std::string("image"), 413));
}

TEST(ServeRequest, AskAndSessionCreate) {
  const auto a = serve::parse_ask_request(json_body({{"question", "And the handle?"}, {"mask_format", "rle"}}), {});
  ASSERT_TRUE(a.ok());
  EXPECT_EQ(a.value->question, "And the handle?");
  EXPECT_EQ(serve::parse_ask_request(json_body({{"question", "x"}, {"image", "y"}}), {}).error.field, "image");
  EXPECT_EQ(serve::parse_ask_request(json_body({{"max_new_tokens", 3}}), {}).error.field, "question");
  const auto s = serve::parse_session_create_request(json_body({{"image", test::png_data_uri(image())}}), {});
  ASSERT_TRUE(s.ok()) << s.error.message;
  EXPECT_EQ(serve::parse_session_create_request(json_body(json::object()), {}).error.field, "image");
  EXPECT_TRUE(serve::valid_session_id("0123456789abcdef0123456789abcdef"));
  EXPECT_FALSE(serve::valid_session_id("../etc"));
  EXPECT_FALSE(serve::valid_session_id("0123456789ABCDEF0123456789abcdef"));
}

json chat_json(const json& content, const json& extra = json::object()) {
  json j{{"model", "anything"}, {"messages", json::array({json{{"role", "user"}, {"content", content}}})}};
  for (auto it = extra.begin(); it != extra.end(); ++it) j[it.key()] = it.value();
  return j;
}

TEST(ServeRequest, ChatCompletions) {
  const json content = json::array({json{{"type", "text"}, {"text", "Where is the cup?"}},
                                    json{{"type", "image_url"}, {"image_url", {{"url", test::png_data_uri(image())}}}}});
  auto p = serve::parse_chat_request(json_body(chat_json(content, {{"max_tokens", 9}, {"stream", true}, {"temperature", 0}})), {});
  ASSERT_TRUE(p.ok()) << p.error.field << ": " << p.error.message;
  EXPECT_EQ(p.value->question, "Where is the cup?");
  EXPECT_EQ(p.value->max_tokens, 9);
  EXPECT_TRUE(p.value->stream);
  EXPECT_EQ(p.value->model, "anything");
  EXPECT_TRUE(p.value->history.empty());
  EXPECT_EQ(serve::chat_dialog(*p.value).front().user, "<image>\nWhere is the cup?");
  p = serve::parse_chat_request(json_body(chat_json(content, {{"max_completion_tokens", 4}})), {});
  ASSERT_TRUE(p.ok());
  EXPECT_EQ(p.value->max_tokens, 4);

  // A follow-up: user (image) / assistant / user.
  json multi{{"messages", json::array({json{{"role", "system"}, {"content", "Be brief."}},
                                        json{{"role", "user"}, {"content", content}},
                                        json{{"role", "assistant"}, {"content", "It is the cup [SEG]."}},
                                        json{{"role", "user"}, {"content", "And its handle?"}}})}};
  p = serve::parse_chat_request(json_body(multi), {});
  ASSERT_TRUE(p.ok()) << p.error.message;
  ASSERT_EQ(p.value->history.size(), 1u);
  EXPECT_EQ(p.value->question, "And its handle?");
  const Dialog d = serve::chat_dialog(*p.value);
  ASSERT_EQ(d.size(), 2u);
  EXPECT_EQ(d[0].user, "<image>\nWhere is the cup?");
  EXPECT_EQ(d[0].assistant, "It is the cup [SEG].");
  EXPECT_EQ(d[1].assistant, "");

  auto err = [&](const json& j) { return serve::parse_chat_request(json_body(j), {}).error; };
  EXPECT_EQ(err(chat_json(content, {{"temperature", 0.7}})).field, "temperature");
  EXPECT_EQ(err(chat_json(content, {{"temperature", 0.7}})).status, 400);
  EXPECT_EQ(err(chat_json(content, {{"max_tokens", "5"}})).field, "max_tokens");
  EXPECT_EQ(err(chat_json(content, {{"stream", "yes"}})).field, "stream");
  EXPECT_EQ(err(chat_json("no image here")).field, "messages");
  EXPECT_EQ(err(json{{"messages", "hi"}}).field, "messages");
  EXPECT_EQ(err(json{{"messages", json::array()}}).field, "messages");
  EXPECT_EQ(err(json::object()).field, "messages");
  EXPECT_EQ(err(chat_json(json::array({json{{"type", "image_url"}, {"image_url", {{"url", "https://example.com/a.png"}}}}}))).field,
            "messages[0].content[0].image_url.url");
  EXPECT_EQ(err(chat_json(json::array({json{{"type", "image_url"}, {"image_url", {{"url", "data:image/png;base64,!!"}}}}}))).field,
            "messages[0].content[0].image_url.url");
  EXPECT_EQ(err(chat_json(json::array({json{{"type", "audio"}}}))).field, "messages[0].content[0].type");
  json wrong_role = chat_json(content);
  wrong_role["messages"][0]["role"] = "robot";
  EXPECT_EQ(err(wrong_role).field, "messages[0].role");
  EXPECT_EQ(err(chat_json(content, {{"m2sa", {{"mask_format", "bmp"}}}})).field, "m2sa.mask_format");
}

TEST(ServeRequest, Base64AndErrorJson) {
  EXPECT_EQ(serve::base64_decode("aGVsbG8=", 100), std::optional<std::string>("hello"));
  EXPECT_EQ(serve::base64_decode("aGVsbG8", 100), std::optional<std::string>("hello"));
  EXPECT_EQ(serve::base64_decode("aGVs\nbG8=", 100), std::optional<std::string>("hello"));
  EXPECT_EQ(serve::base64_decode("a", 100), std::nullopt);
  EXPECT_EQ(serve::base64_decode("aGVsbG8=", 3), std::nullopt);
  const json e = json::parse(serve::error_json({400, "question", "the question is empty"}));
  EXPECT_EQ(e["error"]["field"], "question");
  EXPECT_EQ(e["error"]["param"], "question");
  EXPECT_EQ(e["error"]["status"], 400);
  EXPECT_EQ(e["error"]["message"], "question: the question is empty");
}

}  // namespace
}  // namespace m2sa
