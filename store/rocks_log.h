// RocksLog: RocksDB's info log, sent to the process's spdlog logger (the
// daemon's log: stderr or the journal) instead of a LOG file in the store
// directory.
//
// The LOG file lives on the store's disk; when that disk fills, RocksDB's
// file logger fails an append and asserts on the next one, taking the
// process down. The daemon's log never shares that fate. Lines below `level`
// are dropped; RocksDB's levels map to spdlog's (DEBUG→debug, INFO→info,
// WARN→warn, ERROR→err, FATAL→critical; HEADER, the options dump, is dropped).
// Thread-safety: RocksDB calls it from any thread; spdlog's default logger
// is thread-safe.
#pragma once

#include <rocksdb/env.h>

#include <cstdarg>

namespace tpde {

class RocksLog : public rocksdb::Logger {
 public:
  explicit RocksLog(rocksdb::InfoLogLevel level) : rocksdb::Logger(level) {}
  void Logv(const char* format, va_list ap) override;
  void Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) override;
};

}  // namespace tpde
