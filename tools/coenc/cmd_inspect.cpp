// coenc inspect: what a model directory or safetensors file holds.
#include <filesystem>
#include <iostream>

#include <nlohmann/json.hpp>

#include "coenc/checkpoint.h"
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

int run_inspect(const InspectArgs& a) {
  namespace fs = std::filesystem;
  nlohmann::json out;
  std::vector<std::shared_ptr<SafetensorsFile>> files;
  std::error_code ec;
  COENC_CHECK_CODE(fs::exists(a.path, ec), NotFound, "{}: no such file or directory", a.path);
  if (fs::is_directory(a.path, ec)) {
    ModelConfig cfg = ModelConfig::load(a.path);
    out["config"] = cfg.to_json();
    out["params"] = cfg.n_params();
    WeightSet w = WeightSet::open(a.path);
    out["tensors"] = nlohmann::json::object();
    for (const auto& name : w.names()) {
      auto t = w.get(name);
      out["tensors"][name] = {{"dtype", torch_dtype_to_safetensors(t.scalar_type())}, {"shape", t.sizes().vec()}};
    }
  } else {
    auto f = SafetensorsFile::open(a.path);
    out["metadata"] = f->metadata();
    out["tensors"] = nlohmann::json::object();
    for (const auto& e : f->entries()) out["tensors"][e.name] = {{"dtype", e.dtype}, {"shape", e.shape}};
  }
  if (a.json) {
    std::cout << out.dump(2) << "\n";
    return 0;
  }
  if (out.contains("config")) {
    const auto& c = out["config"];
    std::cout << c["architectures"][0].get<std::string>() << ": " << c["num_hidden_layers"] << " layers, d_model "
              << c["hidden_size"] << ", " << c["num_attention_heads"] << " heads (" << c["num_key_value_heads"]
              << " kv), vocab " << c["vocab_size"] << ", " << out["params"].get<int64_t>() / 1e6 << " M params\n";
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
  auto* cmd = app.add_subcommand("inspect", "Show what a model directory or a .safetensors / .coctx file holds.");
  cmd->add_option("path", a->path, "model directory or safetensors file")->required();
  cmd->add_flag("--json", a->json, "print as JSON");
  return [a] { return run_inspect(*a); };
}

}  // namespace coenc::cli
