#include "store/rocks_log.h"

#include <spdlog/spdlog.h>

#include <cstdio>

namespace tpde {
namespace {

spdlog::level::level_enum ToSpdlog(rocksdb::InfoLogLevel level) {
  switch (level) {
    case rocksdb::DEBUG_LEVEL: return spdlog::level::debug;
    case rocksdb::WARN_LEVEL: return spdlog::level::warn;
    case rocksdb::ERROR_LEVEL: return spdlog::level::err;
    case rocksdb::FATAL_LEVEL: return spdlog::level::critical;
    default: return spdlog::level::info;
  }
}

}  // namespace

void RocksLog::Logv(const char* format, va_list ap) { Logv(rocksdb::INFO_LEVEL, format, ap); }

void RocksLog::Logv(const rocksdb::InfoLogLevel level, const char* format, va_list ap) {
  // HEADER lines are RocksDB's dump of its options at open: not news.
  if (level < GetInfoLogLevel() || level == rocksdb::HEADER_LEVEL) return;
  char line[1024];
  if (std::vsnprintf(line, sizeof(line), format, ap) < 0) return;
  spdlog::log(ToSpdlog(level), "rocksdb: {}", line);
}

}  // namespace tpde
