// `coenc serve` run as users run it: the real binary on a free loopback port, talked to with curl and with the
// official `openai` npm client (tests/e2e/serve/openai_client.mjs; fetched by scripts/fetch_test_vocabs.sh).
// The embedded default Co-Encoder answers the README's question from a document sent in a chat message, streamed
// and not, and by the id POST /v1/compress gave; bad requests of every kind get the OpenAI error envelope with
// the right status; the API key guards every route but /health; SIGTERM ends the server cleanly.
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdio>
#include <regex>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "coenc/co_encoder.h"
#include "coenc/pipeline.h"
#include "coenc/tokenizer.h"
#include "test_util.h"

namespace coenc::test {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;

fs::path repo_root() { return test_dir().parent_path(); }
std::string q(const std::string& s) { return "'" + s + "'"; }

// Runs a shell command, returning its exit code and standard output.
RunResult shell(const std::string& cmd) {
  TempDir tmp;
  const int status = std::system((cmd + " >'" + (tmp / "out").string() + "' 2>'" + (tmp / "err").string() + "'").c_str());
  RunResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  r.out = read_file(tmp / "out");
  r.err = read_file(tmp / "err");
  return r;
}

// One `coenc serve` process on a port the kernel picks (--port 0), stopped with SIGTERM.
class ServeProcess {
 public:
  explicit ServeProcess(const std::string& args) {
    log_ = dir_ / "serve.log";
    const std::string cmd = "exec '" + std::string(COENC_BINARY) + "' serve --port 0 " + args + " 2>'" + log_.string() + "'";
    pid_ = fork();
    if (pid_ == 0) {
      execl("/bin/sh", "sh", "-c", cmd.c_str(), static_cast<char*>(nullptr));
      _exit(127);
    }
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(120);
    const std::regex listening("listening on http://[0-9.]+:([0-9]+)");
    while (std::chrono::steady_clock::now() < deadline) {
      const std::string log = read_log();
      std::smatch m;
      if (port_ == 0 && std::regex_search(log, m, listening)) port_ = std::stoi(m[1]);
      if (log.find("coenc serve: ready") != std::string::npos) return;
      int status = 0;
      if (waitpid(pid_, &status, WNOHANG) == pid_) {
        exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        pid_ = -1;
        return;
      }
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    ADD_FAILURE() << "coenc serve did not get ready: " << read_log();
  }
  ~ServeProcess() {
    if (pid_ > 0) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
  }
  bool running() const { return pid_ > 0; }
  int port() const { return port_; }
  pid_t pid() const { return pid_; }  // the coenc process itself (`exec` replaced the shell)
  std::string url(const std::string& route) const { return "http://127.0.0.1:" + std::to_string(port_) + route; }
  std::string read_log() const { return fs::exists(log_) ? read_file(log_) : ""; }
  // SIGTERM, then the exit code.
  int stop() {
    if (pid_ <= 0) return exit_code_;
    kill(pid_, SIGTERM);
    int status = 0;
    waitpid(pid_, &status, 0);
    pid_ = -1;
    exit_code_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return exit_code_;
  }
  int exit_code() const { return exit_code_; }

  // curl: the status code and the body.
  struct Reply {
    int status = 0;
    std::string body;
    json j() const { return json::parse(body, nullptr, false); }
  };
  Reply request(const std::string& method, const std::string& route, const std::string& body = "",
                const std::string& extra = "") const {
    TempDir tmp;
    write_file(tmp / "body", body);
    std::string cmd = "curl -s -o '" + (tmp / "reply").string() + "' -w '%{http_code}' -X " + method + " " + extra;
    if (!body.empty()) cmd += " -H 'Content-Type: application/json' --data-binary @'" + (tmp / "body").string() + "'";
    const RunResult r = shell(cmd + " " + q(url(route)));
    Reply reply;
    reply.status = std::atoi(r.out.c_str());
    if (fs::exists(tmp / "reply")) reply.body = read_file(tmp / "reply");
    return reply;
  }

 private:
  TempDir dir_;
  fs::path log_;
  pid_t pid_ = -1;
  int port_ = 0;
  int exit_code_ = -1;
};

json chat_with_document(const std::string& document, const std::string& question, int max_tokens = 8) {
  return {{"messages", json::array({{{"role", "user"},
                                     {"content", json::array({{{"type", "document"}, {"text", document}},
                                                              {{"type", "text"}, {"text", question}}})}}})},
          {"max_tokens", max_tokens},
          {"temperature", 0}};
}

// The error envelope {"error": {"message", "type", "code"}} with `status`, its message containing `needle`.
void expect_error(const ServeProcess::Reply& r, int status, const std::string& needle) {
  EXPECT_EQ(r.status, status) << r.body;
  const json j = r.j();
  ASSERT_TRUE(j.is_object() && j.contains("error")) << r.body;
  EXPECT_TRUE(j["error"]["message"].is_string() && j["error"]["type"].is_string() && j["error"].contains("code"))
      << r.body;
  EXPECT_NE(j["error"]["message"].get<std::string>().find(needle), std::string::npos) << r.body;
}

// The default Co-Encoder behind the server answers the README's question from a document in a chat message,
// through the openai client: plainly, streamed (the same text, chunk by chunk), and by a /v1/compress id.
TEST(Serve, TheOpenAIClientAsksAboutADocument) {
  const fs::path openai = test_dir() / "data/npm/node_modules/openai";
  if (!fs::exists(openai / "index.mjs")) GTEST_SKIP() << "the openai npm client is missing: run scripts/fetch_test_vocabs.sh";
  if (shell("node --version").exit_code != 0) GTEST_SKIP() << "node is not installed";
  ServeProcess server("-m " + q((repo_root() / "models/default-coenc").string()));
  ASSERT_TRUE(server.running()) << server.read_log();
  const RunResult r = shell("node " + q((test_dir() / "e2e/serve/openai_client.mjs").string()) + " " +
                            q(openai.string()) + " " + q(server.url("/v1")) + " " +
                            q((repo_root() / "examples/sample-document.txt").string()) +
                            " 'What is the secret number?'");
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  const json out = json::parse(r.out);
  EXPECT_EQ(out["models"], json::array({"default-coenc"}));
  EXPECT_NE(out["answer"].get<std::string>().find("73914"), std::string::npos) << out.dump();
  EXPECT_EQ(out["finish_reason"], "stop");
  // 1,400 tokens read as 350 vectors: the decoder's positions are the vectors, two markers and the question.
  const json& usage = out["usage"];
  EXPECT_EQ(usage["prompt_tokens_details"]["compressed_vectors"], 350) << usage.dump();
  EXPECT_GT(usage["prompt_tokens_details"]["document_tokens"].get<int>(), 1300);
  EXPECT_GT(usage["prompt_tokens"].get<int>(), 352);
  EXPECT_LT(usage["prompt_tokens"].get<int>(), 370);
  EXPECT_EQ(usage["total_tokens"], usage["prompt_tokens"].get<int>() + usage["completion_tokens"].get<int>());
  EXPECT_EQ(out["streamed"], out["answer"]);
  EXPECT_GE(out["stream_chunks"].get<int>(), 3);  // role, text, finish (and usage)
  EXPECT_EQ(out["stream_usage"], usage);
  EXPECT_EQ(out["compressed"]["n_vectors"], 350);
  EXPECT_EQ(out["compressed"]["cached"], true);  // the chat requests compressed it already
  EXPECT_EQ(out["answer_by_id"], out["answer"]);
  EXPECT_EQ(out["unknown_id"]["status"], 404) << out.dump();
  EXPECT_EQ(out["unknown_id"]["code"], "document_not_found");
  EXPECT_EQ(server.stop(), 0) << server.read_log();
}

// curl against a tiny Co-Encoder: routes, streaming, the document cache in /metrics, and bad requests.
TEST(Serve, CurlGetsAnswersAndClearErrors) {
  TempDir dir;
  make_tiny_co_encoder(dir / "tiny", 5, /*chat=*/true);
  ServeProcess server("-m " + q((dir / "tiny").string()) + " --max-body-mb 0.05 -q");
  ASSERT_TRUE(server.running()) << server.read_log();

  auto health = server.request("GET", "/health");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.j()["status"], "ok");
  auto models = server.request("GET", "/v1/models");
  EXPECT_EQ(models.status, 200);
  EXPECT_EQ(models.j()["data"][0]["meta"]["kind"], "co_encoder");

  const std::string doc = sample_document_text(100);
  const json ask = chat_with_document(doc, "What is it about?", 6);
  auto first = server.request("POST", "/v1/chat/completions", ask.dump());
  ASSERT_EQ(first.status, 200) << first.body;
  const json a = first.j();
  EXPECT_EQ(a["object"], "chat.completion");
  EXPECT_EQ(a["choices"][0]["message"]["role"], "assistant");
  EXPECT_LE(a["usage"]["completion_tokens"].get<int>(), 6);
  EXPECT_GT(a["usage"]["prompt_tokens_details"]["compressed_vectors"].get<int>(), 0);
  // The same document again: the cache answers, and greedy decoding gives the same text.
  auto second = server.request("POST", "/v1/chat/completions", ask.dump());
  EXPECT_EQ(second.j()["choices"][0]["message"]["content"], a["choices"][0]["message"]["content"]);
  const std::string metrics = server.request("GET", "/metrics").body;
  EXPECT_NE(metrics.find("coenc_document_cache_hits_total 1"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("coenc_requests_total{route=\"/v1/chat/completions\",status=\"200\"} 2"), std::string::npos)
      << metrics;

  // Streaming: server-sent events, chunks whose deltas add up to the answer, then [DONE].
  json streamed = ask;
  streamed["stream"] = true;
  auto sse = server.request("POST", "/v1/chat/completions", streamed.dump(), "-N");
  ASSERT_EQ(sse.status, 200);
  std::string text;
  std::vector<std::string> lines;
  for (size_t at = 0; at < sse.body.size();) {
    const size_t end = sse.body.find("\n\n", at);
    ASSERT_NE(end, std::string::npos) << sse.body;
    lines.push_back(sse.body.substr(at, end - at));
    at = end + 2;
  }
  ASSERT_GE(lines.size(), 3u);
  EXPECT_EQ(lines.back(), "data: [DONE]");
  for (size_t i = 0; i + 1 < lines.size(); ++i) {
    ASSERT_EQ(lines[i].rfind("data: ", 0), 0u) << lines[i];
    const json c = json::parse(lines[i].substr(6));
    EXPECT_EQ(c["object"], "chat.completion.chunk");
    text += c["choices"][0]["delta"].value("content", "");
  }
  EXPECT_EQ(text, a["choices"][0]["message"]["content"].get<std::string>());

  // /v1/completions: the decoder alone continues a text prompt.
  auto completion = server.request("POST", "/v1/completions", R"({"prompt": "The cat", "max_tokens": 3, "temperature": 0})");
  ASSERT_EQ(completion.status, 200) << completion.body;
  EXPECT_EQ(completion.j()["object"], "text_completion");
  EXPECT_TRUE(completion.j()["choices"][0]["text"].is_string());

  // /tokenize and /detokenize round trip.
  auto tok = server.request("POST", "/tokenize", R"({"content": "the cat sat"})");
  ASSERT_EQ(tok.status, 200) << tok.body;
  auto detok = server.request("POST", "/detokenize", json{{"tokens", tok.j()["tokens"]}}.dump());
  EXPECT_EQ(detok.j()["content"], "the cat sat");

  // chat_template_kwargs reach the template (the tiny ChatML template reads none of them, so the answer stays);
  // one the renderer sets itself is refused.
  json with_kwargs = ask;
  with_kwargs["chat_template_kwargs"] = {{"enable_thinking", false}};
  auto kw = server.request("POST", "/v1/chat/completions", with_kwargs.dump());
  ASSERT_EQ(kw.status, 200) << kw.body;
  EXPECT_EQ(kw.j()["choices"][0]["message"]["content"], a["choices"][0]["message"]["content"]);
  with_kwargs["chat_template_kwargs"] = {{"add_generation_prompt", false}};
  expect_error(server.request("POST", "/v1/chat/completions", with_kwargs.dump()), 400,
               "chat template kwargs cannot set \"add_generation_prompt\"");

  // Bad requests: each one the envelope, the right status, a message naming what is wrong.
  expect_error(server.request("POST", "/v1/chat/completions", "{not json"), 400, "not valid JSON");
  expect_error(server.request("POST", "/v1/chat/completions", "[1, 2]"), 400, "must be a JSON object");
  expect_error(server.request("POST", "/v1/chat/completions", "{}"), 400, "\"messages\"");
  expect_error(server.request("POST", "/v1/chat/completions",
                              R"({"messages": [{"role": "user", "content": "hi"}], "max_tokens": "many"})"),
               400, "\"max_tokens\" must be an integer");
  expect_error(server.request("POST", "/v1/chat/completions",
                              R"({"messages": [{"role": "user", "content": "hi"}], "max_tokens": -1})"),
               400, "\"max_tokens\" must be in");
  expect_error(server.request("POST", "/v1/chat/completions",
                              R"({"messages": [{"role": "user", "content": "hi"}], "n": 2})"),
               400, "n = 1");
  expect_error(server.request("POST", "/v1/chat/completions",
                              R"({"messages": [{"role": "user", "content": "hi"}], "temperature": "hot"})"),
               400, "\"temperature\"");
  expect_error(server.request("POST", "/v1/chat/completions",
                              R"({"messages": [{"role": "wizard", "content": "hi"}]})"),
               400, "messages[0].role");
  expect_error(server.request("POST", "/v1/chat/completions",
                              R"({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]})"),
               400, "\"image_url\" are not supported");
  expect_error(server.request("POST", "/v1/chat/completions",
                              R"({"messages": [{"role": "user", "content": [{"type": "document", "id": "doc-1", "text": "x"}]}]})"),
               400, "exactly one of");
  expect_error(server.request("POST", "/v1/chat/completions",
                              R"({"messages": [{"role": "user", "content": [{"type": "document", "id": "doc-123"}]}]})"),
               404, "doc-123");
  // A document longer than the decoder can read, even compressed (256 positions, ratio 4): refused before the
  // tower runs, naming the counts.
  expect_error(server.request("POST", "/v1/chat/completions", chat_with_document(sample_document_text(1500), "q?").dump()),
               400, "document 1");
  expect_error(server.request("POST", "/v1/completions", json{{"prompt", std::string(60000, 'a')}}.dump()), 413,
               "larger than the server accepts");
  expect_error(server.request("POST", "/v1/compress", R"({"text": ""})"), 400, "\"text\"");
  expect_error(server.request("POST", "/detokenize", R"({"tokens": [5, 99999999]})"), 400, "tokens[1]");
  expect_error(server.request("GET", "/v1/nothing"), 404, "no route GET /v1/nothing");

  // Still serving after all of that, and SIGTERM ends it cleanly.
  EXPECT_EQ(server.request("GET", "/health").status, 200);
  EXPECT_EQ(server.stop(), 0) << server.read_log();
}

// --api-key guards every route but /health; a plain decoder serves completions and refuses documents.
TEST(Serve, ApiKeyAndPlainDecoder) {
  ServeProcess server("-m " + q((repo_root() / "models/default").string()) + " --api-key s3cret -q");
  ASSERT_TRUE(server.running()) << server.read_log();
  EXPECT_EQ(server.request("GET", "/health").status, 200);
  expect_error(server.request("GET", "/v1/models"), 401, "API key");
  expect_error(server.request("GET", "/v1/models", "", "-H 'Authorization: Bearer wrong'"), 401, "API key");
  expect_error(server.request("GET", "/metrics", "", "-H 'Authorization: Bearer s3cret0'"), 401, "API key");
  const std::string key = "-H 'Authorization: Bearer s3cret'";
  auto models = server.request("GET", "/v1/models", "", key);
  EXPECT_EQ(models.status, 200);
  EXPECT_EQ(models.j()["data"][0]["meta"]["kind"], "decoder");
  auto c = server.request("POST", "/v1/completions", R"({"prompt": "Once upon a time", "max_tokens": 4, "seed": 1})", key);
  ASSERT_EQ(c.status, 200) << c.body;
  EXPECT_EQ(c.j()["usage"]["completion_tokens"], 4);
  expect_error(server.request("POST", "/v1/chat/completions", chat_with_document("some text", "q?").dump(), key), 400,
               "plain decoder");
  EXPECT_EQ(server.stop(), 0);
}

// prompt_embeds: the decoder's own embedding rows of a prompt's tokens, sent as base64 float32, continue exactly as
// the prompt's text does; a shape that does not match the data or the decoder is refused before any allocation.
// --cache-dir: a document compressed before a restart is still there by its id.
TEST(Serve, PromptEmbedsAndAPersistentCache) {
  TempDir dir;
  make_tiny_co_encoder(dir / "tiny", 5, /*chat=*/true);
  CoEncoder m = load_co_encoder(dir / "tiny", DeviceOptions{});
  CoEncoderTokenizers tok = load_co_encoder_tokenizers(dir / "tiny", m->config());
  EncodeOptions with_bos;
  with_bos.add_special = true;  // as /v1/completions encodes a text prompt
  const TokenIds ids = tok.text->encode("the cat sat on the", with_bos);
  const torch::Tensor rows =
      m->language_model->embed(torch::tensor(ids, torch::kInt64).unsqueeze(0)).squeeze(0).to(torch::kFloat32).contiguous();
  const std::string data(static_cast<const char*>(rows.data_ptr()), rows.numel() * 4);
  const int64_t d = rows.size(1);

  ServeProcess server("-m " + q((dir / "tiny").string()) + " -q --cache-dir " + q((dir / "cache").string()));
  ASSERT_TRUE(server.running()) << server.read_log();
  auto by_text = server.request("POST", "/v1/completions", R"({"prompt": "the cat sat on the", "max_tokens": 5, "temperature": 0})");
  ASSERT_EQ(by_text.status, 200) << by_text.body;
  const json embeds = {{"data", base64_encode(data)}, {"shape", {rows.size(0), d}}, {"dtype", "float32"}};
  auto by_rows = server.request("POST", "/v1/completions",
                                json{{"prompt_embeds", embeds}, {"max_tokens", 5}, {"temperature", 0}}.dump());
  ASSERT_EQ(by_rows.status, 200) << by_rows.body;
  EXPECT_EQ(by_rows.j()["choices"][0]["text"], by_text.j()["choices"][0]["text"]);
  EXPECT_EQ(by_rows.j()["usage"]["prompt_tokens"], by_text.j()["usage"]["prompt_tokens"]);
  json wrong = embeds;
  wrong["shape"] = {rows.size(0) + 1, d};
  expect_error(server.request("POST", "/v1/completions", json{{"prompt_embeds", wrong}}.dump()), 400,
               "base64 characters, but shape");
  wrong = embeds;
  wrong["shape"] = {rows.size(0) * 2, d / 2};
  expect_error(server.request("POST", "/v1/completions", json{{"prompt_embeds", wrong}}.dump()), 400,
               "the decoder's d_model is");
  wrong["shape"] = {1LL << 40, d};
  expect_error(server.request("POST", "/v1/completions", json{{"prompt_embeds", wrong}}.dump()), 400,
               "prompt_embeds.shape must be");
  wrong = embeds;
  wrong["dtype"] = "int8";
  expect_error(server.request("POST", "/v1/completions", json{{"prompt_embeds", wrong}}.dump()), 400, "dtype");

  const std::string doc = sample_document_text(80);
  auto compressed = server.request("POST", "/v1/compress", json{{"text", doc}}.dump());
  ASSERT_EQ(compressed.status, 200) << compressed.body;
  const std::string id = compressed.j()["id"];
  EXPECT_TRUE(fs::exists(dir / "cache" / (id + ".coctx")));
  const json ask = {{"messages", json::array({{{"role", "user"},
                                               {"content", json::array({{{"type", "document"}, {"id", id}},
                                                                        {{"type", "text"}, {"text", "Who?"}}})}}})},
                    {"max_tokens", 4},
                    {"temperature", 0}};
  auto before = server.request("POST", "/v1/chat/completions", ask.dump());
  ASSERT_EQ(before.status, 200) << before.body;
  EXPECT_EQ(server.stop(), 0);

  ServeProcess again("-m " + q((dir / "tiny").string()) + " -q --cache-dir " + q((dir / "cache").string()));
  ASSERT_TRUE(again.running()) << again.read_log();
  auto after = again.request("POST", "/v1/chat/completions", ask.dump());
  ASSERT_EQ(after.status, 200) << after.body;
  EXPECT_EQ(after.j()["choices"][0]["message"]["content"], before.j()["choices"][0]["message"]["content"]);
  EXPECT_EQ(after.j()["usage"], before.j()["usage"]);
  EXPECT_EQ(again.stop(), 0);
}

// Limits: with one slot and no queue, a second request while the first generates is refused with 503
// queue_full; --timeout ends the first with finish_reason "length" long before its max_tokens (the default
// decoder's greedy continuation of this prompt runs past 400 tokens without an end-of-sequence token).
TEST(Serve, FullQueueAndRequestTimeout) {
  ServeProcess server("-m " + q((repo_root() / "models/default").string()) + " --max-queue 0 --timeout 1 -q");
  ASSERT_TRUE(server.running()) << server.read_log();
  TempDir tmp;
  const std::string long_request = "curl -s -o '" + (tmp / "long.json").string() + "' " + q(server.url("/v1/completions")) +
                                   " -d '{\"prompt\": \"Once upon a time\", \"max_tokens\": 100000, \"temperature\": 0}'";
  std::thread first([&] { shell(long_request); });
  bool busy = false;  // wait until the first request holds the slot
  for (int i = 0; i < 200 && !busy; ++i) {
    busy = server.request("GET", "/metrics").body.find("coenc_requests_active 1") != std::string::npos;
    if (!busy) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(busy) << "the first request never held the slot";
  const auto refused = server.request("POST", "/v1/completions", R"({"prompt": "Hi", "max_tokens": 2})");
  first.join();
  expect_error(refused, 503, "the server is busy");
  EXPECT_EQ(refused.j()["error"]["code"], "queue_full");
  const json done = json::parse(read_file(tmp / "long.json"));
  EXPECT_EQ(done["choices"][0]["finish_reason"], "length") << done.dump();
  EXPECT_LT(done["usage"]["completion_tokens"].get<int>(), 100000);
  EXPECT_EQ(server.stop(), 0);
}

// Continuous batching end to end: four requests sent at once decode together (the metrics count steps of more
// than one answer), and each answer is the one the same request gets alone (greedy, so it is fixed).
TEST(Serve, ConcurrentAnswersDecodeTogether) {
  ServeProcess server("-m " + q((repo_root() / "models/default").string()) + " --parallel 4 -q");
  ASSERT_TRUE(server.running()) << server.read_log();
  const std::vector<std::string> prompts = {"Once upon a time", "The old king said", "In the morning the",
                                            "She opened the door and"};
  auto body = [](const std::string& prompt) {
    return json{{"prompt", prompt}, {"max_tokens", 48}, {"temperature", 0}}.dump();
  };
  std::vector<std::string> alone;
  for (const auto& p : prompts) {
    const auto r = server.request("POST", "/v1/completions", body(p));
    ASSERT_EQ(r.status, 200) << r.body;
    alone.push_back(r.j()["choices"][0]["text"].get<std::string>());
  }
  auto metric = [&](const std::string& name) {
    const std::string text = server.request("GET", "/metrics").body;
    const size_t at = text.find("\n" + name + " ");
    return at == std::string::npos ? int64_t{-1} : std::stoll(text.substr(at + name.size() + 2));
  };
  const int64_t steps0 = metric("coenc_decode_steps_total"), rows0 = metric("coenc_decode_step_rows_total");
  ASSERT_GT(steps0, 0);
  EXPECT_EQ(rows0, steps0);  // one request at a time: one answer a step
  std::vector<ServeProcess::Reply> together(prompts.size());
  std::vector<std::thread> clients;
  for (size_t i = 0; i < prompts.size(); ++i)
    clients.emplace_back(
        [&, i] { together[i] = server.request("POST", "/v1/completions", body(prompts[i])); });
  for (auto& c : clients) c.join();
  for (size_t i = 0; i < prompts.size(); ++i) {
    ASSERT_EQ(together[i].status, 200) << together[i].body;
    EXPECT_EQ(together[i].j()["choices"][0]["text"], alone[i]) << prompts[i];
  }
  const int64_t steps = metric("coenc_decode_steps_total") - steps0,
                rows = metric("coenc_decode_step_rows_total") - rows0;
  EXPECT_GT(rows, steps) << "no step decoded two answers at once";
  EXPECT_EQ(server.stop(), 0) << server.read_log();
}

// Chunked prefill end to end: a long prompt that arrives while another answer decodes is read in pieces of
// --prefill-chunk positions between that answer's steps (the metrics count the pieces), and both answers are
// the ones each request gets alone.
TEST(Serve, ALongPromptIsReadInPiecesBetweenSteps) {
  ServeProcess server("-m " + q((repo_root() / "models/default").string()) + " --parallel 2 --prefill-chunk 8 -q");
  ASSERT_TRUE(server.running()) << server.read_log();
  std::string long_prompt;
  for (int i = 0; i < 12; ++i) long_prompt += "The king walked to the river and looked at the water. ";
  const std::string first = json{{"prompt", "Once upon a time"}, {"max_tokens", 400}, {"temperature", 0}}.dump();
  const std::string second = json{{"prompt", long_prompt}, {"max_tokens", 16}, {"temperature", 0}}.dump();
  const auto first_alone = server.request("POST", "/v1/completions", first);
  const auto second_alone = server.request("POST", "/v1/completions", second);
  ASSERT_EQ(first_alone.status, 200) << first_alone.body;
  ASSERT_EQ(second_alone.status, 200) << second_alone.body;
  const int64_t prompt_positions = second_alone.j()["usage"]["prompt_tokens"].get<int64_t>();
  ASSERT_GT(prompt_positions, 80);
  auto metric = [&](const std::string& name) {
    const std::string text = server.request("GET", "/metrics").body;
    const size_t at = text.find("\n" + name + " ");
    return at == std::string::npos ? int64_t{-1} : std::stoll(text.substr(at + name.size() + 2));
  };
  const int64_t pieces0 = metric("coenc_prefill_pieces_total");
  EXPECT_EQ(pieces0, 2);  // alone, each prompt was read whole
  ServeProcess::Reply first_reply, second_reply;
  std::thread decoding([&] { first_reply = server.request("POST", "/v1/completions", first); });
  bool busy = false;  // wait until the first answer decodes
  for (int i = 0; i < 500 && !busy; ++i) {
    busy = metric("coenc_requests_active") == 1;
    if (!busy) std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  ASSERT_TRUE(busy);
  second_reply = server.request("POST", "/v1/completions", second);
  decoding.join();
  ASSERT_EQ(first_reply.status, 200) << first_reply.body;
  ASSERT_EQ(second_reply.status, 200) << second_reply.body;
  EXPECT_EQ(first_reply.j()["choices"][0]["text"], first_alone.j()["choices"][0]["text"]);
  EXPECT_EQ(second_reply.j()["choices"][0]["text"], second_alone.j()["choices"][0]["text"]);
  // the first prompt whole, the second in ceil(positions / 8) pieces
  EXPECT_EQ(metric("coenc_prefill_pieces_total") - pieces0, 1 + (prompt_positions + 7) / 8);
  EXPECT_EQ(server.stop(), 0) << server.read_log();
}

// A non-streaming client that hangs up while its answer is generated frees its slot at once (the server sees its
// connection closed), not when the answer would have been written: the next request is served in the meantime.
TEST(Serve, AClientThatHangsUpFreesItsSlot) {
  ServeProcess server("-m " + q((repo_root() / "models/default").string()) + " --parallel 1 --max-queue 0 -q");
  ASSERT_TRUE(server.running()) << server.read_log();
  auto metric = [&](const std::string& name) {
    const std::string text = server.request("GET", "/metrics").body;
    const size_t at = text.find("\n" + name + " ");
    return at == std::string::npos ? int64_t{-1} : std::stoll(text.substr(at + name.size() + 2));
  };
  // max_tokens beyond the window: alone, this answer runs to the end of the decoder's 2,048 positions
  const RunResult hung_up = shell("curl -s --max-time 1 " + q(server.url("/v1/completions")) +
                                  " -d '{\"prompt\": \"Once upon a time\", \"max_tokens\": 100000, \"temperature\": 0}'");
  EXPECT_EQ(hung_up.exit_code, 28) << "curl was to give up after 1 s: " << hung_up.out;  // 28: timed out
  bool freed = false;
  for (int i = 0; i < 300 && !freed; ++i) {  // checked twice a second: allow 3 s
    freed = metric("coenc_requests_active") == 0;
    if (!freed) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  EXPECT_TRUE(freed) << "the slot was still held after the client had gone";
  EXPECT_EQ(metric("coenc_requests_cancelled_total"), 1);
  const auto next = server.request("POST", "/v1/completions", R"({"prompt": "Hi", "max_tokens": 2})");
  EXPECT_EQ(next.status, 200) << next.body;
  EXPECT_EQ(server.stop(), 0) << server.read_log();
}

// scripts/serve_load_test.mjs, bounded for CI: 8 streaming openai clients at once, each about its own document,
// twice. Every request is answered; the first round compresses every document and the second finds them all in
// the cache (the tower is skipped); answers decode in shared steps; the server's peak memory is reported. The
// script's timings are printed, never asserted (speed is measured by benchmarks: docs/server.md, "Load test").
TEST(Serve, LoadTestOfConcurrentStreamingClients) {
  const fs::path openai = test_dir() / "data/npm/node_modules/openai";
  if (!fs::exists(openai / "index.mjs")) GTEST_SKIP() << "the openai npm client is missing: run scripts/fetch_test_vocabs.sh";
  if (shell("node --version").exit_code != 0) GTEST_SKIP() << "node is not installed";
  ServeProcess server("-m " + q((repo_root() / "models/default-coenc").string()) + " --parallel 8 -q");
  ASSERT_TRUE(server.running()) << server.read_log();
  const RunResult r = shell("node " + q((repo_root() / "scripts/serve_load_test.mjs").string()) + " --url " +
                            q(server.url("")) + " --doc " + q((repo_root() / "docs/default-model.md").string()) +
                            " --clients 8 --doc-chars 1500 --max-tokens 6 --json --pid " +
                            std::to_string(server.pid()));
  ASSERT_EQ(r.exit_code, 0) << r.err << r.out;
  const json report = json::parse(r.out);
  std::cout << report.dump(1) << "\n";
  for (const char* name : {"cold", "cached"}) {
    const json& round = report["rounds"][name];
    EXPECT_EQ(round["answered"], 8) << name << ": " << round.dump();
    EXPECT_EQ(round["failed"], 0) << name << ": " << round.dump();
    EXPECT_GT(round["completion_tokens"].get<int>(), 0) << name;
    EXPECT_GT(round["decode_step_rows"].get<int>(), round["decode_steps"].get<int>()) << name << ": no shared step";
  }
  EXPECT_EQ(report["rounds"]["cold"]["cache_misses"], 8);
  EXPECT_EQ(report["rounds"]["cold"]["cache_hits"], 0);
  EXPECT_EQ(report["rounds"]["cached"]["cache_hits"], 8);
  EXPECT_EQ(report["rounds"]["cached"]["cache_misses"], 0);
  EXPECT_GT(report["peak_rss_mib"].get<double>(), 10.0);
  EXPECT_EQ(server.stop(), 0) << server.read_log();
}

// A model folder that is not one: one clear line and a non-zero exit, before any request.
TEST(Serve, RefusesAMissingModel) {
  expect_one_line_error(run_coenc("serve -m /nonexistent/model --port 0"), "/nonexistent/model");
  expect_one_line_error(run_coenc("serve -m models/default --port 0 --prefill-chunk -1"), "--prefill-chunk");
}

}  // namespace
}  // namespace coenc::test
