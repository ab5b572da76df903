// What a Co-Encoder checkpoint carries besides its weights: its two tokenizers, and the fingerprint that ties
// compressed documents (.coctx) to the tower and connector that made them.
#include <sstream>

#include "coenc/co_encoder.h"
#include "coenc/error.h"
#include "core/hash.h"
#include "model/connector.h"

namespace coenc {

namespace fs = std::filesystem;

namespace {

// The tokenizer in `dir/subfolder`, else in `dir/model_path` (a tower or decoder referenced by path).
std::unique_ptr<Tokenizer> load_one(const fs::path& dir, const char* subfolder, const std::string& model_path,
                                    const ModelConfig& model, const char* config_name) {
  std::vector<fs::path> places = {dir / subfolder};
  if (!model_path.empty()) places.push_back(dir / model_path);
  for (const auto& place : places) {
    if (!Tokenizer::in_directory(place.string())) continue;
    auto tok = Tokenizer::load(place.string());
    COENC_CHECK(tok->vocab_size() <= model.vocab_size,
                "{}: the tokenizer has {} ids but {}.vocab_size is {}: it belongs to another model",
                place.string(), tok->vocab_size(), config_name, model.vocab_size);
    return tok;
  }
  std::string where = places[0].string();
  if (places.size() > 1) where += " or " + places[1].string();
  fail(ErrorCode::NotFound, "{}: no {} tokenizer: expected tokenizer.json or tokenizer.model in {}",
       dir.string(), config_name == std::string("context_config") ? "context (tower)" : "text (decoder)",
       where);
}

}  // namespace

CoEncoderTokenizers load_co_encoder_tokenizers(const fs::path& dir, const CoEncoderConfig& config) {
  CoEncoderTokenizers t;
  t.context = load_one(dir, "context_tokenizer", config.context_tower_path, config.context, "context_config");
  t.text = load_one(dir, "text_tokenizer", config.language_model_path, config.text, "text_config");
  return t;
}

void CoEncoderImpl::set_prompt_layout(const std::string& layout) {
  COENC_CHECK(layout == "raw" || layout == "chat", "prompt layout must be \"raw\" or \"chat\", got \"{}\"", layout);
  config_.prompt_layout = layout;
}

void CoEncoderImpl::set_compression_ratio(int64_t ratio) {
  COENC_CHECK(ratio >= 1, "compression ratio must be >= 1, got {}", ratio);
  COENC_CHECK_CODE(
      config_.pooling != PoolingMode::Dynamic, Unsupported,
      "pooling \"dynamic\" estimates its own size: the compression ratio can only be changed for "
      "\"mean\" and \"attn\" pooling");
  if (ratio == config_.ratio) return;
  config_.ratio = ratio;
  connector_impl().ratio = ratio;
  fingerprint_ = std::make_shared<FingerprintCache>();  // another ratio gives other vectors
}

const std::string& CoEncoderImpl::fingerprint() {
  std::call_once(fingerprint_->once, [&] {
    torch::NoGradGuard no_grad;
    Hasher h;
    h.update_string("coenc.fingerprint.v1");
    const CoEncoderConfig& c = config_;
    std::ostringstream fields;
    fields << c.context.to_json().dump() << '|' << c.context_feature_layer << '|' << c.hidden_act << '|'
           << pooling_mode_name(c.pooling) << '|' << c.ratio << '|' << c.chunk_size << '|'
           << c.min_output_size << '|' << c.max_output_size << '|'
           << (c.tower_attention == TowerAttention::Causal ? "causal" : "bidir") << '|' << c.text.hidden_size;
    h.update_string(fields.str());
    // The decoder is left out: the vectors do not depend on it. So are learned BOC/EOC rows (context_markers
    // "learned"): they are stored with the connector but belong to the decoder side, framing the vectors in the
    // decoder's input, and a .coctx file holds only the chunk vectors. A "tokens" checkpoint hashes exactly what
    // it did before the field existed.
    for (const auto& p : named_parameters()) {
      if (p.key().rfind("language_model.", 0) == 0) continue;
      if (p.key() == "connector.begin_of_context" || p.key() == "connector.end_of_context") continue;
      h.update_string(p.key());
      const torch::Tensor t = p.value().detach().to(torch::kCPU, torch::kBFloat16).contiguous();
      h.update_u64(static_cast<uint64_t>(t.dim()));
      for (int64_t s : t.sizes()) h.update_u64(static_cast<uint64_t>(s));
      h.update_string("BF16");
      h.update(t.data_ptr(), static_cast<size_t>(t.numel()) * t.element_size());
    }
    fingerprint_->value = h.hex();
  });
  return fingerprint_->value;
}

}  // namespace coenc
