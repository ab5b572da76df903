// coenc convert: rewrites a model directory (a Co-Encoder checkpoint or a Hugging Face decoder) in another storage
// dtype and / or as shards, e.g. the trainer's float32 output as the bf16 shards of at most 16 MB that
// models/default-coenc ships.
#include <filesystem>
#include <iostream>

#include <nlohmann/json.hpp>

#include "coenc/atomic_file.h"
#include "coenc/checkpoint.h"
#include "coenc/co_encoder.h"
#include "coenc/decoder.h"
#include "coenc/error.h"
#include "commands.h"

namespace coenc::cli {

namespace {

namespace fs = std::filesystem;

struct ConvertArgs {
  std::string in, out, dtype = "bf16";
  double max_shard_mb = 0;
};

int run_convert(const ConvertArgs& a) {
  std::error_code ec;
  COENC_CHECK_CODE(fs::is_directory(a.in, ec), NotFound, "{}: model directory not found", a.in);
  COENC_CHECK_CODE(fs::exists(fs::path(a.in) / "config.json", ec), NotFound, "{}: no config.json", a.in);
  COENC_CHECK(a.max_shard_mb >= 0, "--max-shard-mb must be >= 0 (0: one file), got {}", a.max_shard_mb);
  const torch::ScalarType storage = a.dtype == "bf16"  ? torch::kBFloat16
                                    : a.dtype == "f16" ? torch::kFloat16
                                                       : torch::kFloat32;
  const int64_t shard = shard_limit_bytes(a.max_shard_mb);
  const nlohmann::json config =
      nlohmann::json::parse(read_file_bytes(fs::path(a.in) / "config.json", "config.json"), nullptr, false);
  COENC_CHECK(config.is_object(), "{}/config.json: malformed JSON", a.in);
  const bool co_encoder = config.value("model_type", "") == "co_encoder";
  const bool in_place = fs::exists(a.out, ec) && fs::equivalent(a.in, a.out, ec);
  // Everything is read into memory before anything is written: converting in place is safe.
  if (co_encoder) {
    CoEncoder model = load_co_encoder(a.in, DeviceOptions{});
    fs::create_directories(a.out, ec);
    save_co_encoder(*model, a.out, "", "", storage, shard);  // tower and decoder stored, not referenced
  } else {
    DecoderLm lm = load_decoder(a.in, DeviceOptions{});
    fs::create_directories(a.out, ec);
    save_decoder(lm, a.out, storage, shard);
  }
  // The rest of the folder (tokenizers, model card, generation config, metrics) travels as it is.
  if (!in_place) {
    for (const auto& e : fs::recursive_directory_iterator(a.in)) {
      const fs::path rel = fs::relative(e.path(), a.in);
      if (e.is_directory()) continue;
      if (rel.parent_path().empty() && (rel == "config.json" || is_model_weight_file(rel.filename().string()))) continue;
      fs::create_directories((fs::path(a.out) / rel).parent_path());
      write_file_atomic(fs::path(a.out) / rel, read_file_bytes(e.path(), "model file"));
    }
  }
  int64_t bytes = 0;
  int files = 0;
  for (const auto& e : fs::directory_iterator(a.out))
    if (e.path().extension() == ".safetensors") bytes += static_cast<int64_t>(e.file_size()), ++files;
  std::cout << "coenc convert: " << (co_encoder ? "Co-Encoder" : "decoder") << " written to " << a.out << " ("
            << a.dtype << ", " << files << (files == 1 ? " file, " : " files, ") << bytes / 1e6 << " MB)\n";
  return 0;
}

}  // namespace

CommandFn setup_convert(CLI::App& app) {
  auto a = std::make_shared<ConvertArgs>();
  auto* cmd = app.add_subcommand(
      "convert", "Rewrite a Co-Encoder checkpoint or a Hugging Face decoder in another dtype and / or as shards.");
  cmd->add_option("in", a->in, "model directory to read")->required();
  cmd->add_option("out", a->out, "directory to write (may be the same: the weights are read first)")->required();
  cmd->add_option("--dtype", a->dtype, "storage dtype of the weights")
      ->check(CLI::IsMember({"bf16", "f16", "f32"}))
      ->capture_default_str();
  cmd->add_option("--max-shard-mb", a->max_shard_mb,
                  "shard the weights into files of at most this many MB (10^6 bytes) with a "
                  "model.safetensors.index.json, as Hugging Face does (0: one model.safetensors)")
      ->capture_default_str();
  cmd->footer(
      "A Co-Encoder is written whole: a tower or decoder the source referenced by path is stored in the new\n"
      "folder. Other files (tokenizers, README.md, metrics) are copied as they are.\n\n"
      "Examples:\n"
      "  coenc convert .train/co_encoder4 models/default-coenc --dtype bf16 --max-shard-mb 16\n"
      "  coenc convert models/default-coenc /tmp/coenc-f32 --dtype f32     # float32 weights, one file\n"
      "  coenc convert path/to/Qwen2.5-0.5B qwen-bf16 --dtype bf16 --max-shard-mb 2000   # a Hugging Face decoder");
  return [a] { return run_convert(*a); };
}

}  // namespace coenc::cli
