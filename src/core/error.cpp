#include "coenc/error.h"

namespace coenc {

const char* error_code_name(ErrorCode code) {
  switch (code) {
    case ErrorCode::InvalidInput: return "invalid_input";
    case ErrorCode::NotFound: return "not_found";
    case ErrorCode::Unsupported: return "unsupported";
    case ErrorCode::ExceedsContext: return "exceeds_context";
    case ErrorCode::ModelMismatch: return "model_mismatch";
    case ErrorCode::Internal: return "internal";
  }
  return "internal";
}

int exit_status(ErrorCode code) {
  switch (code) {
    case ErrorCode::InvalidInput: return 3;
    case ErrorCode::NotFound: return 4;
    case ErrorCode::Unsupported: return 5;
    case ErrorCode::ExceedsContext: return 6;
    case ErrorCode::ModelMismatch: return 7;
    case ErrorCode::Internal: return 1;
  }
  return 1;
}

}  // namespace coenc
