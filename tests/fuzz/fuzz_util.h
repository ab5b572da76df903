// Shared by the libFuzzer targets (tests/fuzz/fuzz_*.cpp). Each target defines LLVMFuzzerTestOneInput, hands
// the bytes to a real parsing entry point of the library, and treats a coenc::Error as the right answer to
// bad input; anything else (a crash, a sanitizer report, another exception type, a broken invariant) is a
// finding. The same functions are compiled into the unit tests under other names (tests/CMakeLists.txt),
// where test_fuzz_replay.cpp runs the committed corpus through them.
#pragma once

#include <unistd.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>
#include <utility>

#include "coenc/atomic_file.h"
#include "coenc/error.h"

namespace coenc::fuzz {

// A folder of this process for the files the targets write: several parsers take only a path. Removed at
// exit.
class ScratchDir {
 public:
  static const std::filesystem::path& get() {
    static ScratchDir dir;
    return dir.path_;
  }

 private:
  ScratchDir() {
    std::string tmpl = (std::filesystem::temp_directory_path() / "coenc-fuzz-XXXXXX").string();
    if (!mkdtemp(tmpl.data())) {
      std::perror("coenc fuzz: mkdtemp");
      std::abort();
    }
    path_ = tmpl;
  }
  ~ScratchDir() { remove_tree(path_); }
  std::filesystem::path path_;
};

// The folder `name` under the scratch folder (created): one per target, so that targets sharing a process
// (the replay test) never see each other's files.
inline std::filesystem::path target_dir(const char* name) {
  std::filesystem::path dir = ScratchDir::get() / name;
  std::filesystem::create_directories(dir);
  return dir;
}

// Writes `bytes` to `path` (plainly: the fuzzer's inputs need no atomic write).
inline void write_bytes(const std::filesystem::path& path, std::string_view bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  if (!out) {
    std::fprintf(stderr, "coenc fuzz: cannot write %s\n", path.c_str());
    std::abort();
  }
}

// Two files in one input: JSON text cannot hold a raw NUL byte, so the bytes before the first NUL are the
// first file and those after it the second (`has_second` false when there is no NUL).
struct TwoFiles {
  std::string_view first, second;
  bool has_second = false;
};

inline TwoFiles split_at_nul(const uint8_t* data, size_t size) {
  std::string_view all(reinterpret_cast<const char*>(data), size);
  size_t nul = all.find('\0');
  if (nul == std::string_view::npos) return {all, {}, false};
  return {all.substr(0, nul), all.substr(nul + 1), true};
}

// Runs one input: coenc::Error is the expected outcome for bad input; every other exception escapes
// (libFuzzer reports it as a crash, the replay test as a failure). COENC_FUZZ_VERBOSE=1 prints each refusal's
// message (is a seed accepted, and if not, why).
template <typename F>
int run_one(F&& body) {
  static const bool verbose = std::getenv("COENC_FUZZ_VERBOSE") != nullptr;
  try {
    body();
    if (verbose) std::fprintf(stderr, "coenc fuzz: accepted\n");
  } catch (const coenc::Error& e) {
    if (verbose) std::fprintf(stderr, "coenc fuzz: refused: %s\n", e.what());
  }
  return 0;
}

// An invariant the parser promises for every input it accepts; a violation aborts (a finding).
#define COENC_FUZZ_EXPECT(cond)                                                                     \
  do {                                                                                              \
    if (!(cond)) {                                                                                  \
      std::fprintf(stderr, "coenc fuzz: %s:%d: invariant failed: %s\n", __FILE__, __LINE__, #cond); \
      std::abort();                                                                                 \
    }                                                                                               \
  } while (0)

}  // namespace coenc::fuzz
