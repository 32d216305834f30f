// The libfuse low-level operations table of tpded. The session's userdata
// must be a tpde::Filesystem*. FUSE inode numbers are the store's inode
// numbers (the root is 1 in both).
#pragma once

#include <fuse_lowlevel.h>

namespace tpde {

// Seconds the kernel may cache attributes and directory entries.
inline constexpr double kAttrTimeoutSeconds = 1.0;

// Largest read and write request, in bytes (also passed as -o max_read).
inline constexpr unsigned kMaxRequestBytes = 1u << 20;
// Kernel read-ahead window for the mount (bdi read_ahead_kb, max_readahead).
inline constexpr unsigned kReadaheadBytes = 16u << 20;

const fuse_lowlevel_ops* FuseOps();

}  // namespace tpde
