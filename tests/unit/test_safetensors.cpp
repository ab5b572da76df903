// safetensors reader and writer: round trips, and every violation of the format named with file and tensor.
#include <cstring>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "coenc/atomic_file.h"
#include "coenc/safetensors.h"
#include "test_util.h"

namespace coenc {
namespace {

using test::TempDir;

// A file made by hand: header JSON text and a data buffer, with the 8-byte size prefix computed (or forced).
std::string raw_file(const std::string& header, const std::string& data, int64_t forced_size = -1) {
  uint64_t n = forced_size >= 0 ? static_cast<uint64_t>(forced_size) : header.size();
  std::string out(8, '\0');
  std::memcpy(out.data(), &n, 8);  // little-endian on every machine we build for
  return out + header + data;
}

std::string f32_header(const std::string& extra = "") {
  return R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]})" +
         extra + "}";
}

TEST(Safetensors, RoundTripsEveryDtypeAndMetadata) {
  TempDir dir;
  auto a = torch::arange(6, torch::kFloat32).reshape({2, 3});
  auto b = torch::tensor({1.5, -2.25}, torch::kBFloat16);
  auto c = torch::tensor({int64_t{7}, int64_t{-9}});
  auto d = torch::tensor({0.5, 4.0}, torch::kFloat16);
  auto e = torch::tensor({true, false, true});
  write_safetensors(dir / "x.safetensors", {{"a", a}, {"b", b}, {"c", c}, {"d", d}, {"e", e}}, {{"k", "v"}});
  auto f = SafetensorsFile::open(dir / "x.safetensors");
  EXPECT_EQ(f->metadata().at("k"), "v");
  ASSERT_EQ(f->entries().size(), 5u);
  EXPECT_TRUE(torch::equal(f->tensor("a"), a));
  EXPECT_TRUE(torch::equal(f->tensor("b"), b));
  EXPECT_TRUE(torch::equal(f->tensor("c"), c));
  EXPECT_TRUE(torch::equal(f->tensor("d"), d));
  EXPECT_TRUE(torch::equal(f->tensor("e"), e));
  EXPECT_EQ(f->tensor("b").scalar_type(), torch::kBFloat16);
  EXPECT_COENC_ERROR(f->tensor("zz"), "no tensor named \"zz\"");
}

TEST(Safetensors, NonContiguousAndZeroSizedTensors) {
  TempDir dir;
  auto t = torch::arange(12, torch::kFloat32).reshape({3, 4}).t();  // a transposed view
  auto empty = torch::zeros({0, 5});
  write_safetensors(dir / "x.safetensors", {{"t", t}, {"empty", empty}});
  auto f = SafetensorsFile::open(dir / "x.safetensors");
  EXPECT_TRUE(torch::equal(f->tensor("t"), t));
  EXPECT_EQ(f->tensor("empty").sizes(), empty.sizes());
}

TEST(Safetensors, WriterRefusesDuplicateAndReservedNames) {
  TempDir dir;
  auto t = torch::zeros({1});
  EXPECT_COENC_ERROR(write_safetensors(dir / "x.safetensors", {{"a", t}, {"a", t}}), "\"a\" given twice");
  EXPECT_COENC_ERROR(write_safetensors(dir / "x.safetensors", {{"__metadata__", t}}), "not a valid tensor name");
  EXPECT_FALSE(std::filesystem::exists(dir / "x.safetensors"));
}

TEST(Safetensors, WriteIsAtomic) {
  TempDir dir;
  write_safetensors(dir / "x.safetensors", {{"a", torch::ones({2})}});
  // A failed write leaves the old file whole and no temporary file behind.
  EXPECT_ANY_THROW(write_safetensors(dir / "x.safetensors", {{"a", torch::ones({2})}, {"a", torch::ones({2})}}));
  EXPECT_TRUE(torch::equal(SafetensorsFile::open(dir / "x.safetensors")->tensor("a"), torch::ones({2})));
  int n = 0;
  for (auto& e : std::filesystem::directory_iterator(dir.path())) n += e.is_regular_file();
  EXPECT_EQ(n, 1);
}

struct BadCase {
  const char* what;
  std::string bytes;
  const char* needle;
};

TEST(Safetensors, RejectsEveryMalformedFileWithItsName) {
  const std::string data(12, '\0');
  const std::vector<BadCase> cases = {
      {"empty file", "", "expected at least an 8-byte header size"},
      {"short file", "abc", "expected at least an 8-byte header size"},
      {"header size past the end", raw_file(f32_header(), data, 100000), "runs past the end of the file"},
      {"header size over 100 MB", raw_file(f32_header(), data, int64_t{200} << 20), "exceeds the 100 MB limit"},
      {"header not an object", raw_file("[1,2]", ""), "must be a JSON object starting with '{'"},
      {"header not JSON", raw_file("{\"a\":", ""), "not valid JSON"},
      // A number beyond a double threw nlohmann's out_of_range past the parser (found by fuzzing).
      {"number beyond a double", raw_file(R"({"a":{"dtype":"F32","shape":[1e999],"data_offsets":[0,4]}})", ""),
       "not valid JSON"},
      {"metadata not strings", raw_file(R"({"__metadata__":{"k":1}})", ""), "__metadata__ field \"k\" must be a string"},
      {"entry without dtype", raw_file(R"({"a":{"shape":[1],"data_offsets":[0,4]}})", std::string(4, '\0')),
       "tensor \"a\": missing string field \"dtype\""},
      {"unknown dtype", raw_file(R"({"a":{"dtype":"Q7","shape":[1],"data_offsets":[0,4]}})", std::string(4, '\0')),
       "unknown dtype \"Q7\""},
      {"negative shape", raw_file(R"({"a":{"dtype":"F32","shape":[-1],"data_offsets":[0,4]}})", std::string(4, '\0')),
       "shape entries must be non-negative"},
      {"byte count off", raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,4]}})", std::string(4, '\0')),
       "tensor \"a\": holds 4 bytes but shape x dtype F32 needs 8"},
      // (2^62 + 1) x 4 bytes wraps to 4 in 64-bit arithmetic: the size is checked before it is multiplied.
      {"element count x size wraps",
       raw_file(R"({"a":{"dtype":"F32","shape":[4611686018427387905],"data_offsets":[0,4]}})", std::string(4, '\0')),
       "overflows the size of any file"},
      {"dimension product wraps",
       raw_file(R"({"a":{"dtype":"U8","shape":[4294967296,4294967297],"data_offsets":[0,4]}})", std::string(4, '\0')),
       "shape overflows"},
      {"dimension past int64",
       raw_file(R"({"a":{"dtype":"U8","shape":[9223372036854775808],"data_offsets":[0,4]}})", std::string(4, '\0')),
       "out of range"},
      {"reversed offsets", raw_file(R"({"a":{"dtype":"F32","shape":[0],"data_offsets":[4,0]}})", ""), "reversed"},
      {"hole between tensors",
       raw_file(R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})",
                data),
       "tensor \"b\" starts at byte 8 but the previous one ends at 4"},
      {"overlapping tensors",
       raw_file(R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}})",
                std::string(8, '\0')),
       "no holes or overlaps"},
      {"truncated data", raw_file(f32_header(), std::string(10, '\0')), "truncated or padded"},
      {"trailing bytes", raw_file(f32_header(), std::string(16, '\0')), "truncated or padded"},
  };
  TempDir dir;
  for (const auto& c : cases) {
    SCOPED_TRACE(c.what);
    const auto path = dir / "bad.safetensors";
    write_file_atomic(path, c.bytes);
    try {
      SafetensorsFile::open(path);
      ADD_FAILURE() << "accepted: " << c.what;
    } catch (const Error& e) {
      const std::string msg = e.what();
      EXPECT_NE(msg.find(c.needle), std::string::npos) << msg;
      EXPECT_NE(msg.find("bad.safetensors"), std::string::npos) << msg;
      EXPECT_EQ(msg.find('\n'), std::string::npos) << "one line: " << msg;
    }
  }
}

TEST(Safetensors, MissingFileIsNotFound) {
  TempDir dir;
  try {
    SafetensorsFile::open(dir / "nope.safetensors");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_EQ(e.code(), ErrorCode::NotFound);
    EXPECT_NE(std::string(e.what()).find("nope.safetensors"), std::string::npos);
  }
}

TEST(Safetensors, UnalignedTensorsAreCopiedCorrectly) {
  // A 1-byte tensor first puts the following F32 tensor at an odd offset: it cannot be a view of the mapping.
  TempDir dir;
  const auto u8 = torch::tensor({uint8_t{3}}, torch::kUInt8);
  const auto f = torch::tensor({1.25f, -7.5f});
  write_safetensors(dir / "x.safetensors", {{"u", u8}, {"f", f}});
  auto file = SafetensorsFile::open(dir / "x.safetensors");
  EXPECT_TRUE(torch::equal(file->tensor("f"), f));
  EXPECT_TRUE(torch::equal(file->tensor("u"), u8));
}

}  // namespace
}  // namespace coenc
