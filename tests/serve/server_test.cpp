// `m2sa serve`'s HTTP service in process, on loopback, with the tiny model forced to known answers
// (infer_test_util.h): every endpoint, sessions that keep the image's encodings, streaming, concurrent clients that
// each get the answer of a lone request, a full queue (503), timeouts (504), and every bad input (4xx naming the
// field, and the server answers afterwards).
#include "m2sa/serve/server.h"

#include <ATen/ATen.h>
#include <gtest/gtest.h>
#include <httplib.h>

#include <chrono>
#include <future>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "m2sa/core/json_reader.h"
#include "m2sa/io/coco_mask.h"
#include "m2sa/vision/mask_image.h"
#include "serve/serve_test_util.h"
#include "test_util.h"

namespace m2sa {
namespace {

const std::string kQuestionA = "Which parts of the chair hold a person up? Please output segmentation mask.";
const std::string kAnswerA = "Sure, the chair's leg [SEG] and the seat [SEG].";
const std::string kQuestionB = "Where is the chair?";
const std::string kAnswerB = "There is no chair here.";
const std::string kQuestionC = "And what holds the seat? Please output segmentation mask.";

// A server on a free loopback port, serving in a thread.
struct RunningServer {
  RunningServer(const infer::Predictor& p, serve::ServeLimits limits) {
    serve::ServerOptions o;
    o.host = "127.0.0.1";
    o.port = 0;
    o.limits = limits;
    o.model_name = "tiny-test";
    server = std::make_unique<serve::Server>(p, o);
    port = server->bind();
    thread = std::thread([this] { server->listen(); });
  }
  ~RunningServer() {
    server->stop();
    thread.join();
  }
  httplib::Client client() const {
    httplib::Client c("127.0.0.1", port);
    c.set_read_timeout(300, 0);
    return c;
  }
  std::unique_ptr<serve::Server> server;
  int port = 0;
  std::thread thread;
};

class ServeHttp : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    predictor_ = std::make_unique<infer::Predictor>(test::tiny_model(31), test::tiny_tokenizer());
    image_a_ = test::random_rgb(72, 100, 11);
    image_b_ = test::random_rgb(90, 60, 12);
    test::force(*predictor_, {{image_a_, kQuestionA, kAnswerA}, {image_b_, kQuestionB, kAnswerB}});
    infer::PredictOptions po;
    po.max_new_tokens = 30;
    lone_a_ = std::make_unique<infer::Prediction>(predictor_->predict(image_a_, kQuestionA, po));
    lone_b_ = std::make_unique<infer::Prediction>(predictor_->predict(image_b_, kQuestionB, po));
    ASSERT_EQ(lone_a_->targets.size(), 2u);
    ASSERT_EQ(lone_b_->targets.size(), 0u);
    serve::ServeLimits limits;
    limits.default_max_new_tokens = 30;
    limits.max_batch = 4;
    limits.max_queue = 32;
    limits.max_body_bytes = 2 << 20;
    limits.max_question_bytes = 300;
    server_ = std::make_unique<RunningServer>(*predictor_, limits);
  }
  static void TearDownTestSuite() {
    server_.reset();
    lone_a_.reset();
    lone_b_.reset();
    predictor_.reset();
  }

  static json post(const std::string& path, const json& body, int expect = 200) {
    httplib::Client c = server_->client();
    auto r = c.Post(path.c_str(), body.dump(), "application/json");
    EXPECT_TRUE(r) << path << ": no response (" << httplib::to_string(r.error()) << ")";
    if (!r) return json();
    EXPECT_EQ(r->status, expect) << path << ": " << r->body.substr(0, 500);
    EXPECT_EQ(r->get_header_value("Content-Type").rfind("application/json", 0), 0u);
    return json::parse(r->body);
  }

  // The answer of a segment request checked against a lone in-process prediction: same text and targets; the same
  // masks exactly (a request decoded alone), or up to threshold flips of batching noise (decoded with others).
  static void expect_same(const json& j, const infer::Prediction& lone, bool exact_masks = true) {
    EXPECT_EQ(j.at("answer"), lone.answer);
    EXPECT_EQ(j.at("finish_reason"), lone.finish_reason);
    ASSERT_EQ(j.at("targets").size(), lone.targets.size()) << j.dump().substr(0, 400);
    for (std::size_t k = 0; k < lone.targets.size(); ++k) {
      const json& t = j["targets"][k];
      EXPECT_EQ(t.at("phrase"), lone.targets[k].phrase);
      const json rle{{"size", t["mask"]["size"]}, {"counts", t["mask"]["counts"]}};
      const at::Tensor mask = coco::ann_to_mask(rle, lone.height, lone.width, "response").to(at::kBool);
      if (exact_masks) {
        EXPECT_EQ(t.at("area"), lone.targets[k].area);
        EXPECT_EQ(t.at("bbox"), json(std::vector<int64_t>(lone.targets[k].box.begin(), lone.targets[k].box.end())));
        EXPECT_TRUE(mask.equal(lone.targets[k].mask)) << "target " << k;
      } else {
        const int64_t differ = mask.ne(lone.targets[k].mask).sum().item<int64_t>();
        EXPECT_LE(differ, mask.numel() / 200) << "target " << k << ": " << differ << " pixels differ";
      }
    }
  }

  static std::unique_ptr<infer::Predictor> predictor_;
  static at::Tensor image_a_, image_b_;
  static std::unique_ptr<infer::Prediction> lone_a_, lone_b_;
  static std::unique_ptr<RunningServer> server_;
};

std::unique_ptr<infer::Predictor> ServeHttp::predictor_;
at::Tensor ServeHttp::image_a_, ServeHttp::image_b_;
std::unique_ptr<infer::Prediction> ServeHttp::lone_a_, ServeHttp::lone_b_;
std::unique_ptr<RunningServer> ServeHttp::server_;

TEST_F(ServeHttp, SegmentJsonEqualsPredictor) {
  const json j = post("/v1/segment", {{"image", test::png_base64(image_a_)}, {"question", kQuestionA}, {"overlay", true}});
  expect_same(j, *lone_a_);
  EXPECT_EQ(j["targets"][0]["phrase"], "the chair's leg");
  EXPECT_EQ(j["targets"][0]["color"].get<std::string>().size(), 7u);
  ASSERT_TRUE(j.contains("overlay"));
  const std::string prefix = "data:image/png;base64,";
  EXPECT_EQ(j["overlay"].get<std::string>().rfind(prefix, 0), 0u);
  EXPECT_GE(j["timings"]["queue_s"].get<double>(), 0.0);
  const json b = post("/v1/segment", {{"image", test::png_data_uri(image_b_)}, {"question", kQuestionB}});
  expect_same(b, *lone_b_);
  EXPECT_FALSE(b.contains("overlay"));
}

TEST_F(ServeHttp, SegmentMultipartWithPngMasks) {
  httplib::Client c = server_->client();
  httplib::MultipartFormDataItems items = {{"image", test::png_bytes(image_a_), "a.png", "image/png"},
                                           {"question", kQuestionA, "", ""},
                                           {"mask_format", "png", "", ""}};
  auto r = c.Post("/v1/segment", items);
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  const json j = json::parse(r->body);
  ASSERT_EQ(j["targets"].size(), 2u);
  for (std::size_t k = 0; k < 2; ++k) {
    const json& m = j["targets"][k]["mask"];
    EXPECT_EQ(m["format"], "png");
    const auto bytes = serve::base64_decode(m["data"].get<std::string>(), 1 << 24);
    ASSERT_TRUE(bytes);
    const at::Tensor mask = vision::mask_from_png(decode_image_rgb(*bytes, "mask"));
    EXPECT_TRUE(mask.equal(lone_a_->targets[k].mask)) << "target " << k;
  }
}

TEST_F(ServeHttp, SessionsKeepTheImageEncodings) {
  httplib::Client c = server_->client();
  const json s = post("/v1/sessions", {{"image", test::png_base64(image_a_)}});
  const std::string id = s.at("session_id");
  EXPECT_TRUE(serve::valid_session_id(id));
  const json r1 = post("/v1/sessions/" + id + "/ask", {{"question", kQuestionA}});
  expect_same(r1, *lone_a_);
  EXPECT_EQ(r1["round"], 1);
  const json r2 = post("/v1/sessions/" + id + "/ask", {{"question", kQuestionC}});
  EXPECT_EQ(r2["round"], 2);
  EXPECT_EQ(r2["clip_encodings"], 1) << "a follow-up does not encode the image again";
  EXPECT_EQ(r2["sam_encodings"], 1);
  EXPECT_TRUE(r2["timings"]["clip_cached"].get<bool>());
  // The same conversation through the predictor's chat session (`m2sa infer --chat`).
  infer::PredictOptions po;
  po.max_new_tokens = 30;
  infer::ChatSession chat = predictor_->chat(image_a_, po);
  (void)chat.ask(kQuestionA);
  const infer::Prediction second = chat.ask(kQuestionC);
  EXPECT_EQ(r2["answer"], second.answer);
  EXPECT_EQ(r2["targets"].size(), second.targets.size());
  auto d = c.Delete(("/v1/sessions/" + id).c_str());
  ASSERT_TRUE(d);
  EXPECT_EQ(d->status, 200);
  const json gone = post("/v1/sessions/" + id + "/ask", {{"question", kQuestionA}}, 404);
  EXPECT_EQ(gone["error"]["field"], "session");
  d = c.Delete(("/v1/sessions/" + id).c_str());
  ASSERT_TRUE(d);
  EXPECT_EQ(d->status, 404);
}

TEST_F(ServeHttp, ChatCompletionsAndStreaming) {
  const json content = json::array({json{{"type", "text"}, {"text", kQuestionA}},
                                    json{{"type", "image_url"}, {"image_url", {{"url", test::png_data_uri(image_a_)}}}}});
  const json req{{"model", "gpt-4o"}, {"messages", json::array({json{{"role", "user"}, {"content", content}}})},
                 {"max_tokens", 30}, {"temperature", 0}};
  const json j = post("/v1/chat/completions", req);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_EQ(j["model"], "tiny-test");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(j["choices"][0]["message"]["content"], lone_a_->answer);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(j["usage"]["completion_tokens"].get<int64_t>(), static_cast<int64_t>(lone_a_->output_ids.size()));
  expect_same(j["m2sa"], *lone_a_);

  json stream_req = req;
  stream_req["stream"] = true;
  httplib::Client c = server_->client();
  std::string events;
  auto r = c.Post("/v1/chat/completions", httplib::Headers{}, stream_req.dump(), "application/json");
  ASSERT_TRUE(r);
  ASSERT_EQ(r->status, 200) << r->body;
  EXPECT_EQ(r->get_header_value("Content-Type").rfind("text/event-stream", 0), 0u);
  std::istringstream in(r->body);
  std::string line, text;
  json last;
  int chunks = 0;
  bool done = false;
  while (std::getline(in, line)) {
    if (line.rfind("data: ", 0) != 0) continue;
    const std::string data = line.substr(6);
    if (data == "[DONE]") {
      done = true;
      continue;
    }
    const json ev = json::parse(data);
    EXPECT_EQ(ev["object"], "chat.completion.chunk");
    if (ev["choices"][0]["delta"].contains("content")) text += ev["choices"][0]["delta"]["content"].get<std::string>();
    last = ev;
    ++chunks;
  }
  EXPECT_TRUE(done);
  EXPECT_GT(chunks, 3) << "one event per token";
  EXPECT_EQ(last["choices"][0]["finish_reason"], "stop");
  expect_same(last["m2sa"], *lone_a_);
  EXPECT_EQ(text, lone_a_->answer);
}

TEST_F(ServeHttp, HealthModelsMetricsAndPage) {
  httplib::Client c = server_->client();
  auto h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  EXPECT_EQ(json::parse(h->body)["status"], "ok");
  auto m = c.Get("/v1/models");
  ASSERT_TRUE(m);
  EXPECT_EQ(json::parse(m->body)["data"][0]["id"], "tiny-test");
  (void)post("/v1/segment", {{"image", test::png_base64(image_b_)}, {"question", kQuestionB}});
  auto p = c.Get("/metrics");
  ASSERT_TRUE(p);
  EXPECT_NE(p->body.find("m2sa_requests_total{endpoint=\"segment\",status=\"200\"}"), std::string::npos) << p->body;
  EXPECT_NE(p->body.find("m2sa_request_duration_seconds_bucket{endpoint=\"segment\",le=\"+Inf\"}"), std::string::npos);
  EXPECT_NE(p->body.find("m2sa_decode_batch_size_count"), std::string::npos);
  EXPECT_NE(p->body.find("m2sa_generated_tokens_total"), std::string::npos);
  EXPECT_NE(p->body.find("m2sa_queue_depth 0"), std::string::npos);
  auto page = c.Get("/");
  ASSERT_TRUE(page);
  EXPECT_EQ(page->status, 200);
  EXPECT_NE(page->body.find("<script src=\"/app.js\">"), std::string::npos);
  EXPECT_EQ(page->body.find("http://"), std::string::npos) << "no CDN";
  EXPECT_EQ(page->body.find("https://"), std::string::npos) << "no CDN";
  auto js = c.Get("/app.js");
  ASSERT_TRUE(js);
  EXPECT_EQ(js->status, 200);
  EXPECT_NE(js->body.find("/v1/sessions"), std::string::npos);
}

TEST_F(ServeHttp, ConcurrentClientsGetTheLoneAnswers) {
  constexpr int kClients = 8;
  std::vector<std::future<json>> futures;
  for (int i = 0; i < kClients; ++i) {
    const bool a = i % 2 == 0;
    futures.push_back(std::async(std::launch::async, [this, a] {
      return post("/v1/segment", {{"image", test::png_base64(a ? image_a_ : image_b_)},
                                  {"question", a ? kQuestionA : kQuestionB}});
    }));
  }
  for (int i = 0; i < kClients; ++i) {
    const json j = futures[static_cast<std::size_t>(i)].get();
    expect_same(j, i % 2 == 0 ? *lone_a_ : *lone_b_, /*exact_masks=*/false);
  }
}

TEST_F(ServeHttp, BadInputsGet4xxNamingTheFieldAndTheServerStillAnswers) {
  httplib::Client c = server_->client();
  const std::string img = test::png_base64(image_b_);
  const std::string png = test::png_bytes(image_b_);
  struct BadCase {
    std::string path, body, field;
    int status;
  };
  const std::vector<BadCase> cases = {
      {"/v1/segment", "{not json", "body", 400},
      {"/v1/segment", "[]", "body", 400},
      {"/v1/segment", json{{"image", img}}.dump(), "question", 400},
      {"/v1/segment", json{{"image", img}, {"question", ""}}.dump(), "question", 400},
      {"/v1/segment", json{{"image", img}, {"question", std::string(301, 'x')}}.dump(), "question", 400},
      {"/v1/segment", json{{"image", img}, {"question", 7}}.dump(), "question", 400},
      {"/v1/segment", json{{"image", img}, {"question", "q"}, {"max_new_tokens", "many"}}.dump(), "max_new_tokens", 400},
      {"/v1/segment", json{{"image", img}, {"question", "q"}, {"overlay", 1}}.dump(), "overlay", 400},
      {"/v1/segment", json{{"image", "!!!not base64!!!"}, {"question", "q"}}.dump(), "image", 400},
      {"/v1/segment", json{{"image", base64_encode("GIF89a not really")}, {"question", "q"}}.dump(), "image", 400},
      {"/v1/segment", json{{"image", base64_encode(png.substr(0, png.size() / 2))}, {"question", "q"}}.dump(), "image", 400},
      {"/v1/segment", json{{"image", base64_encode(test::png_header_only(90000, 90000))}, {"question", "q"}}.dump(), "image", 400},
      {"/v1/segment", std::string(3 << 20, ' '), "body", 413},
      {"/v1/sessions", json{{"image", 12}}.dump(), "image", 400},
      {"/v1/sessions/0123456789abcdef0123456789abcdef/ask", json{{"question", "q"}}.dump(), "session", 404},
      {"/v1/sessions/not-a-session/ask", json{{"question", "q"}}.dump(), "session", 404},
      {"/v1/chat/completions",
       json{{"messages", json::array({json{{"role", "user"},
                                           {"content", json::array({json{{"type", "image_url"},
                                                                          {"image_url", {{"url", "data:image/png;base64," + img}}}},
                                                                     json{{"type", "text"}, {"text", "q"}}})}}})},
            {"temperature", 0.5}}
           .dump(),
       "temperature", 400},
      {"/v1/chat/completions", json{{"messages", 3}}.dump(), "messages", 400},
      {"/v1/nothing", "{}", "path", 404},
  };
  for (const BadCase& b : cases) {
    auto r = c.Post(b.path.c_str(), b.body, "application/json");
    ASSERT_TRUE(r) << b.path << " " << b.field << ": no response";
    EXPECT_EQ(r->status, b.status) << b.path << " " << b.field << ": " << r->body.substr(0, 300);
    json j = json::parse(r->body, nullptr, false);
    ASSERT_FALSE(j.is_discarded()) << "not JSON: " << r->body.substr(0, 200);
    EXPECT_EQ(j["error"]["field"], b.field) << b.path << ": " << j.dump().substr(0, 300);
    EXPECT_FALSE(j["error"]["message"].get<std::string>().empty());
  }
  // Multipart without an image; a text file as the image.
  auto r = c.Post("/v1/segment", httplib::MultipartFormDataItems{{"question", "q", "", ""}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(json::parse(r->body)["error"]["field"], "image");
  r = c.Post("/v1/segment", httplib::MultipartFormDataItems{{"image", "hello", "a.txt", "text/plain"}, {"question", "q", "", ""}});
  ASSERT_TRUE(r);
  EXPECT_EQ(r->status, 400);
  EXPECT_EQ(json::parse(r->body)["error"]["field"], "image");
  // Multipart whose boundary never appears: httplib refuses the framing, the error still names the body.
  r = c.Post("/v1/segment", "--nothing-here\r\n", "multipart/form-data; boundary=zzz");
  ASSERT_TRUE(r);
  EXPECT_GE(r->status, 400);
  EXPECT_LT(r->status, 500);
  EXPECT_FALSE(json::parse(r->body)["error"]["field"].get<std::string>().empty()) << r->body;
  // Still serving.
  auto h = c.Get("/health");
  ASSERT_TRUE(h);
  EXPECT_EQ(h->status, 200);
  expect_same(post("/v1/segment", {{"image", img}, {"question", kQuestionB}}), *lone_b_);
}

// A small server of its own: admission paused, so the queue fills without relying on timing.
TEST_F(ServeHttp, FullQueueGives503AndLateRequestsTimeOut) {
  serve::ServeLimits limits;
  limits.default_max_new_tokens = 30;
  limits.max_batch = 1;
  limits.max_queue = 1;
  limits.timeout_s = 1e-3;  // every request expires while admission is paused
  RunningServer small(*predictor_, limits);
  small.server->scheduler().pause(true);
  const json body{{"image", test::png_base64(image_b_)}, {"question", kQuestionB}};
  std::vector<std::future<httplib::Result>> waiting;
  for (int i = 0; i < 2; ++i) {  // one free batch place + one queue place
    waiting.push_back(std::async(std::launch::async, [&] {
      httplib::Client c = small.client();
      return c.Post("/v1/segment", body.dump(), "application/json");
    }));
    while (small.server->scheduler().queue_depth() < i + 1) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  httplib::Client c = small.client();
  auto full = c.Post("/v1/segment", body.dump(), "application/json");
  ASSERT_TRUE(full);
  EXPECT_EQ(full->status, 503) << full->body;
  EXPECT_EQ(full->get_header_value("Retry-After"), "1");
  EXPECT_FALSE(json::parse(full->body)["error"]["message"].get<std::string>().empty());
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // past the 1 ms deadline
  small.server->scheduler().pause(false);
  for (auto& f : waiting) {
    auto r = f.get();
    ASSERT_TRUE(r);
    EXPECT_EQ(r->status, 504) << r->body;
    EXPECT_EQ(json::parse(r->body)["error"]["field"], "timeout");
  }
  EXPECT_EQ(small.server->metrics().requests("segment", 503), 1);
}

}  // namespace
}  // namespace m2sa
