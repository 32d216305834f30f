// RocksDB key schema (internal to the store). Integers are big-endian so
// that bytewise key order is numeric order. See docs/format.md.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "store/coding.h"

namespace tpde::keys {

// Column families.
inline constexpr const char* kInodes = "inodes";      // ino -> Inode
inline constexpr const char* kDirents = "dirents";    // parent ino + name -> child ino (8 LE) + type (1)
inline constexpr const char* kObjects = "objects";    // object id -> Manifest
// Chunk payloads: lane i (store/manifest.h) is column family "chunks.i";
// key object id + generation + chunk -> payload.
inline std::string ChunkLane(int lane) { return "chunks." + std::to_string(lane); }
inline constexpr const char* kDeps = "deps";          // reference id + dependent id -> ""
inline constexpr const char* kDetached = "detached";  // object id -> ""
inline constexpr const char* kPending = "pending";    // keyframe to demote -> its successor's object id

// Keys of the default column family.
inline constexpr std::string_view kFormatVersion = "format_version";
inline constexpr std::string_view kNextInode = "next_inode";
inline constexpr std::string_view kNextObject = "next_object";
inline constexpr std::string_view kNextCommitSeq = "next_commit_seq";

inline std::string U64(uint64_t v) {
  std::string k;
  PutBigEndian64(&k, v);
  return k;
}

inline std::string Dirent(uint64_t parent, std::string_view name) {
  std::string k = U64(parent);
  k.append(name);
  return k;
}

inline std::string Chunk(uint64_t object, uint32_t generation, uint32_t chunk) {
  std::string k = U64(object);
  PutBigEndian32(&k, generation);
  PutBigEndian32(&k, chunk);
  return k;
}

// All chunks of (object, generation): [ChunkPrefix(o, g), ChunkPrefix(o, g + 1)).
inline std::string ChunkPrefix(uint64_t object, uint32_t generation) {
  std::string k = U64(object);
  PutBigEndian32(&k, generation);
  return k;
}

inline std::string Dep(uint64_t reference, uint64_t dependent) {
  std::string k = U64(reference);
  PutBigEndian64(&k, dependent);
  return k;
}

}  // namespace tpde::keys
