// tokenizer_config.json: the special tokens, BOS/EOS switches and chat template that transformers keeps
// beside tokenizer.json / tokenizer.model.
#pragma once

#include <optional>
#include <string>

namespace coenc::tok {

struct TokenizerConfig {
  std::optional<std::string> bos_token, eos_token, pad_token;  // token text; a string or {"content": ...}
  std::optional<bool> add_bos_token, add_eos_token;
  std::string chat_template;  // the "default" template when the file lists several
};

// Reads `path`. Throws InvalidInput naming the file and field for malformed JSON or fields of the wrong type.
TokenizerConfig read_tokenizer_config(const std::string& path);

}  // namespace coenc::tok
