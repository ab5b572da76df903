#include "cli_util.h"

#include <cctype>

#include "coenc/error.h"

namespace coenc::cli {

void add_device_options(CLI::App& cmd, DeviceArgs& args) {
  cmd.add_option("--device", args.device, "cpu, cuda or cuda:N")->capture_default_str();
  cmd.add_option("--dtype", args.dtype, "compute dtype: f32, bf16, f16, or auto (f32 on CPU, bf16 on CUDA)")
      ->capture_default_str();
}

void add_sampling_options(CLI::App& cmd, SamplingOptions& o) {
  cmd.add_option("--temp", o.temperature, "sampling temperature; 0 = greedy")->capture_default_str();
  cmd.add_option("--top-k", o.top_k, "keep the k most likely tokens (0 = all)")->capture_default_str();
  cmd.add_option("--top-p", o.top_p, "nucleus sampling threshold (1 = off)")->capture_default_str();
  cmd.add_option("--min-p", o.min_p, "drop tokens below min-p x the top probability (0 = off)")->capture_default_str();
  cmd.add_option("--repeat-penalty", o.repetition_penalty, "penalise repeated tokens (1 = off)")->capture_default_str();
  cmd.add_option("--repeat-last-n", o.penalty_last_n, "how many recent tokens the penalty looks at")->capture_default_str();
  cmd.add_option("--seed", o.seed, "random seed")->capture_default_str();
}

TokenIds parse_id_list(const std::string& text, const char* flag) {
  TokenIds ids;
  size_t i = 0;
  while (i < text.size()) {
    while (i < text.size() && (std::isspace(static_cast<unsigned char>(text[i])) || text[i] == ',')) ++i;
    if (i >= text.size()) break;
    size_t j = i;
    while (j < text.size() && std::isdigit(static_cast<unsigned char>(text[j]))) ++j;
    COENC_CHECK(j > i && (j == text.size() || text[j] == ',' || std::isspace(static_cast<unsigned char>(text[j]))),
                "{}: expected comma-separated non-negative integers, got \"{}\"", flag, text);
    COENC_CHECK(j - i <= 9, "{}: token id \"{}\" is too large", flag, text.substr(i, j - i));
    ids.push_back(static_cast<TokenId>(std::stol(text.substr(i, j - i))));
    i = j;
  }
  COENC_CHECK(!ids.empty(), "{}: no token ids given", flag);
  return ids;
}

}  // namespace coenc::cli
