// coenc inspect: what a model directory or safetensors file holds.
#include <filesystem>
#include <iostream>

#include <nlohmann/json.hpp>

#include "coenc/atomic_file.h"
#include "coenc/checkpoint.h"
#include "coenc/co_encoder.h"
#include "coenc/coctx.h"
#include "coenc/error.h"
#include "coenc/model_config.h"
#include "coenc/safetensors.h"
#include "commands.h"

namespace coenc::cli {

namespace {

struct InspectArgs {
  std::string path;
  bool json = false;
};

std::string decoder_line(const nlohmann::json& c) {
  return c["architectures"][0].get<std::string>() + ": " + c["num_hidden_layers"].dump() + " layers, d_model " +
         c["hidden_size"].dump() + ", " + c["num_attention_heads"].dump() + " heads (" +
         c["num_key_value_heads"].dump() + " kv), vocab " + c["vocab_size"].dump();
}

int run_inspect(const InspectArgs& a) {
  namespace fs = std::filesystem;
  nlohmann::json out;
  std::error_code ec;
  COENC_CHECK_CODE(fs::exists(a.path, ec), NotFound, "{}: no such file or directory", a.path);
  const bool dir = fs::is_directory(a.path, ec);
  auto add_tensors = [&](const WeightSet& w) {
    out["tensors"] = nlohmann::json::object();
    for (const auto& name : w.names()) {
      auto t = w.get(name);
      out["tensors"][name] = {{"dtype", torch_dtype_to_safetensors(t.scalar_type())}, {"shape", t.sizes().vec()}};
    }
  };
  if (dir && is_co_encoder_checkpoint(a.path)) {
    // A Co-Encoder checkpoint: its parts, their sizes and the connector's settings.
    const CoEncoderConfig cfg = CoEncoderConfig::load(a.path);
    out["kind"] = "co_encoder";
    out["config"] = cfg.to_json();
    out["tower"] = cfg.context.to_json();
    out["decoder"] = cfg.text.to_json();
    out["tower_params"] = cfg.context.n_params();
    out["decoder_params"] = cfg.text.n_params();
    WeightSet w = WeightSet::open(a.path);
    add_tensors(w);
  } else if (dir) {
    ModelConfig cfg = ModelConfig::load(a.path);
    out["kind"] = "decoder";
    out["config"] = cfg.to_json();
    out["params"] = cfg.n_params();
    WeightSet w = WeightSet::open(a.path);
    add_tensors(w);
  } else if (fs::path(a.path).extension() == ".coctx") {
    // A compressed document: what made it and what it holds (read and verified, checksum included).
    const CompressedDocument doc = read_coctx(a.path);
    out["kind"] = "coctx";
    out["model_fingerprint"] = doc.model_fingerprint;
    out["source"] = doc.source;
    out["pooling"] = doc.pooling;
    out["compression_ratio"] = doc.ratio;
    out["chunk_size"] = doc.chunk_size;
    out["d_text"] = doc.d_text;
    out["n_chunks"] = doc.chunks.size();
    out["n_tokens"] = doc.n_tokens();
    out["n_vectors"] = doc.n_vectors();
    out["chunk_hashes"] = doc.chunk_hashes;
    out["dtype"] = doc.chunks.empty() ? "" : torch_dtype_to_safetensors(doc.chunks[0].scalar_type());
  } else {
    auto f = SafetensorsFile::open(a.path);
    out["kind"] = "safetensors";
    out["metadata"] = f->metadata();
    out["tensors"] = nlohmann::json::object();
    for (const auto& e : f->entries()) out["tensors"][e.name] = {{"dtype", e.dtype}, {"shape", e.shape}};
  }
  if (a.json) {
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  const std::string kind = out["kind"];
  if (kind == "coctx") {
    std::cout << a.path << ": compressed document of " << out["source"].get<std::string>() << "\n"
              << "  " << out["n_tokens"] << " tokens in " << out["n_chunks"] << " chunks of up to "
              << out["chunk_size"] << " -> " << out["n_vectors"] << " vectors of width " << out["d_text"] << " ("
              << out["dtype"].get<std::string>() << ")\n"
              << "  pooling " << out["pooling"].get<std::string>() << ", ratio " << out["compression_ratio"]
              << ", model fingerprint " << out["model_fingerprint"].get<std::string>() << "\n";
    return 0;
  }
  if (kind == "co_encoder") {
    const auto& c = out["config"];
    std::cout << "CoEncoderForConditionalGeneration: pooling " << c["pooling"].get<std::string>() << ", ratio "
              << c["compression_ratio"] << ", chunks of " << c["chunk_size"] << " tokens, tower attention "
              << c["tower_attention"].get<std::string>() << ", markers " << c["context_markers"].get<std::string>()
              << ", prompt layout " << c.value("prompt_layout", std::string("(not recorded)")) << "\n"
              << "  tower:   " << decoder_line(out["tower"]) << ", " << out["tower_params"].get<int64_t>() / 1e6
              << " M params\n"
              << "  decoder: " << decoder_line(out["decoder"]) << ", " << out["decoder_params"].get<int64_t>() / 1e6
              << " M params\n";
  } else if (kind == "decoder") {
    std::cout << decoder_line(out["config"]) << ", " << out["params"].get<int64_t>() / 1e6 << " M params\n";
  }
  if (out.contains("metadata"))
    for (const auto& [k, v] : out["metadata"].items()) std::cout << "metadata " << k << " = " << v.get<std::string>() << "\n";
  for (const auto& [name, t] : out["tensors"].items())
    std::cout << name << "  " << t["dtype"].get<std::string>() << " " << t["shape"].dump() << "\n";
  return 0;
}

}  // namespace

CommandFn setup_inspect(CLI::App& app) {
  auto a = std::make_shared<InspectArgs>();
  auto* cmd = app.add_subcommand("inspect", "Show what a decoder or Co-Encoder directory, a .coctx file or a .safetensors file holds.");
  cmd->add_option("path", a->path, "model directory (decoder or Co-Encoder), .coctx or .safetensors file")
      ->required();
  cmd->footer(
      "Examples:\n"
      "  coenc inspect models/default-coenc           # the Co-Encoder's parts, sizes, connector settings\n"
      "  coenc inspect report.coctx                   # which model made it, tokens, chunks, vectors, ratio\n"
      "  coenc inspect models/default --json          # the decoder's config and every tensor as JSON");
  cmd->add_flag("--json", a->json, "print as JSON");
  return [a] { return run_inspect(*a); };
}

}  // namespace coenc::cli
