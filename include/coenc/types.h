// Small vocabulary types shared by every module.
#pragma once

#include <cstdint>
#include <vector>

namespace coenc {

// A token id of a tokenizer's vocabulary (Hugging Face vocabularies fit comfortably in 32 bits).
using TokenId = int32_t;
using TokenIds = std::vector<TokenId>;

}  // namespace coenc
