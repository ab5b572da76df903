// The CI side of fuzzing: every file of the committed corpus (tests/fuzz/corpus/TARGET/: the seeds and every
// input that once crashed a parser) runs through the fuzz target's own code, compiled into the unit tests
// under another name (tests/CMakeLists.txt). In the sanitizer build this replays them under ASan + UBSan. A
// target that throws anything but coenc::Error fails the test naming the file; a crash or a broken invariant
// aborts it.
#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <vector>

#include "test_util.h"

extern "C" {
int coenc_fuzz_chat_messages(const uint8_t* data, size_t size);
int coenc_fuzz_coctx(const uint8_t* data, size_t size);
int coenc_fuzz_model_config(const uint8_t* data, size_t size);
int coenc_fuzz_safetensors(const uint8_t* data, size_t size);
int coenc_fuzz_sentencepiece(const uint8_t* data, size_t size);
int coenc_fuzz_tokenizer(const uint8_t* data, size_t size);
int coenc_fuzz_train_config(const uint8_t* data, size_t size);
}

namespace coenc {
namespace {

namespace fs = std::filesystem;

void replay(const std::string& target, int (*run)(const uint8_t*, size_t)) {
  const fs::path dir = test::test_dir() / "fuzz" / "corpus" / target;
  ASSERT_TRUE(fs::is_directory(dir)) << dir;
  std::vector<fs::path> files;
  for (const auto& entry : fs::directory_iterator(dir))
    if (entry.is_regular_file()) files.push_back(entry.path());
  std::sort(files.begin(), files.end());
  ASSERT_FALSE(files.empty()) << dir << " holds no inputs";
  for (const fs::path& file : files) {
    std::ifstream in(file, std::ios::binary);
    const std::vector<uint8_t> bytes{std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
    try {
      EXPECT_EQ(run(bytes.data(), bytes.size()), 0) << file;
    } catch (const std::exception& e) {
      ADD_FAILURE() << file << ": not a coenc::Error: " << e.what();
    }
  }
}

TEST(FuzzReplay, ChatMessages) {
  replay("chat_messages", coenc_fuzz_chat_messages);
}
TEST(FuzzReplay, Coctx) {
  replay("coctx", coenc_fuzz_coctx);
}
TEST(FuzzReplay, ModelConfig) {
  replay("model_config", coenc_fuzz_model_config);
}
TEST(FuzzReplay, Safetensors) {
  replay("safetensors", coenc_fuzz_safetensors);
}
// Left out of the sanitizer run with the other tests that load the SentencePiece module
// (scripts/run_tests.sh); scripts/fuzz.sh runs this target under ASan + UBSan in a program without libtorch,
// where the module loads.
TEST(FuzzReplay, SentencePiece) {
  replay("sentencepiece", coenc_fuzz_sentencepiece);
}
TEST(FuzzReplay, Tokenizer) {
  replay("tokenizer", coenc_fuzz_tokenizer);
}
TEST(FuzzReplay, TrainConfig) {
  replay("train_config", coenc_fuzz_train_config);
}

}  // namespace
}  // namespace coenc
