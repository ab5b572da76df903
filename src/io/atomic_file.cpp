#include "coenc/atomic_file.h"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <ftw.h>
#include <sstream>
#include <sys/stat.h>
#include <unistd.h>

#include "coenc/error.h"

namespace coenc {

namespace fs = std::filesystem;

namespace {

fs::path temporary_name(const fs::path& path) {
  fs::path tmp = path;
  tmp += ".tmp." + std::to_string(::getpid());
  return tmp;
}

// Writes the file `tmp` through `write`; on any error removes it and rethrows.
void write_temporary(const fs::path& tmp, const std::function<void(std::ostream&)>& write) {
  try {
    std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
    COENC_CHECK(out.good(), "{}: cannot open for writing: {}", tmp.string(), std::strerror(errno));
    write(out);
    out.flush();
    COENC_CHECK(out.good(), "{}: write failed: {}", tmp.string(), std::strerror(errno));
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
}

void rename_into_place(const fs::path& tmp, const fs::path& path) {
  std::error_code ec;
  fs::rename(tmp, path, ec);
  COENC_CHECK(!ec, "{}: cannot rename temporary file into place: {}", path.string(), ec.message());
}

}  // namespace

void write_file_atomic(const fs::path& path, const std::function<void(std::ostream&)>& write) {
  const fs::path tmp = temporary_name(path);
  write_temporary(tmp, write);
  try {
    // Flush the data to disk before the rename publishes it, so a crash cannot leave a truncated file behind
    // the final name.
    int fd = ::open(tmp.c_str(), O_RDONLY);
    if (fd >= 0) {
      ::fsync(fd);
      ::close(fd);
    }
    rename_into_place(tmp, path);
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
    throw;
  }
}

AtomicFileGroup::~AtomicFileGroup() {
  std::error_code ec;
  for (const auto& staged : staged_) fs::remove(staged.first, ec);
}

void AtomicFileGroup::write(const fs::path& path, const std::function<void(std::ostream&)>& fill) {
  const fs::path tmp = temporary_name(path);
  write_temporary(tmp, fill);
  std::lock_guard<std::mutex> lock(mutex_);
  staged_.emplace_back(tmp, path);
}

void AtomicFileGroup::commit() {
  std::vector<std::pair<fs::path, fs::path>> staged;
  {
    std::lock_guard<std::mutex> lock(mutex_);
    staged.swap(staged_);
  }
  try {
    // One flush a file system holding the files (their folders' devices), then every rename.
    std::vector<dev_t> flushed;
    for (const auto& [tmp, path] : staged) {
      const fs::path dir = tmp.has_parent_path() ? tmp.parent_path() : fs::path(".");
      struct stat st;
      if (::stat(dir.c_str(), &st) != 0 || std::find(flushed.begin(), flushed.end(), st.st_dev) != flushed.end())
        continue;
      const int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY);
      COENC_CHECK(fd >= 0, "{}: cannot open the folder to flush its files to disk: {}", dir.string(),
                  std::strerror(errno));
      const int rc = ::syncfs(fd);
      const int err = errno;
      ::close(fd);
      COENC_CHECK(rc == 0, "{}: flushing files to disk failed: {}", dir.string(), std::strerror(err));
      flushed.push_back(st.st_dev);
    }
    for (size_t i = 0; i < staged.size(); ++i) {
      rename_into_place(staged[i].first, staged[i].second);
      staged[i].first.clear();
    }
  } catch (...) {
    std::error_code ec;
    for (const auto& s : staged)
      if (!s.first.empty()) fs::remove(s.first, ec);
    throw;
  }
}

void write_file_atomic(const fs::path& path, const std::string& bytes) {
  write_file_atomic(path, [&](std::ostream& out) { out.write(bytes.data(), static_cast<std::streamsize>(bytes.size())); });
}

std::string read_file_bytes(const fs::path& path, const char* what) {
  std::error_code ec;
  COENC_CHECK_CODE(fs::exists(path, ec), NotFound, "{}: {} not found", path.string(), what);
  COENC_CHECK(!fs::is_directory(path, ec), "{}: expected a {} file, found a directory", path.string(), what);
  std::ifstream in(path, std::ios::binary);
  COENC_CHECK(in.good(), "{}: cannot read {}: {}", path.string(), what, std::strerror(errno));
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

bool remove_tree(const fs::path& path) noexcept {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0) return errno == ENOENT;
  if (!S_ISDIR(st.st_mode)) return ::unlink(path.c_str()) == 0;
  // Depth first, so every directory is empty by the time it is removed.
  const auto remove_entry = [](const char* p, const struct stat*, int, struct FTW*) { return ::remove(p); };
  return ::nftw(path.c_str(), remove_entry, 32, FTW_DEPTH | FTW_PHYS) == 0;
}

nlohmann::json parse_json(std::string_view text, const std::string& where) {
  try {
    return nlohmann::json::parse(text);
  } catch (const nlohmann::json::exception& e) {
    fail(ErrorCode::InvalidInput, "{}: malformed JSON: {}", where, e.what());
  }
}

nlohmann::json read_json_file(const std::filesystem::path& path, const char* what) {
  return parse_json(read_file_bytes(path, what), path.string());
}

}  // namespace coenc
