// Status: the result of an operation that can fail (LevelDB style).
//
// tpde APIs never throw across their boundary: each fallible call returns a
// Status. An OK status carries no message; an error carries a code and a
// one-line, human-readable message that names what failed (a path, a field,
// a byte offset), and may carry a POSIX sub-code: the errno value (from
// <cerrno>) a file system should answer, where the code alone does not say
// it (ENOTEMPTY, EISDIR, ENAMETOOLONG are kInvalidArgument; ENOTDIR is
// kInvalidArgument for an operation's own argument and kNotFound for a
// component of a path being resolved, as in POSIX).
// The component that detects the condition sets it, under its own lock, so
// callers never re-check the condition to choose an errno (which would race
// with concurrent changes). Status is a small value type, cheap to copy and
// move.
// Thread-safety: a Status object is not shared; distinct objects are safe.
#pragma once

#include <string>
#include <string_view>
#include <utility>

namespace tpde {

class Status {
 public:
  enum class Code : unsigned char {
    kOk = 0,
    kNotFound,        // a path, object or key does not exist
    kCorruption,      // stored or input bytes fail a checksum or a format rule
    kInvalidArgument, // the caller passed something malformed
    kIOError,         // the operating system or RocksDB reported a failure
    kBusy,            // the store is locked by another process
    kAlreadyExists,   // the target of a create already exists
    kNotSupported,    // a valid request tpde does not handle
    kNoSpace,         // a disk is full (ENOSPC); retried once space is freed
  };

  Status() = default;

  static Status OK() { return Status(); }
  static Status NotFound(std::string_view msg) { return Status(Code::kNotFound, msg); }
  static Status Corruption(std::string_view msg) { return Status(Code::kCorruption, msg); }
  static Status InvalidArgument(std::string_view msg) {
    return Status(Code::kInvalidArgument, msg);
  }
  static Status IOError(std::string_view msg) { return Status(Code::kIOError, msg); }
  static Status Busy(std::string_view msg) { return Status(Code::kBusy, msg); }
  static Status AlreadyExists(std::string_view msg) {
    return Status(Code::kAlreadyExists, msg);
  }
  static Status NotSupported(std::string_view msg) {
    return Status(Code::kNotSupported, msg);
  }

  static Status NoSpace(std::string_view msg) { return Status(Code::kNoSpace, msg); }

  bool ok() const { return code_ == Code::kOk; }
  bool IsNoSpace() const { return code_ == Code::kNoSpace; }
  bool IsNotFound() const { return code_ == Code::kNotFound; }
  bool IsCorruption() const { return code_ == Code::kCorruption; }
  bool IsInvalidArgument() const { return code_ == Code::kInvalidArgument; }
  bool IsIOError() const { return code_ == Code::kIOError; }
  bool IsBusy() const { return code_ == Code::kBusy; }
  bool IsAlreadyExists() const { return code_ == Code::kAlreadyExists; }
  Code code() const { return code_; }
  const std::string& message() const { return msg_; }
  // The POSIX sub-code, or 0 when none was set (the code's usual errno
  // applies: see fusefs/filesystem.cc, ToErrno).
  int posix_code() const { return posix_code_; }

  // Returns a copy carrying `errno_value` as its POSIX sub-code (no effect
  // on OK).
  Status WithPosixCode(int errno_value) const;

  // "OK", or "<code name>: <message>".
  std::string ToString() const;

  // Returns a copy whose message is prefixed with `context: `.
  Status WithContext(std::string_view context) const;

 private:
  Status(Code code, std::string_view msg) : code_(code), msg_(msg) {}

  Code code_ = Code::kOk;
  int posix_code_ = 0;
  std::string msg_;
};

}  // namespace tpde

// Returns early from the enclosing function when `expr` is not OK.
#define TPDE_RETURN_IF_ERROR(expr)            \
  do {                                        \
    ::tpde::Status _tpde_s = (expr);          \
    if (!_tpde_s.ok()) return _tpde_s;        \
  } while (0)
