// Helpers shared by the test executables.
#pragma once

#include <cstdio>
#include <filesystem>
#include <string>

#include "coenc/atomic_file.h"
#include "coenc/error.h"

namespace coenc::test {

// The tests/ folder of the source tree.
inline std::filesystem::path test_dir() { return COENC_TEST_DIR; }

// A fresh, empty temporary folder, removed when the object goes away.
class TempDir {
 public:
  TempDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "coenc-test-XXXXXX").string();
    path_ = mkdtemp(tmpl.data());
  }
  ~TempDir() {
    remove_tree(path_);
  }
  const std::filesystem::path& path() const { return path_; }
  std::filesystem::path operator/(const std::string& name) const { return path_ / name; }

 private:
  std::filesystem::path path_;
};

// Result of running the real coenc binary.
struct RunResult {
  int exit_code = -1;
  std::string out;  // standard output
  std::string err;  // standard error
};

// Runs `coenc ARGS` through the shell (ARGS is pasted as is: quote it), optionally feeding `input` on stdin.
RunResult run_coenc(const std::string& args, const std::string& input = "");

// Copies the folder `from` (with everything below it) to `to`. Tests use this rather than std::filesystem::copy,
// whose recursive walk may bind to the libtorch-exported filesystem symbols that break remove_all (remove_tree).
void copy_tree(const std::filesystem::path& from, const std::filesystem::path& to);

// Expects `r` to be a failed run whose standard error is exactly one line, "coenc: error: ...", containing
// `needle`: how every bad input must end.
void expect_one_line_error(const RunResult& r, const std::string& needle);

// Writes `text` to `path`.
void write_file(const std::filesystem::path& path, const std::string& text);
std::string read_file(const std::filesystem::path& path);

// Expects `fn` to throw coenc::Error whose message contains `needle`.
#define EXPECT_COENC_ERROR(stmt, needle)                                                   \
  do {                                                                                     \
    try {                                                                                  \
      stmt;                                                                                \
      ADD_FAILURE() << "expected coenc::Error containing \"" << (needle) << "\"";        \
    } catch (const ::coenc::Error& e) {                                                    \
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();        \
    }                                                                                      \
  } while (0)

}  // namespace coenc::test
