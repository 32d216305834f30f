#include "store/rocks_log.h"

#include <unistd.h>

#include <algorithm>
#include <cstdio>

namespace tpde {

void RocksLog::Logv(const char* format, va_list ap) {
  char line[1024];
  int n = std::snprintf(line, sizeof(line), "rocksdb: ");
  int m = std::vsnprintf(line + n, sizeof(line) - static_cast<size_t>(n) - 1, format, ap);
  if (m < 0) return;
  size_t len = std::min(sizeof(line) - 2, static_cast<size_t>(n + m));
  line[len++] = '\n';
  (void)!::write(STDERR_FILENO, line, len);
}

}  // namespace tpde
