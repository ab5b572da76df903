// Data files: plain or xz-compressed, and JSONL line by line (src/io/data_file.h).
#include "io/data_file.h"

#include <lzma.h>

#include "coenc/atomic_file.h"
#include "coenc/error.h"

namespace coenc {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

std::string read_data_file(const std::string& path, const char* what) {
  std::string raw = read_file_bytes(path, what);
  if (!ends_with(path, ".xz")) return raw;
  lzma_stream strm = LZMA_STREAM_INIT;
  COENC_CHECK_CODE(lzma_stream_decoder(&strm, UINT64_MAX, LZMA_CONCATENATED) == LZMA_OK, Internal,
                   "{}: could not start the xz decoder", path);
  std::string out;
  char buf[1 << 16];
  strm.next_in = reinterpret_cast<const uint8_t*>(raw.data());
  strm.avail_in = raw.size();
  lzma_ret ret = LZMA_OK;
  while (ret == LZMA_OK) {
    strm.next_out = reinterpret_cast<uint8_t*>(buf);
    strm.avail_out = sizeof buf;
    ret = lzma_code(&strm, LZMA_FINISH);
    out.append(buf, sizeof buf - strm.avail_out);
  }
  lzma_end(&strm);
  COENC_CHECK(ret == LZMA_STREAM_END,
              "{}: not a valid .xz file (liblzma error {}); decompress it with xz -t to see what is wrong", path,
              static_cast<int>(ret));
  return out;
}

std::string data_file_format_name(const std::string& path) {
  return ends_with(path, ".xz") ? path.substr(0, path.size() - 3) : path;
}

void for_each_jsonl(const std::string& path, const std::string& text,
                    const std::function<void(int64_t, const nlohmann::json&)>& on_line) {
  size_t begin = 0;
  int64_t line_no = 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    const std::string_view line = std::string_view(text).substr(begin, end - begin);
    begin = end + 1;
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    const nlohmann::json j = parse_json(line, path + ":" + std::to_string(line_no));
    COENC_CHECK(j.is_object(), "{}:{}: expected a JSON object", path, line_no);
    on_line(line_no, j);
  }
}

std::vector<std::string> read_text_documents(const std::string& path, const char* what) {
  const std::string text = read_data_file(path, what), name = data_file_format_name(path);
  std::vector<std::string> docs;
  if (ends_with(name, ".jsonl")) {
    for_each_jsonl(path, text, [&](int64_t line_no, const nlohmann::json& j) {
      COENC_CHECK(j.contains("text") && j["text"].is_string(), "{}:{}: field \"text\" must be a string", path,
                  line_no);
      if (!j["text"].get<std::string>().empty()) docs.push_back(j["text"].get<std::string>());
    });
    return docs;
  }
  COENC_CHECK(ends_with(name, ".txt"), "{}: expected a .txt or .jsonl file (optionally .xz)", path);
  const std::string sep = "\n\n<|doc|>\n";
  size_t begin = 0;
  while (begin < text.size()) {
    size_t end = text.find(sep, begin);
    if (end == std::string::npos) end = text.size();
    if (end > begin) docs.push_back(text.substr(begin, end - begin));
    begin = end + sep.size();
  }
  return docs;
}

}  // namespace coenc
