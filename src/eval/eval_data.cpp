// Evaluation data: text documents and QA items from .txt / .jsonl files, plain or xz-compressed (liblzma).
#include <nlohmann/json.hpp>

#include "coenc/atomic_file.h"
#include "coenc/error.h"
#include "coenc/eval.h"
#include "io/data_file.h"

namespace coenc {

namespace {

bool ends_with(const std::string& s, const std::string& suffix) {
  return s.size() >= suffix.size() && s.compare(s.size() - suffix.size(), suffix.size(), suffix) == 0;
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
    std::vector<std::string> more = read_text_documents(path, "evaluation data");
    docs.insert(docs.end(), std::make_move_iterator(more.begin()), std::make_move_iterator(more.end()));
  }
  COENC_CHECK(!docs.empty(), "{}: no documents found", files.front());
  return docs;
}

std::vector<QaItem> read_qa_items(const std::vector<std::string>& files) {
  COENC_CHECK(!files.empty(), "no --data files given");
  std::vector<QaItem> items;
  for (const auto& path : files) {
    COENC_CHECK(ends_with(data_file_format_name(path), ".jsonl"), "{}: QA data must be .jsonl (optionally .xz)", path);
    const std::string text = read_data_file(path, "evaluation data");
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
