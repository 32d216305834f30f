// FromRocks: a RocksDB status as a tpde Status, with context ("reading
// inode: ..."). NotFound, Corruption and NoSpace keep their kind (so errno
// mapping sees ENOENT, EIO, ENOSPC); everything else is IOError.
#pragma once

#include <rocksdb/status.h>

#include <string_view>

#include "codec/status.h"

namespace tpde {

Status FromRocks(const rocksdb::Status& s, std::string_view context);

}  // namespace tpde
