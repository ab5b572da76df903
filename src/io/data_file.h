// Data files of training and evaluation: plain or xz-compressed text, and JSONL read line by line with the file
// and line named in every error.
#pragma once

#include <cstdint>
#include <functional>
#include <string>

#include <nlohmann/json.hpp>

namespace coenc {

// The bytes of `path`, decompressed (liblzma) when it ends in ".xz". `what` names the file's role in errors
// ("QA data"). Throws NotFound / InvalidInput naming the file.
std::string read_data_file(const std::string& path, const char* what);

// `path` without a trailing ".xz" (the name that says the format).
std::string data_file_format_name(const std::string& path);

// Calls on_line(line_no, object) for every non-blank line of `text`, the contents of JSONL file `path`. A line
// that is not a JSON object is an InvalidInput error naming path:line.
void for_each_jsonl(const std::string& path, const std::string& text,
                    const std::function<void(int64_t line_no, const nlohmann::json& object)>& on_line);

}  // namespace coenc
