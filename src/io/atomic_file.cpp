#include "coenc/atomic_file.h"

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

void write_file_atomic(const fs::path& path, const std::function<void(std::ostream&)>& write) {
  fs::path tmp = path;
  tmp += ".tmp." + std::to_string(::getpid());
  try {
    {
      std::ofstream out(tmp, std::ios::binary | std::ios::trunc);
      COENC_CHECK(out.good(), "{}: cannot open for writing: {}", tmp.string(), std::strerror(errno));
      write(out);
      out.flush();
      COENC_CHECK(out.good(), "{}: write failed: {}", tmp.string(), std::strerror(errno));
    }
    // Flush the data to disk before the rename publishes it, so a crash cannot leave a truncated file behind
    // the final name.
    int fd = ::open(tmp.c_str(), O_RDONLY);
    if (fd >= 0) {
      ::fsync(fd);
      ::close(fd);
    }
    std::error_code ec;
    fs::rename(tmp, path, ec);
    COENC_CHECK(!ec, "{}: cannot rename temporary file into place: {}", path.string(), ec.message());
  } catch (...) {
    std::error_code ec;
    fs::remove(tmp, ec);
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
