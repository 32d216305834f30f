#include "store/rocks_status.h"

#include <fmt/format.h>

namespace tpde {

Status FromRocks(const rocksdb::Status& s, std::string_view context) {
  if (s.ok()) return Status::OK();
  if (s.IsNotFound()) return Status::NotFound(fmt::format("{}: {}", context, s.ToString()));
  if (s.IsCorruption()) return Status::Corruption(fmt::format("{}: {}", context, s.ToString()));
  if (s.IsNoSpace()) return Status::NoSpace(fmt::format("{}: {}", context, s.ToString()));
  return Status::IOError(fmt::format("{}: {}", context, s.ToString()));
}

}  // namespace tpde
