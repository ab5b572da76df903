#include "coenc/checkpoint.h"

#include <cstdio>
#include <set>
#include <sstream>

#include <nlohmann/json.hpp>

#include "coenc/atomic_file.h"
#include "coenc/error.h"

namespace coenc {

namespace fs = std::filesystem;
using json = nlohmann::json;

WeightSet WeightSet::open(const fs::path& dir) {
  std::error_code ec;
  COENC_CHECK_CODE(fs::is_directory(dir, ec), NotFound, "{}: model directory not found", dir.string());
  const fs::path single = dir / "model.safetensors";
  const fs::path index = dir / "model.safetensors.index.json";
  if (fs::exists(index, ec)) {
    const json j = read_json_file(index, "safetensors index");
    COENC_CHECK(j.is_object() && j.contains("weight_map") && j["weight_map"].is_object(),
                "{}: expected an object with a \"weight_map\" object", index.string());
    std::map<std::string, size_t> file_ids;
    std::vector<fs::path> files;
    std::map<std::string, std::string> wanted;
    for (auto it = j["weight_map"].begin(); it != j["weight_map"].end(); ++it) {
      COENC_CHECK(it.value().is_string(), "{}: weight_map[\"{}\"] must be a file name", index.string(), it.key());
      const std::string f = it.value().get<std::string>();
      COENC_CHECK(f.find('/') == std::string::npos && f.find("..") == std::string::npos,
                  "{}: weight_map[\"{}\"] must name a file in the same folder, got \"{}\"", index.string(), it.key(), f);
      if (!file_ids.count(f)) {
        file_ids[f] = files.size();
        files.push_back(dir / f);
      }
      wanted[it.key()] = f;
    }
    WeightSet set = open_files(files);
    for (const auto& [name, f] : wanted) {
      COENC_CHECK(set.contains(name), "{}: tensor \"{}\" is listed in {} but not stored there", index.string(), name, f);
      COENC_CHECK(set.files_[set.where_[name]]->path().filename() == f,
                  "{}: tensor \"{}\" is listed in {} but stored in {}", index.string(), name, f,
                  set.files_[set.where_[name]]->path().filename().string());
    }
    return set;
  }
  COENC_CHECK_CODE(fs::exists(single, ec), NotFound,
                   "{}: no weights found (expected model.safetensors or model.safetensors.index.json)", dir.string());
  return open_files({single});
}

WeightSet WeightSet::open_files(const std::vector<fs::path>& files) {
  WeightSet set;
  for (const auto& path : files) {
    auto file = SafetensorsFile::open(path);
    for (const auto& e : file->entries()) {
      COENC_CHECK(!set.where_.count(e.name), "{}: tensor \"{}\" is also stored in {}", path.string(), e.name,
                  set.files_[set.where_[e.name]]->path().string());
      set.where_[e.name] = set.files_.size();
    }
    set.files_.push_back(file);
  }
  return set;
}

bool is_model_weight_file(const std::string& f) {
  return f == "model.safetensors" || f == "model.safetensors.index.json" ||
         (f.rfind("model-", 0) == 0 && f.find("-of-") != std::string::npos && f.size() > 12 &&
          f.compare(f.size() - 12, 12, ".safetensors") == 0);
}

void write_model_weights(const fs::path& dir, const std::vector<std::pair<std::string, torch::Tensor>>& tensors,
                         int64_t max_shard_bytes) {
  COENC_CHECK(max_shard_bytes >= 0, "{}: the shard size must be >= 0 bytes (0: one file), got {}", dir.string(),
              max_shard_bytes);
  auto bytes_of = [](const torch::Tensor& t) { return static_cast<int64_t>(t.numel()) * t.element_size(); };
  int64_t total = 0;
  for (const auto& [name, t] : tensors) total += bytes_of(t);
  // Greedy, in the given order: a shard is closed when the next tensor would take it past the limit.
  std::vector<std::vector<std::pair<std::string, torch::Tensor>>> shards(1);
  int64_t in_shard = 0;
  if (max_shard_bytes > 0 && total > max_shard_bytes) {
    for (const auto& entry : tensors) {
      const int64_t n = bytes_of(entry.second);
      if (!shards.back().empty() && in_shard + n > max_shard_bytes) shards.emplace_back(), in_shard = 0;
      shards.back().push_back(entry);
      in_shard += n;
    }
  } else {
    shards[0] = tensors;
  }
  std::set<std::string> written;
  const std::map<std::string, std::string> meta = {{"format", "pt"}};
  if (shards.size() == 1) {
    write_safetensors(dir / "model.safetensors", tensors, meta);
    written.insert("model.safetensors");
  } else {
    json index = {{"metadata", {{"total_size", total}}}, {"weight_map", json::object()}};
    const size_t n = shards.size();
    for (size_t i = 0; i < n; ++i) {
      char name[64];
      std::snprintf(name, sizeof name, "model-%05zu-of-%05zu.safetensors", i + 1, n);
      write_safetensors(dir / name, shards[i], meta);
      written.insert(name);
      for (const auto& [tensor, _] : shards[i]) index["weight_map"][tensor] = name;
    }
    write_file_atomic(dir / "model.safetensors.index.json", index.dump(2) + "\n");
    written.insert("model.safetensors.index.json");
  }
  // What an earlier save left: the single file, the index or shards of another count.
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    const std::string f = e.path().filename().string();
    if (is_model_weight_file(f) && !written.count(f)) fs::remove(e.path(), ec);
  }
}

torch::Tensor WeightSet::get(const std::string& name) const {
  auto it = where_.find(name);
  COENC_CHECK_CODE(it != where_.end(), NotFound, "no tensor named \"{}\" in the checkpoint", name);
  return files_[it->second]->tensor(name);
}

std::vector<std::string> WeightSet::names() const {
  std::vector<std::string> n;
  for (const auto& [name, _] : where_) n.push_back(name);
  return n;
}

std::string WeightSet::file_of(const std::string& name) const {
  auto it = where_.find(name);
  return it == where_.end() ? std::string("?") : files_[it->second]->path().string();
}

namespace {

std::string shape_str(c10::IntArrayRef s) {
  std::ostringstream out;
  out << s;
  return out.str();
}

std::string join_limited(const std::vector<std::string>& items, size_t limit = 8) {
  std::string s;
  for (size_t i = 0; i < items.size() && i < limit; ++i) s += (i ? ", " : "") + items[i];
  if (items.size() > limit) s += ", ... (" + std::to_string(items.size() - limit) + " more)";
  return s;
}

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

void load_module_weights(torch::nn::Module& module, const WeightSet& weights, const LoadRules& rules,
                         const std::string& where) {
  std::vector<std::string> missing, mismatched, unexpected;
  std::set<std::string> used;
  torch::NoGradGuard no_grad;
  for (auto& p : module.named_parameters()) {
    const std::string name = rules.prefix + p.key();
    torch::Tensor& param = p.value();
    if (!weights.contains(name)) {
      if (!rules.optional.count(p.key())) missing.push_back(name);
      continue;
    }
    used.insert(name);
    torch::Tensor t = weights.get(name);
    if (t.sizes() != param.sizes()) {
      mismatched.push_back(name + " " + shape_str(t.sizes()) + " (expected " + shape_str(param.sizes()) + ")");
      continue;
    }
    param.copy_(t);
  }
  for (const std::string& name : weights.names()) {
    if (used.count(name) || name.rfind(rules.prefix, 0) != 0 || rules.tolerated.count(name)) continue;
    bool ignored = false;
    for (const auto& suffix : rules.ignore_suffixes) ignored = ignored || ends_with(name, suffix);
    if (!ignored && !rules.allow_unexpected) unexpected.push_back(name);
  }
  if (missing.empty() && mismatched.empty() && unexpected.empty()) return;
  std::string msg = where + ": checkpoint does not match the model:";
  if (!missing.empty()) msg += " missing tensors: " + join_limited(missing) + ";";
  if (!mismatched.empty()) msg += " wrong shapes: " + join_limited(mismatched) + ";";
  if (!unexpected.empty()) msg += " unexpected tensors: " + join_limited(unexpected) + ";";
  msg.pop_back();
  throw Error(ErrorCode::InvalidInput, msg);
}

}  // namespace coenc
