// Namespace records: inodes and directory entries, as the FUSE layer serves
// them. The root directory is inode 1.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "codec/status.h"

namespace tpde {

inline constexpr uint64_t kRootInode = 1;

enum class InodeType : uint8_t { kFile = 1, kDirectory = 2, kSymlink = 3 };

struct Inode {
  uint64_t ino = 0;
  InodeType type = InodeType::kFile;
  uint32_t mode = 0;       // permission bits (07777), without the type bits
  uint32_t uid = 0;
  uint32_t gid = 0;
  uint32_t nlink = 1;
  uint64_t parent = 0;     // directories: the parent directory's inode
  uint64_t size = 0;       // bytes; files: logical size, symlinks: target length
  int64_t mtime_ns = 0;    // nanoseconds since the Unix epoch
  int64_t ctime_ns = 0;
  uint64_t object = 0;     // files: the object holding the content (0: empty file)
  std::string target;      // symlinks: the link target
};

void SerializeInode(const Inode& inode, std::string* out);
Status ParseInode(std::string_view in, Inode* inode);

struct DirEntry {
  std::string name;
  uint64_t ino = 0;
  InodeType type = InodeType::kFile;
};

}  // namespace tpde
