#include "codec/status.h"

namespace tpde {

namespace {
const char* CodeName(Status::Code code) {
  switch (code) {
    case Status::Code::kOk: return "OK";
    case Status::Code::kNotFound: return "not found";
    case Status::Code::kCorruption: return "corruption";
    case Status::Code::kInvalidArgument: return "invalid argument";
    case Status::Code::kIOError: return "I/O error";
    case Status::Code::kBusy: return "busy";
    case Status::Code::kAlreadyExists: return "already exists";
    case Status::Code::kNotSupported: return "not supported";
    case Status::Code::kNoSpace: return "no space";
  }
  return "unknown";
}
}  // namespace

std::string Status::ToString() const {
  if (ok()) return "OK";
  std::string s = CodeName(code_);
  s += ": ";
  s += msg_;
  return s;
}

Status Status::WithContext(std::string_view context) const {
  if (ok()) return *this;
  std::string m(context);
  m += ": ";
  m += msg_;
  Status s(code_, m);
  s.posix_code_ = posix_code_;
  return s;
}

Status Status::WithPosixCode(int errno_value) const {
  if (ok()) return *this;
  Status s = *this;
  s.posix_code_ = errno_value;
  return s;
}

}  // namespace tpde
