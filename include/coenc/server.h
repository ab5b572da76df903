// coenc serve: an OpenAI-compatible HTTP server (docs/server.md). Documents sent with a request are compressed on
// the server by the pipeline (coenc/pipeline.h), cached by content, and read by the decoder as vectors.
#pragma once

#include <cstdint>
#include <memory>
#include <string>

namespace coenc {

struct ServerOptions {
  std::string model;             // a Co-Encoder checkpoint (documents enabled) or a plain decoder directory
  std::string host = "127.0.0.1";
  int port = 8080;               // 0: any free port (Server::port() says which)
  std::string device = "cpu", dtype = "auto";
  int parallel = 1;                     // requests served at once (slots); their answers decode together, one
                                        // batched step at a time (continuous batching)
  int64_t prefill_chunk = 512;          // prompt positions read between two decode steps while answers are in
                                        // progress (chunked prefill); 0: whole prompts
  int max_queue = 16;                   // requests waiting for a slot; more are refused with 503
  int64_t max_body_bytes = 32ll << 20;  // larger request bodies are refused with 413
  int64_t cache_bytes = 512ll << 20;    // compressed documents kept (LRU, by content)
  std::string cache_dir;         // non-empty: compressed documents are also kept there as ID.coctx files, and
                                 // a document not in memory is looked for there (ids survive a restart)
  int default_max_tokens = 256;  // a request's max_tokens when it gives none
  double request_timeout_s = 600;  // a request still generating after this long stops (finish_reason "length")
  std::string api_key;           // non-empty: every route but /health needs "Authorization: Bearer KEY"
  bool log_requests = true;      // one line per request on stderr
};

class Server {
 public:
  explicit Server(ServerOptions options);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  // Binds the port (throws InvalidInput naming host and port when it cannot), then serves on a background
  // thread while the model loads: /health answers 503 until it has, every other route 503 too.
  void start();
  // Loads the model (call after start(); throws what loading throws). Then /health is 200.
  void load_model();
  int port() const;
  // Stops accepting connections, lets in-flight requests finish, and returns once the server thread has ended.
  void stop();
  // Blocks until SIGINT or SIGTERM, then stop().
  void wait_for_signal();

 private:
  struct State;
  std::unique_ptr<State> state_;
};

}  // namespace coenc
