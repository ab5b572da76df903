// Files are never written in place: a reader (or a crash mid-write) sees the old file or the new one, whole.
#pragma once

#include <filesystem>
#include <functional>
#include <ostream>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

namespace coenc {

// Calls `write` with a stream on a temporary file beside `path`, flushes it to disk, and renames it over `path`.
// On any error the temporary file is removed and `path` is left untouched; throws coenc::Error naming `path`.
void write_file_atomic(const std::filesystem::path& path, const std::function<void(std::ostream&)>& write);

// Convenience: the whole file is `bytes`.
void write_file_atomic(const std::filesystem::path& path, const std::string& bytes);

// Reads a whole file; throws NotFound / InvalidInput naming `path` (and `what`, e.g. "model config").
std::string read_file_bytes(const std::filesystem::path& path, const char* what = "file");

// `text` parsed as JSON; malformed JSON (a truncated or corrupt file, a number beyond a double) is one InvalidInput
// error "WHERE: malformed JSON: ...". `where` names the source: a file, "file:line", a flag.
nlohmann::json parse_json(std::string_view text, const std::string& where);

// read_file_bytes then parse_json, naming `path`.
nlohmann::json read_json_file(const std::filesystem::path& path, const char* what = "file");

// Removes `path` and everything below it (not following symbolic links); nothing happens if it does not exist.
// Returns false if something could not be removed. Use this instead of std::filesystem::remove_all: the libtorch
// bundled with PyTorch 2.x exports its own broken copy of remove_all, and a call that binds to it jumps to address 0.
bool remove_tree(const std::filesystem::path& path) noexcept;

}  // namespace coenc
