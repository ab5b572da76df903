// coenc generate: continue a prompt with a decoder model, streaming the text as it is produced.
#include <iostream>
#include <sstream>

#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "coenc/decoder.h"
#include "coenc/error.h"
#include "coenc/generate.h"
#include "commands.h"

namespace coenc::cli {

namespace {

struct GenerateArgs {
  std::string model;            // Hugging Face model directory
  std::string prompt;           // text prompt (needs the model's tokenizer)
  std::string prompt_ids;       // "1,2,3": token ids, no tokenizer needed
  int n_predict = 128;          // tokens to generate at most
  std::vector<std::string> stop;  // extra stop strings
  bool ignore_eos = false;      // keep going past end-of-sequence tokens
  bool json = false;            // print one JSON object at the end instead of streaming
  DeviceArgs device;
  SamplingOptions sampling;
  int64_t n_ctx = 0;
};

int run_generate(const GenerateArgs& a) {
  COENC_CHECK(a.prompt.empty() != a.prompt_ids.empty(), "give exactly one of --prompt and --prompt-ids");
  DeviceOptions dev = parse_device_options(a.device.device, a.device.dtype);
  DecoderLm lm = load_decoder(a.model, dev);
  const ModelConfig& cfg = lm->config();

  TokenIds prompt;
  if (!a.prompt_ids.empty()) {
    prompt = parse_id_list(a.prompt_ids, "--prompt-ids");
  } else {
    fail(ErrorCode::Unsupported, "--prompt needs a tokenizer, which this build does not have yet; use --prompt-ids");
  }

  SessionOptions so;
  so.n_ctx = a.n_ctx;
  Session session(lm, so);
  GenerationOptions go;
  go.max_new_tokens = a.n_predict;
  go.sampling = a.sampling;
  if (!a.ignore_eos) go.stop_tokens = cfg.eos_token_ids;
  go.stop_strings = a.stop;

  TokenCallback stream;
  if (!a.json) {
    stream = [&](TokenId id, const std::string& delta) {
      if (go.detokenize) std::cout << delta;
      else std::cout << (id >= 0 ? std::to_string(id) + " " : "");
      std::cout.flush();
      return true;
    };
  }
  GenerationResult r = generate(session, {Segment::tokens(prompt)}, go, stream);
  if (a.json) {
    nlohmann::json j = {{"ids", r.ids}, {"stop_reason", r.stop_reason}, {"n_prompt", r.n_prompt}};
    if (go.detokenize) j["text"] = r.text;
    std::cout << j.dump() << "\n";
  } else {
    std::cout << "\n";
    const double tps = r.decode_seconds > 0 && r.ids.size() > 1 ? (r.ids.size() - 1) / r.decode_seconds : 0;
    std::cerr << format("coenc: {} prompt tokens in {} s, {} tokens generated ({} tok/s), stop: {}\n", r.n_prompt,
                        r.prefill_seconds, r.ids.size(), tps, r.stop_reason);
  }
  return 0;
}

}  // namespace

CommandFn setup_generate(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  auto* cmd = app.add_subcommand("generate", "Continue a prompt with a decoder model, streaming tokens as they come.");
  cmd->footer(
      "Examples:\n"
      "  coenc generate --model models/default --prompt \"Once upon a time\" -n 64\n"
      "  coenc generate --model DIR --prompt-ids 1,450,4996 --temp 0 --json\n"
      "--temp 0 is greedy (deterministic); otherwise --seed fixes the draw.");
  cmd->add_option("--model,-m", a->model, "Hugging Face model directory (config.json + *.safetensors)")->required();
  cmd->add_option("--prompt,-p", a->prompt, "prompt text");
  cmd->add_option("--prompt-ids", a->prompt_ids, "prompt as comma-separated token ids, e.g. 1,2,3");
  cmd->add_option("-n,--n-predict", a->n_predict, "maximum number of tokens to generate")->capture_default_str();
  cmd->add_option("--stop", a->stop, "stop when this text appears (repeatable)");
  cmd->add_flag("--ignore-eos", a->ignore_eos, "do not stop at end-of-sequence tokens");
  cmd->add_flag("--json", a->json, "print {\"ids\": [...], \"text\": ...} at the end instead of streaming");
  cmd->add_option("--ctx-size,-c", a->n_ctx, "context size in tokens (default: the model's)");
  add_sampling_options(*cmd, a->sampling);
  add_device_options(*cmd, a->device);
  return [a] { return run_generate(*a); };
}

}  // namespace coenc::cli
