#include "tokenizer/bpe_model.h"

#include <cstdio>
#include <queue>

#include "coenc/error.h"
#include "tokenizer/byte_level.h"
#include "tokenizer/utf8.h"

namespace coenc::tok {

namespace {

uint64_t pair_key(TokenId a, TokenId b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

uint64_t mix(uint64_t k) {
  k ^= k >> 33;
  k *= 0xff51afd7ed558ccdULL;
  k ^= k >> 33;
  return k;
}

// Pieces up to this many symbols are merged by rescanning; longer ones through the priority queue.
constexpr size_t kScanLimit = 48;

}  // namespace

void BpeModel::PairTable::reserve(size_t n) {
  size_t cap = 16;
  while (cap < n * 2) cap <<= 1;
  slots_.assign(cap, Slot{kEmpty, {0, 0}});
  mask_ = cap - 1;
  count_ = 0;
}

void BpeModel::PairTable::insert(TokenId a, TokenId b, Merge m) {
  uint64_t key = pair_key(a, b);
  for (uint64_t i = mix(key) & mask_;; i = (i + 1) & mask_) {
    if (slots_[i].key == kEmpty) {
      slots_[i] = {key, m};
      ++count_;
      return;
    }
    if (slots_[i].key == key) {
      slots_[i].merge = m;  // a repeated merge line takes the later rank, as Hugging Face's map does
      return;
    }
  }
}

const BpeModel::Merge* BpeModel::PairTable::find(TokenId a, TokenId b) const {
  if (slots_.empty()) return nullptr;
  uint64_t key = pair_key(a, b);
  for (uint64_t i = mix(key) & mask_;; i = (i + 1) & mask_) {
    const Slot& s = slots_[i];
    if (s.key == key) return &s.merge;
    if (s.key == kEmpty) return nullptr;
  }
}

std::unique_ptr<BpeModel> BpeModel::from_json(const nlohmann::json& model, const JsonPath& where,
                                              bool byte_level) {
  COENC_CHECK(model.is_object(), "{} must be an object, got {}", where.str(), json_type_name(model));
  auto type_it = model.find("type");
  if (type_it != model.end()) {
    COENC_CHECK(type_it->is_string(), "{} must be a string", (where / "type").str());
    COENC_CHECK_CODE(*type_it == "BPE", Unsupported, "{} \"{}\" is not supported (expected \"BPE\")",
                     (where / "type").str(), type_it->get<std::string>());
  }
  for (const char* key : {"continuing_subword_prefix", "end_of_word_suffix"}) {
    auto it = model.find(key);
    if (it == model.end() || it->is_null()) continue;
    COENC_CHECK_CODE(it->is_string() && it->get<std::string>().empty(), Unsupported,
                     "{}: a non-empty value is not supported", (where / key).str());
  }
  auto dropout = model.find("dropout");
  COENC_CHECK_CODE(dropout == model.end() || dropout->is_null() || (dropout->is_number() && *dropout == 0.0),
                   Unsupported, "{}: BPE dropout is not supported", (where / "dropout").str());

  BpeOptions options;
  options.byte_level = byte_level;
  options.ignore_merges = json_bool(model, "ignore_merges", false, where);
  options.byte_fallback = json_bool(model, "byte_fallback", false, where);
  options.fuse_unk = json_bool(model, "fuse_unk", false, where);
  auto unk = model.find("unk_token");
  if (unk != model.end() && !unk->is_null()) {
    COENC_CHECK(unk->is_string(), "{} must be a string or null", (where / "unk_token").str());
    options.unk_token = unk->get<std::string>();
  }

  const auto& vocab_json = json_object(model, "vocab", where);
  std::vector<std::pair<std::string, TokenId>> vocab;
  vocab.reserve(vocab_json.size());
  for (auto it = vocab_json.begin(); it != vocab_json.end(); ++it) {
    vocab.emplace_back(it.key(), json_token_id(it.value(), where / "vocab" / it.key()));
  }

  const auto& merges_json = json_array(model, "merges", where);
  std::vector<std::pair<std::string, std::string>> merges;
  merges.reserve(merges_json.size());
  for (size_t k = 0; k < merges_json.size(); ++k) {
    const auto& m = merges_json[k];
    JsonPath at = (where / "merges").at(k);
    if (m.is_string()) {
      // "a b": the two tokens, which never contain a space themselves.
      const std::string& s = m.get_ref<const std::string&>();
      size_t space = s.find(' ');
      COENC_CHECK(space != std::string::npos && s.find(' ', space + 1) == std::string::npos,
                  "{} must be two tokens separated by one space, got \"{}\"", at.str(), s);
      merges.emplace_back(s.substr(0, space), s.substr(space + 1));
    } else {
      COENC_CHECK(m.is_array() && m.size() == 2 && m[0].is_string() && m[1].is_string(),
                  "{} must be \"a b\" or [\"a\", \"b\"], got {}", at.str(), m.dump());
      merges.emplace_back(m[0].get<std::string>(), m[1].get<std::string>());
    }
  }
  return std::make_unique<BpeModel>(vocab, merges, options, where);
}

BpeModel::BpeModel(const std::vector<std::pair<std::string, TokenId>>& vocab,
                   const std::vector<std::pair<std::string, std::string>>& merges, const BpeOptions& options,
                   const JsonPath& where)
    : options_(options) {
  TokenId max_id = -1;
  for (const auto& [tok, id] : vocab) max_id = std::max(max_id, id);
  id_to_token_.resize(static_cast<size_t>(max_id + 1));
  std::vector<bool> seen(id_to_token_.size(), false);
  for (const auto& [tok, id] : vocab) {
    COENC_CHECK(!seen[id], "{}: id {} is given to two tokens (\"{}\" and \"{}\")", (where / "vocab").str(),
                id, id_to_token_[id], tok);
    seen[id] = true;
    id_to_token_[id] = tok;
  }
  token_to_id_.reserve(id_to_token_.size());
  for (size_t id = 0; id < id_to_token_.size(); ++id) {
    if (seen[id]) token_to_id_.emplace(id_to_token_[id], static_cast<TokenId>(id));
  }
  if (options_.unk_token) {
    COENC_CHECK(token_to_id_.count(*options_.unk_token), "{} \"{}\" is not in the vocabulary",
                (where / "unk_token").str(), *options_.unk_token);
  }

  merges_.reserve(merges.size());
  for (size_t rank = 0; rank < merges.size(); ++rank) {
    const auto& [a, b] = merges[rank];
    JsonPath at = (where / "merges").at(rank);
    auto ia = token_to_id_.find(a), ib = token_to_id_.find(b);
    COENC_CHECK(ia != token_to_id_.end(), "{}: token \"{}\" is not in the vocabulary", at.str(), a);
    COENC_CHECK(ib != token_to_id_.end(), "{}: token \"{}\" is not in the vocabulary", at.str(), b);
    std::string joined = a + b;
    auto ij = token_to_id_.find(joined);
    COENC_CHECK(ij != token_to_id_.end(), "{}: merged token \"{}\" is not in the vocabulary", at.str(),
                joined);
    merges_.insert(ia->second, ib->second, {static_cast<uint32_t>(rank), ij->second});
  }

  for (int b = 0; b < 256; ++b) {
    auto it = token_to_id_.find(byte_to_unicode(static_cast<uint8_t>(b)));
    byte_id_[b] = it == token_to_id_.end() ? -1 : it->second;
  }
  if (options_.byte_level && options_.ignore_merges) {
    std::string raw;
    for (size_t id = 0; id < id_to_token_.size(); ++id) {
      if (seen[id] && byte_level_to_bytes(id_to_token_[id], raw))
        raw_to_id_.emplace(raw, static_cast<TokenId>(id));
    }
  }
}

std::optional<TokenId> BpeModel::find(std::string_view token) const {
  auto it = token_to_id_.find(token);
  if (it == token_to_id_.end()) return std::nullopt;
  return it->second;
}

// One initial symbol: its id, else its <0xXX> byte tokens (byte_fallback), else unk (fused when asked), else
// nothing, in the order Hugging Face applies these rules.
void BpeModel::add_unit(std::string_view unit, std::vector<TokenId>& symbols,
                        std::pair<TokenId, bool>& pending_unk) const {
  auto it = token_to_id_.find(unit);
  if (it != token_to_id_.end()) {
    if (pending_unk.second) {
      symbols.push_back(pending_unk.first);
      pending_unk.second = false;
    }
    symbols.push_back(it->second);
    return;
  }
  if (options_.byte_fallback) {
    TokenIds bytes;
    char name[8];
    for (char c : unit) {
      std::snprintf(name, sizeof(name), "<0x%02X>", static_cast<unsigned char>(c));
      auto b = token_to_id_.find(name);
      if (b == token_to_id_.end()) break;
      bytes.push_back(b->second);
    }
    if (bytes.size() == unit.size()) {
      symbols.insert(symbols.end(), bytes.begin(), bytes.end());
      return;
    }
  }
  if (options_.unk_token) {
    TokenId unk_id = token_to_id_.at(*options_.unk_token);
    if (pending_unk.second && !options_.fuse_unk) symbols.push_back(pending_unk.first);
    pending_unk = {unk_id, true};
  }
}

void BpeModel::encode(std::string_view piece, TokenIds& out) const {
  if (piece.empty()) return;
  const bool cacheable = piece.size() <= kCacheMaxPiece;
  const CachedPiece key{piece, cacheable ? std::hash<std::string_view>{}(piece) : 0};
  // The shard from the hash's top bits; the map's buckets take the rest.
  static_assert(kCacheShards == 64, "the shard index takes the hash's top 6 bits");
  CacheShard* shard = cacheable ? &cache_[key.hash >> (8 * sizeof(size_t) - 6)] : nullptr;
  if (shard) {
    std::lock_guard<std::mutex> lock(shard->mutex);
    auto it = shard->map.find(key);
    if (it != shard->map.end()) {
      out.insert(out.end(), it->second.begin(), it->second.end());
      return;
    }
  }

  thread_local std::vector<TokenId> symbols;
  symbols.clear();
  bool whole = false;
  if (options_.ignore_merges) {
    if (options_.byte_level) {
      auto it = raw_to_id_.find(std::string(piece));
      if (it != raw_to_id_.end()) {
        symbols.push_back(it->second);
        whole = true;
      }
    } else if (auto id = find(piece)) {
      symbols.push_back(*id);
      whole = true;
    }
  }
  if (!whole) {
    std::pair<TokenId, bool> pending_unk{0, false};
    if (options_.byte_level) {
      for (char c : piece) {
        auto b = static_cast<uint8_t>(c);
        if (byte_id_[b] >= 0 && !pending_unk.second) {
          symbols.push_back(byte_id_[b]);
        } else {
          add_unit(byte_to_unicode(b), symbols, pending_unk);
        }
      }
    } else {
      size_t i = 0;
      while (i < piece.size()) {
        int len = utf8_sequence_length(piece, i);
        if (len == 0) len = 1;
        add_unit(piece.substr(i, len), symbols, pending_unk);
        i += len;
      }
    }
    if (pending_unk.second) symbols.push_back(pending_unk.first);
    merge(symbols);
  }
  out.insert(out.end(), symbols.begin(), symbols.end());

  if (shard) {
    std::lock_guard<std::mutex> lock(shard->mutex);
    if (shard->map.size() >= kCacheCapacity / kCacheShards) {
      shard->map.clear();
      shard->keys.clear();
    }
    if (!shard->map.count(key)) {
      shard->keys.emplace_back(piece);
      shard->map.emplace(CachedPiece{shard->keys.back(), key.hash}, TokenIds(symbols.begin(), symbols.end()));
    }
  }
}

void BpeModel::merge(std::vector<TokenId>& s) const {
  if (s.size() > kScanLimit) {
    merge_long(s);
    return;
  }
  while (s.size() > 1) {
    uint32_t best_rank = UINT32_MAX;
    size_t best = 0;
    TokenId best_id = 0;
    for (size_t i = 0; i + 1 < s.size(); ++i) {
      const Merge* m = merges_.find(s[i], s[i + 1]);
      if (m && m->rank < best_rank) {
        best_rank = m->rank;
        best = i;
        best_id = m->id;
      }
    }
    if (best_rank == UINT32_MAX) break;
    s[best] = best_id;
    s.erase(s.begin() + static_cast<std::ptrdiff_t>(best) + 1);
  }
}

void BpeModel::merge_long(std::vector<TokenId>& s) const {
  struct Node {
    TokenId id;
    int prev, next;
  };
  std::vector<Node> nodes(s.size());
  for (size_t i = 0; i < s.size(); ++i) {
    nodes[i] = {s[i], static_cast<int>(i) - 1, i + 1 < s.size() ? static_cast<int>(i) + 1 : -1};
  }
  // (rank, position of the left symbol): the smallest pops first, so equal ranks go left to right.
  using Entry = std::pair<uint32_t, int>;
  std::priority_queue<Entry, std::vector<Entry>, std::greater<Entry>> queue;
  auto push = [&](int left) {
    if (left < 0 || nodes[left].next < 0) return;
    if (const Merge* m = merges_.find(nodes[left].id, nodes[nodes[left].next].id))
      queue.push({m->rank, left});
  };
  for (int i = 0; i + 1 < static_cast<int>(nodes.size()); ++i) push(i);
  while (!queue.empty()) {
    auto [rank, left] = queue.top();
    queue.pop();
    Node& a = nodes[left];
    if (a.id < 0 || a.next < 0) continue;
    // A rank names one pair, so a stale entry (its pair changed since it was queued) fails this test.
    const Merge* m = merges_.find(a.id, nodes[a.next].id);
    if (!m || m->rank != rank) continue;
    int right = a.next;
    a.id = m->id;
    a.next = nodes[right].next;
    if (a.next >= 0) nodes[a.next].prev = left;
    nodes[right].id = -1;
    push(a.prev);
    push(left);
  }
  s.clear();
  for (int i = 0; i >= 0 && i < static_cast<int>(nodes.size()); i = nodes[i].next) s.push_back(nodes[i].id);
}

}  // namespace coenc::tok
