// Compressed documents of coenc serve, kept by content so that a second question about the same text skips the
// tower: keyed by a hash of the model's fingerprint (which names the ratio) and the document's text, bounded in
// bytes, least recently used out first.
#pragma once

#include <cstdint>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <unordered_map>

#include "coenc/coctx.h"

namespace coenc::serve {

class DocumentCache {
 public:
  explicit DocumentCache(int64_t max_bytes) : max_bytes_(max_bytes) {}

  // The id of `text` compressed by the model of `fingerprint`: "doc-" and 32 hex digits.
  static std::string document_id(const std::string& fingerprint, const std::string& text);
  // The document with this id, or null (counted as a hit or a miss).
  std::shared_ptr<const CompressedDocument> find(const std::string& id);
  // Keeps `doc` under `id`, evicting the least recently used documents beyond max_bytes (a document larger than
  // the whole cache is not kept).
  void insert(const std::string& id, std::shared_ptr<const CompressedDocument> doc);

  struct Stats {
    int64_t hits = 0, misses = 0, evictions = 0, entries = 0, bytes = 0, max_bytes = 0;
  };
  Stats stats() const;

 private:
  static int64_t bytes_of(const CompressedDocument& doc);
  struct Entry {
    std::shared_ptr<const CompressedDocument> doc;
    int64_t bytes = 0;
    std::list<std::string>::iterator order;
  };
  mutable std::mutex mu_;
  int64_t max_bytes_;
  std::unordered_map<std::string, Entry> entries_;
  std::list<std::string> order_;  // most recently used first
  Stats stats_;
};

}  // namespace coenc::serve
