// RocksLog: RocksDB's info log, written to stderr (the daemon's log) instead
// of a LOG file in the store directory.
//
// The LOG file lives on the store's disk; when that disk fills, RocksDB's
// file logger fails an append and asserts on the next one, taking the
// process down. stderr never shares that fate. Lines below `level` are dropped.
// Thread-safety: RocksDB calls it from any thread; each line is one write.
#pragma once

#include <rocksdb/env.h>

#include <cstdarg>

namespace tpde {

class RocksLog : public rocksdb::Logger {
 public:
  explicit RocksLog(rocksdb::InfoLogLevel level) : rocksdb::Logger(level) {}
  using rocksdb::Logger::Logv;
  void Logv(const char* format, va_list ap) override;
};

}  // namespace tpde
