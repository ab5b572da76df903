// Helpers shared by the test executables.
#pragma once

#include <cstdio>
#include <filesystem>
#include <string>

#include <nlohmann/json.hpp>

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

// ---- a tiny Co-Encoder checkpoint (e2e tests of compress, ask, eval) ----

// The config.json of a tiny Co-Encoder: a 2-layer Qwen2 tower (width 32, 64 positions), a 2-layer Llama
// decoder (width 32, 256 positions), mean pooling at ratio 4, chunks of 32 tokens, vocabularies of 1200 ids.
nlohmann::json tiny_co_encoder_config();
// Saves a random tiny Co-Encoder (tiny_co_encoder_config) into `dir` with the trained test tokenizer
// (tests/golden/tokenizer/trained, byte-level BPE with a ChatML template) in context_tokenizer/ and
// text_tokenizer/. `chat` false leaves the chat template out of text_tokenizer/; `learned` gives it learned
// BOC/EOC rows, moved away from the token embeddings they start as.
void make_tiny_co_encoder(const std::filesystem::path& dir, uint64_t seed, bool chat, bool learned = false);
// Deterministic English-looking text of `words` words from a 16-word vocabulary.
std::string sample_document_text(int words);

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
