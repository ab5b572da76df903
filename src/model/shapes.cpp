#include "coenc/shapes.h"

#include "coenc/error.h"
#include "io/arch.h"

namespace coenc {

namespace {

struct NamedShape {
  const char* name;
  Arch arch;
  int64_t vocab, hidden, intermediate, layers, heads, kv_heads, head_dim, max_pos;
  double theta;
  bool tied;
};

// clang-format off
const NamedShape kShapes[] = {
  // name           arch           vocab   hidden inter  layers heads kv  hd   max_pos theta     tied
  {"llama3-8b",   Arch::Llama,   128256, 4096,  14336, 32,    32,   8,  128, 131072, 500000.0, false},
  {"llama3.2-1b", Arch::Llama,   128256, 2048,  8192,  16,    32,   8,  64,  131072, 500000.0, true},
  {"mistral-7b",  Arch::Mistral, 32768,  4096,  14336, 32,    32,   8,  128, 32768,  1000000.0, false},
  {"qwen2-0.5b",  Arch::Qwen2,   151936, 896,   4864,  24,    14,   2,  64,  32768,  1000000.0, true},
  {"qwen2.5-7b",  Arch::Qwen2,   152064, 3584,  18944, 28,    28,   4,  128, 32768,  1000000.0, false},
  {"qwen3-0.6b",  Arch::Qwen3,   151936, 1024,  3072,  28,    16,   8,  128, 40960,  1000000.0, true},
  {"tiny",        Arch::Llama,   4096,   256,   688,   4,     4,    2,  64,  2048,   10000.0,  false},
};
// clang-format on

}  // namespace

ModelConfig named_shape(const std::string& name) {
  for (const auto& s : kShapes) {
    if (name != s.name) continue;
    ModelConfig c;
    c.arch = s.arch;
    c.architecture = arch_name(s.arch);
    c.vocab_size = s.vocab;
    c.hidden_size = s.hidden;
    c.intermediate_size = s.intermediate;
    c.n_layers = s.layers;
    c.n_heads = s.heads;
    c.n_kv_heads = s.kv_heads;
    c.head_dim = s.head_dim;
    c.max_position_embeddings = s.max_pos;
    c.rope.theta = s.theta;
    c.rms_norm_eps = 1e-5;
    c.tie_word_embeddings = s.tied;
    c.attention_bias = arch_traits(s.arch).qkv_bias;
    c.qk_norm = arch_traits(s.arch).qk_norm;
    if (name == "llama3-8b" || name == "llama3.2-1b") {
      c.rope = {"llama3", 500000.0, name == "llama3-8b" ? 8.0 : 32.0, 1.0, 4.0, 8192};
    }
    return c;
  }
  fail(ErrorCode::InvalidInput, "unknown shape \"{}\"; known shapes: {}", name, named_shape_list());
}

DecodeTraffic decode_traffic(const ModelConfig& c, int64_t element_bytes, double context) {
  const double table = static_cast<double>(c.vocab_size) * static_cast<double>(c.hidden_size);
  // n_params counts the table once when the head is tied to it (then the head is the table, read whole every
  // step) and twice otherwise (the input table, unread, and the head).
  const double used = static_cast<double>(c.n_params()) - (c.tie_word_embeddings ? 0.0 : table) +
                      static_cast<double>(c.hidden_size);  // the one embedding row looked up
  DecodeTraffic t;
  t.weight_bytes = used * static_cast<double>(element_bytes);
  t.kv_bytes = 2.0 * static_cast<double>(c.n_layers) * static_cast<double>(c.n_kv_heads) *
               static_cast<double>(c.head_dim) * context * static_cast<double>(element_bytes);
  return t;
}

std::string named_shape_list() {
  std::string s;
  for (const auto& x : kShapes) s += (s.empty() ? "" : ", ") + std::string(x.name);
  return s;
}

}  // namespace coenc
