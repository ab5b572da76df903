// Evaluation data: text documents and QA items from .txt / .jsonl files, plain or xz-compressed (liblzma).
#include <lzma.h>

#include <nlohmann/json.hpp>

#include "coenc/atomic_file.h"
#include "coenc/error.h"
#include "coenc/eval.h"

namespace coenc {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// The file's bytes, decompressed when it ends in .xz.
std::string read_maybe_xz(const std::string& path) {
  std::string raw = read_file_bytes(path, "evaluation data");
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
              "{}: not a valid .xz file (liblzma error {}); decompress it with xz -t to see "
              "what is wrong",
              path, static_cast<int>(ret));
  return out;
}

std::string base_name(const std::string& path) {
  return ends_with(path, ".xz") ? path.substr(0, path.size() - 3) : path;
}

// Calls on_line(line_no, object) for every non-blank line of a JSONL file.
template <typename F>
void for_each_jsonl(const std::string& path, const std::string& text, F on_line) {
  size_t begin = 0;
  int64_t line_no = 0;
  while (begin < text.size()) {
    size_t end = text.find('\n', begin);
    if (end == std::string::npos) end = text.size();
    const std::string_view line = std::string_view(text).substr(begin, end - begin);
    begin = end + 1;
    ++line_no;
    if (line.find_first_not_of(" \t\r") == std::string_view::npos) continue;
    nlohmann::json j;
    try {
      j = nlohmann::json::parse(line);
    } catch (const nlohmann::json::parse_error& e) {
      fail(ErrorCode::InvalidInput, "{}:{}: malformed JSON: {}", path, line_no, e.what());
    }
    COENC_CHECK(j.is_object(), "{}:{}: expected a JSON object", path, line_no);
    on_line(line_no, j);
  }
}

std::vector<std::string> string_list(const nlohmann::json& j, const char* field, const std::string& path,
                                     int64_t line_no) {
  COENC_CHECK(j.is_array(), "{}:{}: field \"{}\" must be a list of strings, got {}", path, line_no, field,
              j.dump().substr(0, 80));
  std::vector<std::string> out;
  for (const auto& x : j) {
    COENC_CHECK(x.is_string(), "{}:{}: field \"{}\" must be a list of strings, got an element {}", path,
                line_no, field, x.dump().substr(0, 80));
    out.push_back(x.get<std::string>());
  }
  return out;
}

}  // namespace

std::vector<std::string> read_eval_documents(const std::vector<std::string>& files) {
  COENC_CHECK(!files.empty(), "no --data files given");
  std::vector<std::string> docs;
  for (const auto& path : files) {
    const std::string text = read_maybe_xz(path), name = base_name(path);
    if (ends_with(name, ".jsonl")) {
      for_each_jsonl(path, text, [&](int64_t line_no, const nlohmann::json& j) {
        COENC_CHECK(j.contains("text") && j["text"].is_string(), "{}:{}: field \"text\" must be a string",
                    path, line_no);
        if (!j["text"].get<std::string>().empty()) docs.push_back(j["text"].get<std::string>());
      });
      continue;
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
  }
  COENC_CHECK(!docs.empty(), "{}: no documents found", files.front());
  return docs;
}

std::vector<QaItem> read_qa_items(const std::vector<std::string>& files) {
  COENC_CHECK(!files.empty(), "no --data files given");
  std::vector<QaItem> items;
  for (const auto& path : files) {
    COENC_CHECK(ends_with(base_name(path), ".jsonl"), "{}: QA data must be .jsonl (optionally .xz)", path);
    const std::string text = read_maybe_xz(path);
    for_each_jsonl(path, text, [&](int64_t line_no, const nlohmann::json& j) {
      QaItem it;
      for (const char* key : {"context", "question"})
        COENC_CHECK(j.contains(key) && j[key].is_string(), "{}:{}: field \"{}\" must be a string", path,
                    line_no, key);
      it.context = j["context"].get<std::string>();
      it.question = j["question"].get<std::string>();
      COENC_CHECK(!it.question.empty(), "{}:{}: field \"question\" is empty", path, line_no);
      COENC_CHECK(j.contains("answers"), "{}:{}: missing field \"answers\"", path, line_no);
      it.answers = string_list(j["answers"], "answers", path, line_no);
      if (j.contains("options") && !j["options"].is_null())
        it.options = string_list(j["options"], "options", path, line_no);
      if (j.contains("id") && j["id"].is_string()) it.id = j["id"].get<std::string>();
      if (!it.options.empty()) {
        if (j.contains("meta") && j["meta"].is_object() && j["meta"].contains("answer_index")) {
          const auto& a = j["meta"]["answer_index"];
          COENC_CHECK(a.is_number_integer() && a.get<int64_t>() >= 0 &&
                          a.get<int64_t>() < static_cast<int64_t>(it.options.size()),
                      "{}:{}: field \"meta.answer_index\" must be an index into \"options\" (0..{}), got {}",
                      path, line_no, it.options.size() - 1, a.dump());
          it.answer_index = a.get<int64_t>();
        } else {
          for (size_t o = 0; o < it.options.size(); ++o)
            if (!it.answers.empty() && it.options[o] == it.answers[0])
              it.answer_index = static_cast<int64_t>(o);
          COENC_CHECK(it.answer_index >= 0,
                      "{}:{}: multiple-choice item without \"meta.answer_index\" and no option "
                      "equal to answers[0]",
                      path, line_no);
        }
      }
      items.push_back(std::move(it));
    });
  }
  return items;
}

}  // namespace coenc
