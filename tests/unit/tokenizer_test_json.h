// A small byte-level BPE tokenizer.json for unit tests, built in code so each test can bend one field.
#pragma once

#include <string>

#include <nlohmann/json.hpp>

#include "coenc/tokenizer.h"
#include "test_util.h"
#include "tokenizer/byte_level.h"

namespace coenc::test {

// Vocabulary: the 256 byte symbols (id = byte value), then the merges "Ġ"+"t", "h"+"e", "Ġt"+"he", "l"+"l",
// "ll"+"o", "Ġ"+"w". Added: <|bos|> (special), <|eos|> (special), [tool] (not special).
inline nlohmann::json tiny_tokenizer_json() {
  nlohmann::json vocab = nlohmann::json::object();
  std::string specials[] = {"<|bos|>", "<|eos|>"};
  int id = 0;
  for (int b = 0; b < 256; ++b) vocab[tok::byte_to_unicode(static_cast<uint8_t>(b))] = id++;
  nlohmann::json merges = nlohmann::json::array();
  auto merge = [&](const std::string& a, const std::string& c) {
    merges.push_back(a + " " + c);
    if (!vocab.contains(a + c)) vocab[a + c] = id++;
  };
  const std::string G = "\xC4\xA0";  // Ġ
  merge(G, "t");
  merge("h", "e");
  merge(G + "t", "he");
  merge("l", "l");
  merge("ll", "o");
  merge(G, "w");
  nlohmann::json added = nlohmann::json::array();
  for (const auto& s : specials) {
    vocab[s] = id;
    added.push_back({{"id", id++},
                     {"content", s},
                     {"special", true},
                     {"normalized", false},
                     {"lstrip", false},
                     {"rstrip", false},
                     {"single_word", false}});
  }
  added.push_back({{"id", id}, {"content", "[tool]"}, {"special", false}, {"normalized", false}});
  vocab["[tool]"] = id++;
  return {{"version", "1.0"},
          {"added_tokens", added},
          {"normalizer", nullptr},
          {"pre_tokenizer", {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"use_regex", true}}},
          {"post_processor",
           {{"type", "TemplateProcessing"},
            {"single",
             {{{"SpecialToken", {{"id", "<|bos|>"}, {"type_id", 0}}}},
              {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}}},
            {"special_tokens",
             {{"<|bos|>", {{"id", "<|bos|>"}, {"ids", {vocab["<|bos|>"]}}, {"tokens", {"<|bos|>"}}}}}}}},
          {"decoder", {{"type", "ByteLevel"}}},
          {"model", {{"type", "BPE"}, {"vocab", vocab}, {"merges", merges}}}};
}

// Writes `j` as DIR/tokenizer.json (and `config` as tokenizer_config.json unless null) and loads it.
inline std::unique_ptr<Tokenizer> load_tokenizer_json(const TempDir& dir, const nlohmann::json& j,
                                                      const nlohmann::json& config = nullptr) {
  write_file(dir / "tokenizer.json", j.dump());
  if (!config.is_null()) write_file(dir / "tokenizer_config.json", config.dump());
  return Tokenizer::load(dir.path().string());
}

}  // namespace coenc::test
