// coenc generate: continue a prompt (text, chat messages or token ids) with a decoder model, streaming the text
// as it is produced.
#include <filesystem>
#include <iostream>

#include <nlohmann/json.hpp>

#include "cli_util.h"
#include "coenc/atomic_file.h"
#include "coenc/decoder.h"
#include "coenc/error.h"
#include "coenc/generate.h"
#include "coenc/tokenizer.h"
#include "commands.h"

namespace coenc::cli {

namespace {

struct GenerateArgs {
  std::string model;              // Hugging Face model directory
  std::string prompt;             // text prompt
  std::string prompt_file;        // prompt text from a file ("-": standard input)
  std::string prompt_ids;         // "1,2,3": token ids, no tokenizer needed
  std::string tokenizer;          // tokenizer path; default: the model directory
  bool chat = false;              // wrap the prompt as a user turn in the model's chat template
  std::string system;             // system message (implies --chat)
  std::string messages;           // JSON file of [{"role", "content"}, ...] (implies --chat)
  std::string chat_format;        // chatml, llama3, llama2, mistral, gemma; default: the chat_template
  std::string template_kwargs;    // --chat-template-kwargs (JSON object)
  bool no_special = false;        // do not add BOS/EOS around a plain text prompt
  GenerationArgs gen;              // -n, --stop, --ignore-eos, -c
  bool json = false;              // print one JSON object at the end instead of streaming
  DeviceArgs device;
  SamplingOptions sampling;
};

std::vector<ChatMessage> read_messages(const std::string& path) {
  return parse_chat_messages(read_text_input(path, "messages file"), path);
}

int run_generate(const GenerateArgs& a) {
  const int sources = !a.prompt.empty() + !a.prompt_file.empty() + !a.prompt_ids.empty() + !a.messages.empty();
  COENC_CHECK(sources == 1, "give exactly one of --prompt, --file, --prompt-ids and --messages");
  const bool chat = a.chat || !a.system.empty() || !a.messages.empty() || !a.chat_format.empty() ||
                    !a.template_kwargs.empty();
  COENC_CHECK(!(chat && !a.prompt_ids.empty()), "--prompt-ids cannot be combined with chat options");

  // Everything that can fail on user input is checked before the (slow) model load.
  ModelConfig cfg = ModelConfig::load(a.model);
  std::unique_ptr<Tokenizer> tok;
  const std::string tok_path = a.tokenizer.empty() ? a.model : a.tokenizer;
  if (!a.tokenizer.empty() || a.prompt_ids.empty() || Tokenizer::in_directory(a.model)) tok = Tokenizer::load(tok_path);
  if (tok)
    COENC_CHECK(tok->vocab_size() <= cfg.vocab_size,
                "{}: the tokenizer has {} tokens but the model's vocab_size is {}: they do not belong together",
                tok_path, tok->vocab_size(), cfg.vocab_size);

  TokenIds prompt;
  TokenIds stop_tokens = a.gen.ignore_eos ? TokenIds{} : cfg.eos_token_ids;
  if (!a.prompt_ids.empty()) {
    prompt = parse_id_list(a.prompt_ids, "--prompt-ids");
  } else if (chat) {
    std::vector<ChatMessage> messages;
    if (!a.messages.empty()) messages = read_messages(a.messages);
    else {
      if (!a.system.empty()) messages.push_back({"system", a.system});
      messages.push_back({"user", a.prompt.empty() ? read_text_input(a.prompt_file, "prompt file") : a.prompt});
    }
    const ChatTemplate chat_template = resolve_chat_template(*tok, a.chat_format);
    ChatRenderOptions ro;
    ro.template_kwargs = parse_chat_template_kwargs(a.template_kwargs);
    prompt = encode_chat(*tok, messages, chat_template, ro);
    if (!a.gen.ignore_eos) append_unique(stop_tokens, chat_stop_ids(*tok, chat_template));
  } else {
    std::string text = a.prompt;
    if (!a.prompt_file.empty()) text = read_text_input(a.prompt_file, "prompt file");
    EncodeOptions eo;
    eo.add_special = !a.no_special;
    prompt = tok->encode(text, eo);
    COENC_CHECK(!prompt.empty(), "the prompt is empty");
  }

  DeviceOptions dev = device_options(a.device);
  DecoderLm lm = load_decoder(a.model, dev);
  SessionOptions so;
  so.n_ctx = a.gen.n_ctx;
  Session session(lm, so);
  if (static_cast<int64_t>(prompt.size()) > session.n_ctx())
    fail(ErrorCode::ExceedsContext, "the prompt has {} tokens but the context holds {} (--ctx-size)", prompt.size(),
         session.n_ctx());

  GenerationOptions go;
  go.max_new_tokens = a.gen.n_predict;
  go.sampling = a.sampling;
  go.stop_tokens = stop_tokens;
  go.stop_strings = a.gen.stop;
  if (tok) go.detokenize = [&](const TokenIds& ids) { return tok->decode_bytes(ids, /*skip_special=*/true); };
  COENC_CHECK(a.gen.stop.empty() || tok, "--stop needs a tokenizer (none found in {})", a.model);

  GenerationResult r =
      generate(session, {Segment::tokens(prompt)}, go, a.json ? TokenCallback() : stream_to_stdout(tok.get()));
  if (a.json) {
    nlohmann::json j = {{"ids", r.ids}, {"stop_reason", r.stop_reason}, {"n_prompt", r.n_prompt}};
    if (tok) j["text"] = r.text;
    std::cout << j.dump() << "\n";
  } else {
    print_generation_summary(r);
  }
  return 0;
}

}  // namespace

CommandFn setup_generate(CLI::App& app) {
  auto a = std::make_shared<GenerateArgs>();
  auto* cmd = app.add_subcommand("generate", "Continue a prompt with a decoder model, streaming tokens as they come.");
  cmd->footer(
      "The prompt is text (--prompt, --file), chat turns (--chat, --system, --messages) rendered with the model's\n"
      "chat template, or raw token ids (--prompt-ids). The tokenizer is read from the model directory\n"
      "(tokenizer.json or tokenizer.model) unless --tokenizer names one.\n\n"
      "Examples:\n"
      "  coenc generate -m models/default -p \"Once upon a time\" -n 64\n"
      "  coenc generate -m DIR --chat --system \"Answer briefly.\" -p \"What is RoPE?\"\n"
      "  coenc generate -m DIR --messages chat.json --json     # [{\"role\": \"user\", \"content\": \"...\"}]\n"
      "  coenc generate -m DIR --prompt-ids 1,450,4996 --temp 0 --json\n"
      "--temp 0 is greedy (deterministic); otherwise --seed fixes the draw. --json prints\n"
      "{\"ids\": [...], \"text\": ..., \"stop_reason\": ..., \"n_prompt\": N} at the end.");
  cmd->add_option("--model,-m", a->model, "Hugging Face model directory (config.json + *.safetensors)")->required();
  cmd->add_option("--prompt,-p", a->prompt, "prompt text");
  cmd->add_option("--file,-f", a->prompt_file, "read the prompt text from a file (- for standard input)");
  cmd->add_option("--prompt-ids", a->prompt_ids, "prompt as comma-separated token ids, e.g. 1,2,3");
  cmd->add_option("--tokenizer", a->tokenizer, "tokenizer.json, tokenizer.model or a folder (default: --model)");
  cmd->add_flag("--chat", a->chat, "send the prompt as a user turn through the chat template");
  cmd->add_option("--system", a->system, "system message (implies --chat)");
  cmd->add_option("--messages", a->messages, "JSON file of chat messages [{\"role\", \"content\"}] (implies --chat)");
  cmd->add_option("--chat-format", a->chat_format,
                  "a built-in chat format instead of the tokenizer's chat_template: "
                  "chatml, llama3, llama2, mistral or gemma");
  add_chat_template_kwargs_option(*cmd, a->template_kwargs);
  cmd->add_flag("--no-special", a->no_special, "do not add BOS/EOS tokens around a plain text prompt");
  add_generation_options(*cmd, a->gen);
  cmd->add_flag("--json", a->json, "print one JSON object at the end instead of streaming");
  add_sampling_options(*cmd, a->sampling);
  add_device_options(*cmd, a->device);
  return [a] { return run_generate(*a); };
}

}  // namespace coenc::cli
