// The server's parts apart from HTTP: OpenAI request parsing (every field checked, named in errors), response
// shapes, the document cache's LRU bound, telling that a client has closed its connection, and the pipeline's conversation layout that the server sends to the
// decoder.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <thread>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "coenc/co_encoder.h"
#include "coenc/pipeline.h"
#include "serve/api.h"
#include "serve/connection.h"
#include "serve/document_cache.h"
#include "test_util.h"

namespace coenc::test {
namespace {

using nlohmann::json;
namespace fs = std::filesystem;
using serve::HttpError;

// Expects parse_completion_request to refuse `body` with 400 and a message containing `needle`.
void expect_refused(const json& body, bool chat, const std::string& needle) {
  try {
    serve::parse_completion_request(body, chat);
    ADD_FAILURE() << "accepted " << body.dump();
  } catch (const HttpError& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
  }
}

TEST(ServeApi, ParsesAChatRequestWithDocuments) {
  const json body = json::parse(R"({
    "model": "x", "messages": [
      {"role": "developer", "content": "Be brief."},
      {"role": "user", "content": [{"type": "document", "text": "A long text."}, {"type": "text", "text": "Q1?"}]},
      {"role": "assistant", "content": null},
      {"role": "user", "content": [{"type": "text", "text": "Compare "}, {"type": "document", "id": "doc-ab"}]}],
    "max_completion_tokens": 7, "temperature": 0, "top_p": 0.5, "top_k": 3, "seed": 9, "stop": ["\n\n", "END"],
    "stream": true, "stream_options": {"include_usage": true}, "frequency_penalty": 0.1, "n": 1,
    "chat_template_kwargs": {"enable_thinking": false}})");
  const serve::CompletionRequest r = serve::parse_completion_request(body, true);
  ASSERT_EQ(r.messages.size(), 4u);
  EXPECT_EQ(r.messages[0].role, "system");
  ASSERT_EQ(r.messages[1].parts.size(), 2u);
  EXPECT_EQ(r.messages[1].parts[0].document, 0);
  EXPECT_EQ(r.messages[1].parts[1].text, "Q1?");
  EXPECT_TRUE(r.messages[2].parts.empty());
  EXPECT_EQ(r.messages[3].parts[1].document, 1);
  ASSERT_EQ(r.documents.size(), 2u);
  EXPECT_EQ(r.documents[0].text, "A long text.");
  EXPECT_EQ(r.documents[1].id, "doc-ab");
  EXPECT_EQ(r.max_tokens, 7);
  EXPECT_EQ(r.sampling.temperature, 0.0f);
  EXPECT_EQ(r.sampling.top_p, 0.5f);
  EXPECT_EQ(r.sampling.top_k, 3);
  EXPECT_EQ(r.sampling.seed, 9u);
  EXPECT_EQ(r.stop, (std::vector<std::string>{"\n\n", "END"}));
  EXPECT_TRUE(r.stream && r.include_usage);
  EXPECT_EQ(r.chat_template_kwargs, nlohmann::ordered_json({{"enable_thinking", false}}));
}

TEST(ServeApi, RefusesBadFieldsByName) {
  const json hi = json::array({{{"role", "user"}, {"content", "hi"}}});
  expect_refused(json::object(), true, "\"messages\"");
  expect_refused({{"messages", json::array()}}, true, "\"messages\"");
  expect_refused({{"messages", hi}, {"max_tokens", 1.5}}, true, "\"max_tokens\" must be an integer");
  expect_refused({{"messages", hi}, {"max_tokens", -3}}, true, "\"max_tokens\" must be in [0, ");
  expect_refused({{"messages", hi}, {"max_tokens", 1e30}}, true, "\"max_tokens\" must be in [0, ");
  expect_refused({{"messages", hi}, {"temperature", -1}}, true, "\"temperature\"");
  expect_refused({{"messages", hi}, {"top_p", 2}}, true, "\"top_p\"");
  expect_refused({{"messages", hi}, {"n", 3}}, true, "n = 1");
  expect_refused({{"messages", hi}, {"logprobs", true}}, true, "\"logprobs\"");
  expect_refused({{"messages", hi}, {"stop", json::array({""})}}, true, "must not be empty");
  expect_refused({{"messages", hi}, {"stop", 5}}, true, "\"stop\"");
  expect_refused({{"messages", hi}, {"stream", "yes"}}, true, "\"stream\"");
  expect_refused({{"messages", hi}, {"chat_template_kwargs", true}}, true, "\"chat_template_kwargs\" must be an object");
  expect_refused({{"messages", json::array({{{"role", "user"}}})}}, true, "messages[0] has no \"content\"");
  expect_refused({{"messages", json::array({{{"role", "tool"}, {"content", "x"}}})}}, true, "messages[0].role");
  expect_refused({{"messages", json::array({{{"role", "user"}, {"content", json::array({{{"type", "document"}}})}}})}},
                 true, "exactly one of \"text\" and \"id\"");
  expect_refused({{"messages", json::array({{{"role", "user"}, {"content", json::array({{{"type", "document"}, {"text", ""}}})}}})}},
                 true, "the document is empty");
  expect_refused({{"prompt", 5}}, false, "\"prompt\" must be a string");
  expect_refused(json::object(), false, "\"prompt\" is required");
  EXPECT_EQ(serve::parse_completion_request({{"prompt", json::array({"once"})}}, false).prompt, "once");
}

TEST(ServeApi, BodiesAndErrorEnvelopes) {
  try {
    serve::parse_body("{\"a\": ");
    ADD_FAILURE();
  } catch (const HttpError& e) {
    EXPECT_EQ(e.status, 400);
    EXPECT_EQ(serve::error_body(e)["error"]["code"], "invalid_json");
  }
  EXPECT_EQ(serve::http_error(Error(ErrorCode::ExceedsContext, "x")).code, "context_length_exceeded");
  EXPECT_EQ(serve::http_error(Error(ErrorCode::Internal, "x")).status, 500);
  EXPECT_EQ(serve::http_error(Error(ErrorCode::InvalidInput, "x")).status, 400);
  EXPECT_EQ(serve::finish_reason("stop_token"), "stop");
  EXPECT_EQ(serve::finish_reason("stop_string"), "stop");
  EXPECT_EQ(serve::finish_reason("cancelled"), "length");
  serve::Usage u;
  u.prompt_tokens = 40, u.completion_tokens = 2, u.compressed_vectors = 32, u.document_tokens = 128;
  const json r = serve::completion_response(true, "id1", 5, "m", "Paris", "stop", u);
  EXPECT_EQ(r["choices"][0]["message"]["content"], "Paris");
  EXPECT_EQ(r["usage"]["total_tokens"], 42);
  EXPECT_EQ(r["usage"]["prompt_tokens_details"]["compressed_vectors"], 32);
  const json first = serve::completion_chunk(true, "id1", 5, "m", "", "", true);
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  EXPECT_TRUE(first["choices"][0]["finish_reason"].is_null());
  const json last = serve::completion_chunk(false, "id1", 5, "m", "", "length", false);
  EXPECT_EQ(last["object"], "text_completion");
  EXPECT_EQ(last["choices"][0]["finish_reason"], "length");
}

TEST(ServeApi, Base64AndPromptEmbedsAreCheckedBeforeUse) {
  EXPECT_EQ(serve::decode_base64("TWFu", "f"), "Man");
  EXPECT_EQ(serve::decode_base64("TWE=", "f"), "Ma");
  EXPECT_EQ(serve::decode_base64("TQ==", "f"), "M");
  EXPECT_EQ(serve::decode_base64("", "f"), "");
  EXPECT_THROW(serve::decode_base64("TWF", "f"), HttpError);
  EXPECT_THROW(serve::decode_base64("TW!u", "f"), HttpError);
  // Two float32 rows of width 2 (16 bytes = 24 base64 characters).
  const std::string zeros16 = "AAAAAAAAAAAAAAAAAAAAAA==";
  const serve::CompletionRequest r = serve::parse_completion_request(
      {{"prompt_embeds", {{"data", zeros16}, {"shape", {2, 2}}}}}, false);
  ASSERT_TRUE(r.has_prompt_embeds);
  EXPECT_EQ(r.prompt_embeds.rows, 2);
  EXPECT_EQ(r.prompt_embeds.bytes.size(), 16u);
  EXPECT_FALSE(r.prompt_embeds.bf16);
  expect_refused({{"prompt_embeds", {{"data", zeros16}, {"shape", {4, 2}}}}}, false, "needs 32 bytes");
  expect_refused({{"prompt_embeds", {{"data", zeros16}, {"shape", {2, 2, 1}}}}}, false, "[n, d_model]");
  expect_refused({{"prompt_embeds", {{"data", zeros16}, {"shape", {-2, -2}}}}}, false, "[n, d_model]");
  expect_refused({{"prompt_embeds", {{"data", zeros16}, {"shape", {2, 4}}, {"dtype", "bfloat16"}}}}, true,
                 "\"messages\"");  // prompt_embeds belongs to /v1/completions
  expect_refused({{"prompt_embeds", {{"data", zeros16}, {"shape", {2, 2}}, {"dtype", "f8"}}}}, false, "dtype");
  expect_refused({{"prompt_embeds", "AAAA"}}, false, "must be an object");
  EXPECT_EQ(serve::parse_completion_request({{"prompt_embeds", {{"data", zeros16}, {"shape", {2, 4}}, {"dtype", "bfloat16"}}}},
                                            false).prompt_embeds.bf16, true);
}

CompressedDocument doc_of_bytes(int64_t floats) {
  CompressedDocument d;
  d.chunks.push_back(torch::zeros({floats}, torch::kFloat32));
  return d;
}

// A loopback TCP connection of one address family, and the Connection as its server side sees it.
struct Loopback {
  int listener = -1, client = -1, served = -1;
  serve::Connection connection;
  ~Loopback() {
    for (int fd : {served, client, listener})
      if (fd >= 0) ::close(fd);
  }
  // False when this machine has no loopback of `family` (a container without IPv6).
  bool open(int family) {
    sockaddr_storage addr{};
    socklen_t len = family == AF_INET ? sizeof(sockaddr_in) : sizeof(sockaddr_in6);
    if (family == AF_INET) {
      auto* a = reinterpret_cast<sockaddr_in*>(&addr);
      a->sin_family = AF_INET;
      a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    } else {
      auto* a = reinterpret_cast<sockaddr_in6*>(&addr);
      a->sin6_family = AF_INET6;
      a->sin6_addr = in6addr_loopback;
    }
    listener = ::socket(family, SOCK_STREAM, 0);
    if (listener < 0 || ::bind(listener, reinterpret_cast<sockaddr*>(&addr), len) != 0) return false;
    EXPECT_EQ(::listen(listener, 1), 0);
    EXPECT_EQ(::getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len), 0);
    client = ::socket(family, SOCK_STREAM, 0);
    EXPECT_EQ(::connect(client, reinterpret_cast<sockaddr*>(&addr), len), 0);
    served = ::accept(listener, nullptr, nullptr);
    EXPECT_GE(served, 0);
    sockaddr_storage client_addr{};
    socklen_t client_len = sizeof client_addr;
    EXPECT_EQ(::getsockname(client, reinterpret_cast<sockaddr*>(&client_addr), &client_len), 0);
    const auto port = [](const sockaddr_storage& a) {
      return ntohs(a.ss_family == AF_INET ? reinterpret_cast<const sockaddr_in&>(a).sin_port
                                          : reinterpret_cast<const sockaddr_in6&>(a).sin6_port);
    };
    const std::string host = family == AF_INET ? "127.0.0.1" : "::1";
    connection = {host, port(addr), host, port(client_addr)};
    return true;
  }
  // Closes the client's end and waits until the server's side is seen closed (the FIN arrives at once on
  // loopback; a second at most).
  bool close_client_and_wait() {
    ::close(client);
    client = -1;
    for (int i = 0; i < 100; ++i) {
      if (serve::client_has_closed(connection)) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return false;
  }
};

// A loopback connection: open, the server side does not see the client as gone; once the client closes it, it
// does (the server's socket waits in CLOSE_WAIT). Addresses that do not parse, or no such connection, are never
// taken for a closed one.
TEST(ServeApi, TellsWhenAClientHasClosedItsConnection) {
  Loopback lo;
  ASSERT_TRUE(lo.open(AF_INET));
  const serve::Connection c = lo.connection;
  EXPECT_FALSE(serve::client_has_closed(c));
  EXPECT_TRUE(lo.close_client_and_wait());
  serve::Connection other = c;
  other.remote_port = c.remote_port == 65535 ? 65534 : c.remote_port + 1;  // no such connection
  EXPECT_FALSE(serve::client_has_closed(other));
  EXPECT_FALSE(serve::client_has_closed({"not an address", c.local_port, "127.0.0.1", c.remote_port}));
  EXPECT_FALSE(serve::client_has_closed({"127.0.0.1", c.local_port, "::1", c.remote_port}));
  EXPECT_FALSE(serve::client_has_closed({}));
}

// The same over IPv6 (/proc/net/tcp6, whose addresses are four words), and for an IPv4 client of a server bound to
// "::" as the server sees it: an IPv4-mapped address (::ffff:127.0.0.1) on both ends.
TEST(ServeApi, TellsWhenAnIpv6ClientHasClosedItsConnection) {
  Loopback lo;
  if (!lo.open(AF_INET6)) GTEST_SKIP() << "no IPv6 loopback on this machine";
  EXPECT_FALSE(serve::client_has_closed(lo.connection));
  EXPECT_TRUE(lo.close_client_and_wait());

  Loopback mapped;  // a dual-stack listener on :: and an IPv4 client
  mapped.listener = ::socket(AF_INET6, SOCK_STREAM, 0);
  ASSERT_GE(mapped.listener, 0);
  int off = 0;
  ASSERT_EQ(::setsockopt(mapped.listener, IPPROTO_IPV6, IPV6_V6ONLY, &off, sizeof off), 0);
  sockaddr_in6 any{};
  any.sin6_family = AF_INET6;
  any.sin6_addr = in6addr_any;
  socklen_t len = sizeof any;
  ASSERT_EQ(::bind(mapped.listener, reinterpret_cast<sockaddr*>(&any), len), 0);
  ASSERT_EQ(::listen(mapped.listener, 1), 0);
  ASSERT_EQ(::getsockname(mapped.listener, reinterpret_cast<sockaddr*>(&any), &len), 0);
  sockaddr_in v4{};
  v4.sin_family = AF_INET;
  v4.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  v4.sin_port = any.sin6_port;
  mapped.client = ::socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_EQ(::connect(mapped.client, reinterpret_cast<sockaddr*>(&v4), sizeof v4), 0);
  mapped.served = ::accept(mapped.listener, nullptr, nullptr);
  ASSERT_GE(mapped.served, 0);
  sockaddr_in client_addr{};
  len = sizeof client_addr;
  ASSERT_EQ(::getsockname(mapped.client, reinterpret_cast<sockaddr*>(&client_addr), &len), 0);
  mapped.connection = {"::ffff:127.0.0.1", ntohs(any.sin6_port), "::ffff:127.0.0.1", ntohs(client_addr.sin_port)};
  EXPECT_FALSE(serve::client_has_closed(mapped.connection));
  EXPECT_TRUE(mapped.close_client_and_wait());
}

TEST(ServeApi, DocumentCacheEvictsTheLeastRecentlyUsed) {
  serve::DocumentCache cache(1000);  // bytes: room for two documents of 100 floats (400 bytes each + bookkeeping)
  const std::string a = serve::DocumentCache::document_id("fp", "a"), b = serve::DocumentCache::document_id("fp", "b"),
                    c = serve::DocumentCache::document_id("fp", "c");
  EXPECT_NE(a, serve::DocumentCache::document_id("fp2", "a"));  // another model: another id
  EXPECT_EQ(a.rfind("doc-", 0), 0u);
  cache.insert(a, std::make_shared<CompressedDocument>(doc_of_bytes(100)));
  cache.insert(b, std::make_shared<CompressedDocument>(doc_of_bytes(100)));
  EXPECT_TRUE(cache.find(a));  // a is now the most recent
  cache.insert(c, std::make_shared<CompressedDocument>(doc_of_bytes(100)));
  EXPECT_TRUE(cache.find(a));
  EXPECT_FALSE(cache.find(b));  // evicted
  EXPECT_TRUE(cache.find(c));
  cache.insert("huge", std::make_shared<CompressedDocument>(doc_of_bytes(1000)));  // larger than the cache
  EXPECT_FALSE(cache.find("huge"));
  const auto s = cache.stats();
  EXPECT_EQ(s.entries, 2);
  EXPECT_EQ(s.evictions, 1);
  EXPECT_EQ(s.hits, 3);
  EXPECT_EQ(s.misses, 2);
  EXPECT_LE(s.bytes, 1000);
}

// The server's chat requests go through conversation_prompt: in the chat layout each document's block stands
// where its part does inside the rendered turns; one user message [document, text] is exactly ask_prompt's
// layout; the raw layout joins the messages' parts; a document no message refers to is an error.
TEST(ServeApi, ConversationPromptPlacesEachDocumentWhereItsPartStands) {
  TempDir dir;
  make_tiny_co_encoder(dir / "chat", 5, /*chat=*/true);
  make_tiny_co_encoder(dir / "raw", 5, /*chat=*/false);
  for (const char* name : {"chat", "raw"}) {
    CoEncoder m = load_co_encoder(dir / name, DeviceOptions{});
    CoEncoderTokenizers tok = load_co_encoder_tokenizers(dir / name, m->config());
    const auto d1 = m->compress(tok.context->encode(sample_document_text(40), EncodeOptions{false, false}));
    const auto d2 = m->compress(tok.context->encode(sample_document_text(20), EncodeOptions{false, false}));
    const std::vector<std::vector<torch::Tensor>> docs = {d1, d2};
    // One user message, documents then the question: the same input as ask_prompt.
    std::vector<ConversationMessage> one = {{"user", {{"", 0}, {"", 1}, {"What is it?", -1}}}};
    const AskPrompt c = conversation_prompt(*m, *tok.text, docs, one);
    const AskPrompt a = ask_prompt(*m, *tok.text, docs, "What is it?");
    ASSERT_EQ(c.segments.size(), a.segments.size()) << name;
    for (size_t i = 0; i < c.segments.size(); ++i) {
      EXPECT_EQ(c.segments[i].ids, a.segments[i].ids) << name << " segment " << i;
      if (!c.segments[i].is_tokens()) EXPECT_TRUE(torch::equal(c.segments[i].rows, a.segments[i].rows));
    }
    EXPECT_EQ(c.n_positions, a.n_positions);
    EXPECT_EQ(c.stop_tokens, a.stop_tokens);
    // Several turns, the second document in the last one.
    std::vector<ConversationMessage> turns = {{"user", {{"", 0}, {"Summarise.", -1}}},
                                              {"assistant", {{"It is about cats.", -1}}},
                                              {"user", {{"And ", -1}, {"", 1}, {"?", -1}}}};
    const AskPrompt t = conversation_prompt(*m, *tok.text, docs, turns);
    ASSERT_LT(t.document_segments[0], t.document_segments[1]);
    std::string between;  // the text between the two blocks
    for (size_t i = t.document_segments[0] + 1; i < t.document_segments[1]; ++i)
      between += tok.text->decode(t.segments[i].ids);
    EXPECT_NE(between.find("Summarise."), std::string::npos) << name << ": " << between;
    EXPECT_NE(between.find("It is about cats."), std::string::npos) << name << ": " << between;
    EXPECT_EQ(std::string(name) == "chat", between.find("<|im_start|>assistant") != std::string::npos) << between;
    EXPECT_COENC_ERROR(conversation_prompt(*m, *tok.text, docs, {{"user", {{"", 0}, {"Q?", -1}}}}),
                       "document 2 is given but no message refers to it");
  }
  CoEncoder raw = load_co_encoder(dir / "raw", DeviceOptions{});
  CoEncoderTokenizers tok = load_co_encoder_tokenizers(dir / "raw", raw->config());
  EXPECT_COENC_ERROR(conversation_prompt(*raw, *tok.text, {}, {{"system", {{"Be brief.", -1}}}, {"user", {{"Q?", -1}}}}),
                     "a system message needs the chat layout");
}

// coenc chat's Conversation: the first reply is answer()'s; a follow-up fed only what the cache lacks (the
// documents' blocks are reused) generates exactly what a fresh session given the whole conversation generates;
// reset() starts over; a window too small for the documents is refused at once.
TEST(Pipeline, ConversationReusesTheCacheWithoutChangingTheAnswers) {
  TempDir dir;
  for (const bool chat : {true, false}) {
    const fs::path path = dir / (chat ? "chat" : "raw");
    make_tiny_co_encoder(path, 7, chat);
    CoEncoder m = load_co_encoder(path, DeviceOptions{});
    CoEncoderTokenizers tok = load_co_encoder_tokenizers(path, m->config());
    DocumentSource source;
    source.name = "doc.txt";
    source.text = sample_document_text(60);
    std::vector<PreparedDocument> docs = prepare_documents({source}, m->config(), *tok.context, 2);
    compress_documents(*m, docs, 2, false);
    GenerationOptions go;
    go.max_new_tokens = 6;
    go.sampling.temperature = 0;

    Conversation conversation(*m, *tok.text, docs, AskOptions{});
    const GenerationResult r1 = conversation.reply("What is it?", go);
    EXPECT_EQ(r1.ids, answer(*m, *tok.text, docs, "What is it?", AskOptions{}, go).ids);
    EXPECT_EQ(conversation.last_cost().n_reused, 0);
    const GenerationResult r2 = conversation.reply("And then?", go);
    const auto& cost = conversation.last_cost();
    const int64_t block = 2 + docs[0].n_vectors;
    EXPECT_GE(cost.n_reused, block) << (chat ? "chat" : "raw");
    EXPECT_EQ(cost.n_reused + cost.n_fed, r2.n_prompt);

    // The same conversation from scratch, in a fresh session.
    const std::vector<ConversationMessage> messages = {{"user", {{"", 0}, {"What is it?", -1}}},
                                                       {"assistant", {{r1.text, -1}}},
                                                       {"user", {{"And then?", -1}}}};
    const AskPrompt prompt = conversation_prompt(*m, *tok.text, {docs[0].doc.chunks}, messages);
    EXPECT_EQ(prompt.n_positions, r2.n_prompt);
    Session fresh(m->language_model);
    GenerationOptions g2 = go;
    append_unique(g2.stop_tokens, prompt.stop_tokens);
    g2.detokenize = [&](const TokenIds& ids) { return tok.text->decode_bytes(ids, true); };
    EXPECT_EQ(generate(fresh, prompt.segments, g2).ids, r2.ids) << (chat ? "chat" : "raw");

    conversation.reset();
    EXPECT_EQ(conversation.n_exchanges(), 0u);
    EXPECT_EQ(conversation.reply("What is it?", go).ids, r1.ids);

    AskOptions tight;
    tight.n_ctx = block + 1;
    EXPECT_COENC_ERROR(Conversation(*m, *tok.text, docs, tight), "leaves no room for a message");
  }
}

}  // namespace
}  // namespace coenc::test
