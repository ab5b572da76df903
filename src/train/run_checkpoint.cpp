#include "train/run_checkpoint.h"

#include "coenc/atomic_file.h"
#include "coenc/error.h"
#include "coenc/safetensors.h"

namespace coenc {

namespace fs = std::filesystem;

namespace {

fs::path sibling(const fs::path& dir, const char* suffix) {
  return dir.parent_path() / (dir.filename().string() + suffix);
}

bool complete(const fs::path& dir) { return fs::exists(dir / "state.json"); }

}  // namespace

void save_run_checkpoint(const fs::path& dir, const std::vector<std::pair<std::string, torch::Tensor>>& weights,
                         torch::optim::Optimizer& optimizer, const nlohmann::json& state) {
  const fs::path tmp = sibling(dir, ".tmp"), old = sibling(dir, ".old");
  std::error_code ec;
  remove_tree(tmp);
  fs::create_directories(tmp, ec);
  COENC_CHECK(!ec, "{}: cannot create the checkpoint directory: {}", tmp.string(), ec.message());
  std::vector<std::pair<std::string, torch::Tensor>> cpu;
  for (const auto& [name, t] : weights) cpu.emplace_back(name, t.detach().to(torch::kCPU, torch::kFloat32));
  write_safetensors(tmp / "trainable.safetensors", cpu, {{"format", "pt"}});
  write_file_atomic(tmp / "optimizer.pt", [&](std::ostream& os) {
    torch::serialize::OutputArchive archive;
    optimizer.save(archive);
    archive.save_to(os);
  });
  write_file_atomic(tmp / "state.json", state.dump(1) + "\n");
  // Swap directories: at every instant one complete checkpoint exists under dir or dir.old.
  if (fs::exists(dir)) {
    remove_tree(old);
    fs::rename(dir, old, ec);
    COENC_CHECK(!ec, "{}: cannot move the previous checkpoint aside: {}", dir.string(), ec.message());
  }
  fs::rename(tmp, dir, ec);
  COENC_CHECK(!ec, "{}: cannot move the new checkpoint into place: {}", dir.string(), ec.message());
  remove_tree(old);
}

std::optional<fs::path> find_run_checkpoint(const fs::path& dir) {
  if (complete(dir)) return dir;
  if (complete(sibling(dir, ".old"))) return sibling(dir, ".old");
  return std::nullopt;
}

nlohmann::json load_run_checkpoint(const fs::path& dir,
                                   const std::vector<std::pair<std::string, torch::Tensor>>& params,
                                   torch::optim::Optimizer& optimizer) {
  auto file = SafetensorsFile::open(dir / "trainable.safetensors");
  COENC_CHECK(file->entries().size() == params.size(),
              "{}: the checkpoint holds {} trainable tensors but this run trains {} (was \"train\" changed?)",
              (dir / "trainable.safetensors").string(), file->entries().size(), params.size());
  {
    torch::NoGradGuard no_grad;
    for (const auto& [name, p] : params) {
      COENC_CHECK(file->contains(name), "{}: missing trainable tensor {}", (dir / "trainable.safetensors").string(),
                  name);
      torch::Tensor t = file->tensor(name);
      COENC_CHECK(t.sizes() == p.sizes(), "{}: tensor {} has shape {}, the model's is {}",
                  (dir / "trainable.safetensors").string(), name, t.sizes(), p.sizes());
      p.copy_(t);
    }
  }
  torch::serialize::InputArchive archive;
  const std::string bytes = read_file_bytes(dir / "optimizer.pt", "optimizer state");
  archive.load_from(bytes.data(), bytes.size());
  optimizer.load(archive);
  return read_json_file(dir / "state.json", "checkpoint state");
}

}  // namespace coenc
