// Small vocabulary types shared by every module.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

namespace coenc {

// A token id of a tokenizer's vocabulary (Hugging Face vocabularies fit comfortably in 32 bits).
using TokenId = int32_t;
using TokenIds = std::vector<TokenId>;

// Appends the ids of `more` that `ids` does not hold yet, in order (stop-token lists).
inline void append_unique(TokenIds& ids, const TokenIds& more) {
  for (TokenId id : more)
    if (std::find(ids.begin(), ids.end(), id) == ids.end()) ids.push_back(id);
}

}  // namespace coenc
