// Data files of training and evaluation: plain or xz-compressed text, and JSONL read line by line with the file
// and line named in every error.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

namespace coenc {

// The bytes of `path`, decompressed (liblzma) when it ends in ".xz". `what` names the file's role in errors
// ("QA data"). Throws NotFound / InvalidInput naming the file.
std::string read_data_file(const std::string& path, const char* what);

// `path` without a trailing ".xz" (the name that says the format).
std::string data_file_format_name(const std::string& path);

// The documents of a text data file: `.txt` (documents separated by "\n\n<|doc|>\n", as in the project's corpus)
// or `.jsonl` with a string field "text" per line; either may be `.xz`-compressed. Empty documents are left out.
// Throws InvalidInput naming file:line and the field for a malformed line, and the file for another format.
std::vector<std::string> read_text_documents(const std::string& path, const char* what);

// Calls on_line(line_no, object) for every non-blank line of `text`, the contents of JSONL file `path`. A line
// that is not a JSON object is an InvalidInput error naming path:line.
void for_each_jsonl(const std::string& path, const std::string& text,
                    const std::function<void(int64_t line_no, const nlohmann::json& object)>& on_line);

}  // namespace coenc
