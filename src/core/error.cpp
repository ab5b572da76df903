#include "coenc/error.h"

namespace coenc {

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::InvalidInput: return "invalid_input";
    case ErrorCode::NotFound: return "not_found";
    case ErrorCode::Unsupported: return "unsupported";
    case ErrorCode::ExceedsContext: return "exceeds_context";
    case ErrorCode::Internal: return "internal";
  }
  return "internal";
}

}  // namespace coenc
