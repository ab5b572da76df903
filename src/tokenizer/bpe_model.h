// The BPE model of tokenizer.json: a vocabulary and a ranked list of merges, applied to one pre-tokenized
// piece at a time exactly as Hugging Face `tokenizers` applies them (lowest rank first, leftmost first).
//
// Speed: merges live in an open-addressing hash table keyed by the id pair; short pieces are merged by
// rescanning a small array, long ones with a priority queue over a linked list (O(n log n)); results for
// pieces seen before come from a bounded cache.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "coenc/types.h"
#include "tokenizer/json_fields.h"

namespace coenc::tok {

struct BpeOptions {
  // Pieces are raw bytes, each byte one initial symbol spelled in the byte-level alphabet (GPT-2 style).
  // Otherwise pieces are UTF-8 text and each character is one initial symbol.
  bool byte_level = true;
  bool ignore_merges = false;  // a piece that is itself a vocabulary entry becomes that entry, unmerged
  bool byte_fallback = false;  // a character missing from the vocabulary becomes its <0xXX> byte tokens
  bool fuse_unk = false;       // consecutive unknown characters become one unk token
  std::optional<std::string> unk_token;
};

class BpeModel {
 public:
  // Parses the "model" object of tokenizer.json (type BPE) at `where`. `byte_level` says whether the
  // pre-tokenizer maps bytes to the byte-level alphabet. Throws InvalidInput / Unsupported naming the field.
  static std::unique_ptr<BpeModel> from_json(const nlohmann::json& model, const JsonPath& where,
                                             bool byte_level);

  // A model from a vocabulary (token -> id) and merges in rank order; throws as from_json does.
  BpeModel(const std::vector<std::pair<std::string, TokenId>>& vocab,
           const std::vector<std::pair<std::string, std::string>>& merges, const BpeOptions& options,
           const JsonPath& where);

  // Not copyable or movable: the lookup tables view the model's own strings.
  BpeModel(const BpeModel&) = delete;
  BpeModel& operator=(const BpeModel&) = delete;

  // Appends the ids of one piece (raw bytes in byte-level mode, valid UTF-8 otherwise).
  void encode(std::string_view piece, TokenIds& out) const;

  // One past the largest id of the vocabulary.
  int size() const { return static_cast<int>(id_to_token_.size()); }
  // The vocabulary entry of `id` ("" for an id the vocabulary skips).
  const std::string& token(TokenId id) const { return id_to_token_[id]; }
  std::optional<TokenId> find(std::string_view token) const;
  const BpeOptions& options() const { return options_; }

 private:
  struct Merge {
    uint32_t rank;
    TokenId id;  // the merged token
  };
  // Open-addressing hash table from an id pair to its merge.
  class PairTable {
   public:
    void reserve(size_t n);
    void insert(TokenId a, TokenId b, Merge m);
    const Merge* find(TokenId a, TokenId b) const;

   private:
    struct Slot {
      uint64_t key;
      Merge merge;
    };
    static constexpr uint64_t kEmpty = ~uint64_t{0};
    std::vector<Slot> slots_;
    uint64_t mask_ = 0;
    size_t count_ = 0;
  };

  void add_unit(std::string_view unit, std::vector<TokenId>& symbols,
                std::pair<TokenId, bool>& pending_unk) const;
  void merge(std::vector<TokenId>& symbols) const;
  void merge_long(std::vector<TokenId>& symbols) const;

  BpeOptions options_;
  std::vector<std::string> id_to_token_;
  std::unordered_map<std::string_view, TokenId> token_to_id_;  // views into id_to_token_
  PairTable merges_;
  TokenId byte_id_[256];  // byte-level mode: the id of each byte's symbol, -1 if missing
  // byte-level mode with ignore_merges: the raw bytes each vocabulary entry stands for -> id
  std::unordered_map<std::string, TokenId> raw_to_id_;

  // Cache of piece -> ids, split into shards by the piece's hash so that threads encoding with one tokenizer
  // (`coenc compress` of a library tokenizes on several) seldom wait for each other: with one lock, two threads
  // encoded more slowly than one. Keys view strings owned by their shard's `keys`.
  struct CachedPiece {  // the piece's hash travels with it: computed once, for the shard and the map alike
    std::string_view text;
    size_t hash;
    bool operator==(const CachedPiece& other) const { return text == other.text; }
  };
  struct CachedPieceHash {
    size_t operator()(const CachedPiece& piece) const { return piece.hash; }
  };
  struct CacheShard {
    std::mutex mutex;
    std::deque<std::string> keys;
    std::unordered_map<CachedPiece, TokenIds, CachedPieceHash> map;
  };
  static constexpr size_t kCacheShards = 64;
  static constexpr size_t kCacheCapacity = 1 << 16;  // pieces, all shards together
  static constexpr size_t kCacheMaxPiece = 64;
  mutable std::array<CacheShard, kCacheShards> cache_;
};

}  // namespace coenc::tok
