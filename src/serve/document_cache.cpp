// coenc serve's cache of compressed documents (src/serve/document_cache.h).
#include "serve/document_cache.h"

#include "core/hash.h"

namespace coenc::serve {

std::string DocumentCache::document_id(const std::string& fingerprint, const std::string& text) {
  Hasher h;
  h.update_string(fingerprint);
  h.update_string(text);
  return "doc-" + h.hex();
}

int64_t DocumentCache::bytes_of(const CompressedDocument& doc) {
  int64_t n = 0;
  for (const auto& c : doc.chunks) n += c.numel() * static_cast<int64_t>(c.element_size());
  return n + static_cast<int64_t>(doc.chunk_hashes.size() * 48 + doc.chunk_tokens.size() * 8);
}

std::shared_ptr<const CompressedDocument> DocumentCache::find(const std::string& id) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(id);
  if (it == entries_.end()) {
    ++stats_.misses;
    return nullptr;
  }
  ++stats_.hits;
  order_.splice(order_.begin(), order_, it->second.order);
  return it->second.doc;
}

void DocumentCache::insert(const std::string& id, std::shared_ptr<const CompressedDocument> doc) {
  const int64_t bytes = bytes_of(*doc);
  std::lock_guard<std::mutex> lock(mu_);
  if (bytes > max_bytes_) return;
  if (auto it = entries_.find(id); it != entries_.end()) {
    stats_.bytes -= it->second.bytes;
    order_.erase(it->second.order);
    entries_.erase(it);
  }
  while (!order_.empty() && stats_.bytes + bytes > max_bytes_) {
    auto victim = entries_.find(order_.back());
    stats_.bytes -= victim->second.bytes;
    entries_.erase(victim);
    order_.pop_back();
    ++stats_.evictions;
  }
  order_.push_front(id);
  entries_[id] = Entry{std::move(doc), bytes, order_.begin()};
  stats_.bytes += bytes;
}

DocumentCache::Stats DocumentCache::stats() const {
  std::lock_guard<std::mutex> lock(mu_);
  Stats s = stats_;
  s.entries = static_cast<int64_t>(entries_.size());
  s.max_bytes = max_bytes_;
  return s;
}

}  // namespace coenc::serve
