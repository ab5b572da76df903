// coenc serve: the OpenAI-compatible HTTP server (coenc/server.h, docs/server.md).
#include <iostream>

#include "cli_util.h"
#include "coenc/co_encoder.h"
#include "coenc/error.h"
#include "coenc/model_config.h"
#include "coenc/server.h"
#include "commands.h"

namespace coenc::cli {

namespace {

struct ServeArgs {
  ServerOptions options;
  DeviceArgs device;
  double max_body_mb = 32, cache_mb = 512;
};

int run_serve(ServeArgs& a) {
  COENC_CHECK(a.max_body_mb > 0 && a.max_body_mb <= 4096, "--max-body-mb must be in (0, 4096], got {}", a.max_body_mb);
  COENC_CHECK(a.cache_mb >= 0 && a.cache_mb <= 1 << 20, "--cache-mb must be in [0, 1048576], got {}", a.cache_mb);
  ServerOptions& o = a.options;
  o.device = a.device.device;
  o.dtype = a.device.dtype;
  o.max_body_bytes = static_cast<int64_t>(a.max_body_mb * (1 << 20));
  o.cache_bytes = static_cast<int64_t>(a.cache_mb * (1 << 20));
  // A bad --device or model folder is an error before the port is taken (and the CPU's threads suit the dtype).
  device_options(a.device);
  if (!is_co_encoder_checkpoint(o.model)) ModelConfig::load(o.model);
  Server server(o);
  server.start();
  std::cerr << "coenc serve: listening on http://" << o.host << ":" << server.port() << " (loading " << o.model
            << ")" << std::endl;
  server.load_model();
  std::cerr << "coenc serve: ready: " << o.model << " on " << o.device << ", " << o.parallel << " slot(s)"
            << (o.api_key.empty() ? "" : ", API key required") << std::endl;
  server.wait_for_signal();
  return 0;
}

}  // namespace

CommandFn setup_serve(CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  auto* cmd = app.add_subcommand("serve", "Serve a model over an OpenAI-compatible HTTP API (documents compressed on the server).");
  cmd->footer(
      "Routes: GET /health, /v1/models, /metrics; POST /v1/chat/completions, /v1/completions, /v1/compress,\n"
      "/tokenize, /detokenize (docs/server.md). With a Co-Encoder checkpoint, a chat message may carry\n"
      "documents as content parts, {\"type\": \"document\", \"text\": \"...\"} (compressed on the server and\n"
      "cached by content) or {\"type\": \"document\", \"id\": \"doc-...\"} (an id from POST /v1/compress).\n"
      "usage.prompt_tokens counts decoder positions; prompt_tokens_details.compressed_vectors says how many\n"
      "of them were vectors. SIGINT / SIGTERM finish the requests in flight, then exit.\n\n"
      "Examples:\n"
      "  coenc serve -m models/default-coenc --port 8080\n"
      "  curl -s localhost:8080/v1/chat/completions -d '{\"messages\": [{\"role\": \"user\", \"content\": [\n"
      "    {\"type\": \"document\", \"text\": \"...\"}, {\"type\": \"text\", \"text\": \"What is the secret number?\"}]}]}'\n"
      "  coenc serve -m DIR --host 0.0.0.0 --parallel 4 --api-key \"$KEY\" --device cuda");
  cmd->add_option("--model,-m", a->options.model, "a Co-Encoder checkpoint or a plain decoder directory")->required();
  cmd->add_option("--host", a->options.host, "address to listen on")->capture_default_str();
  cmd->add_option("--port", a->options.port, "port to listen on (0: any free port)")
      ->check(CLI::Range(0, 65535))
      ->capture_default_str();
  cmd->add_option("--parallel", a->options.parallel,
                  "requests served at once: their answers decode together, one batched step for all "
                  "(continuous batching)")
      ->check(positive())
      ->capture_default_str();
  cmd->add_option("--prefill-chunk", a->options.prefill_chunk,
                  "prompt positions read between two decode steps while answers are in progress (chunked "
                  "prefill: a long new prompt does not stall them); 0: whole prompts")
      ->check(non_negative())
      ->capture_default_str();
  cmd->add_option("--max-queue", a->options.max_queue, "requests waiting for a slot before 503 (server busy)")
      ->check(non_negative())
      ->capture_default_str();
  cmd->add_option("--max-body-mb", a->max_body_mb, "largest request body in MiB (larger: 413)")->capture_default_str();
  cmd->add_option("--cache-mb", a->cache_mb, "memory for compressed documents in MiB (least recently used out first)")
      ->capture_default_str();
  cmd->add_option("--cache-dir", a->options.cache_dir,
                  "also keep compressed documents here as ID.coctx files: document ids survive a restart");
  cmd->add_option("-n,--n-predict", a->options.default_max_tokens,
                  "max_tokens of a request that gives none")
      ->check(non_negative())
      ->capture_default_str();
  cmd->add_option("--timeout", a->options.request_timeout_s,
                  "seconds a request may generate before it stops with finish_reason \"length\"")
      ->check(CLI::PositiveNumber)
      ->capture_default_str();
  cmd->add_option("--api-key", a->options.api_key, "require \"Authorization: Bearer KEY\" on every route but /health");
  cmd->add_flag("--quiet,-q", [a](int64_t) { a->options.log_requests = false; }, "no line per request on stderr");
  add_device_options(*cmd, a->device);
  return [a] { return run_serve(*a); };
}

}  // namespace coenc::cli
