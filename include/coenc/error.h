// Errors: every failure Co-Encoder reports is a coenc::Error with a code and one line of text that names the
// file, field or tensor at fault and what was expected. Library code throws; only the edges (CLI main, HTTP
// handlers, the trainer) catch.
#pragma once

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace coenc {

enum class ErrorCode {
  InvalidInput,    // malformed file or argument
  NotFound,        // a file, tensor or field is missing
  Unsupported,     // valid, but not something we implement (architecture, dtype, ...)
  ExceedsContext,  // a sequence longer than the model or session allows
  ModelMismatch,   // input made for another model (a .coctx of another checkpoint)
  Internal,        // a broken invariant: a bug in Co-Encoder
};

const char* error_code_name(ErrorCode code);
// The process exit status for an error of `code` (docs/cli.md, "Exit codes"): bad input 3, not found 4,
// unsupported 5, exceeds the context 6, model mismatch 7, internal 1. (Bad usage is 2, out of memory 8.)
int exit_status(ErrorCode code);

class Error : public std::runtime_error {
 public:
  Error(ErrorCode code, const std::string& message) : std::runtime_error(message), code_(code) {}
  ErrorCode code() const { return code_; }

 private:
  ErrorCode code_;
};

namespace detail {
// "{{" and "}}" stand for literal braces, as in std::format.
inline void format_into(std::ostringstream& out, const char* fmt) {
  for (; *fmt; ++fmt) {
    if ((fmt[0] == '{' && fmt[1] == '{') || (fmt[0] == '}' && fmt[1] == '}')) ++fmt;
    out << *fmt;
  }
}

template <typename T, typename... Rest>
void format_into(std::ostringstream& out, const char* fmt, T&& value, Rest&&... rest) {
  for (; *fmt; ++fmt) {
    if ((fmt[0] == '{' && fmt[1] == '{') || (fmt[0] == '}' && fmt[1] == '}')) {
      out << *fmt++;
      continue;
    }
    if (fmt[0] == '{' && fmt[1] == '}') {
      out << value;
      format_into(out, fmt + 2, std::forward<Rest>(rest)...);
      return;
    }
    out << *fmt;
  }
}
}  // namespace detail

// format("tensor {} has shape {}", name, shape): each "{}" takes the next argument, streamed with <<; "{{" and "}}"
// are literal braces.
template <typename... Args>
std::string format(const char* fmt, Args&&... args) {
  std::ostringstream out;
  detail::format_into(out, fmt, std::forward<Args>(args)...);
  return out.str();
}

template <typename... Args>
[[noreturn]] void fail(ErrorCode code, const char* fmt, Args&&... args) {
  throw Error(code, format(fmt, std::forward<Args>(args)...));
}

}  // namespace coenc

// COENC_CHECK(cond, "message {}", value): throws coenc::Error(InvalidInput) when cond is false.
#define COENC_CHECK(cond, ...)                                            \
  do {                                                                    \
    if (!(cond)) ::coenc::fail(::coenc::ErrorCode::InvalidInput, __VA_ARGS__); \
  } while (0)

// COENC_CHECK_CODE(cond, code, "message {}", value): the same with an explicit ErrorCode.
#define COENC_CHECK_CODE(cond, code, ...)                     \
  do {                                                        \
    if (!(cond)) ::coenc::fail(::coenc::ErrorCode::code, __VA_ARGS__); \
  } while (0)
