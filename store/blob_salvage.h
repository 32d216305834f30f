// BlobSalvage: chunk payloads read back from RocksDB blob files that a
// repaired store no longer knows.
//
// RocksDB 7.8's RepairDB rebuilds the MANIFEST from table files only: the
// lanes' tables keep their blob references, but no blob file is registered,
// and the repaired database deletes every blob file as obsolete at its first
// open. Every payload of at least min_blob_size (4 KiB) would be lost though
// its bytes are intact on the disk, and a compaction over a dangling
// reference fails (garbage for an unknown blob file), which stops the
// store's writes. So Store::Repair sets the blob files aside before
// RepairDB (SetAsideBlobFiles), indexes them (Scan), and rebuilds each lane
// from the manifests: inline payloads from the old lane, the others from
// here (Store::Repair in store.cc).
//
// The blob file format is RocksDB's (db/blob/blob_log_format.h, RocksDB
// 7.8): a 30-byte header (magic 0x00248f37, version 1, column family id,
// compression, TTL flag, expiration range), records of a 32-byte header
// (key size, value size, expiration: u64 little-endian; header and blob
// CRC32C) then key and value, and a 32-byte footer. Records are
// bounds-checked, their CRCs are not (crc32c is internal to RocksDB): every
// payload restored is still checked by its XXH3 before it is decoded
// (docs/format.md), so a damaged record is reported by Verify, never
// returned. Blob files written compressed (tpde never does) are not used.
// A key found in several files has the same value in each: a payload key
// names one (object, generation, chunk), whose bytes never change.
//
// Not thread-safe; for the offline repair only.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "codec/status.h"
#include "store/file_io.h"

namespace tpde {

// Moves every "*.blob" file of the database directory `dir` into
// `aside_dir` (created if missing; on the same file system), never over a
// file already there (one set aside by an earlier repair keeps its name, the
// newcomer gets a suffix). Call before rocksdb::RepairDB.
Status SetAsideBlobFiles(const std::string& dir, const std::string& aside_dir);

class BlobSalvage {
 public:
  BlobSalvage() = default;
  BlobSalvage(const BlobSalvage&) = delete;
  BlobSalvage& operator=(const BlobSalvage&) = delete;

  // Indexes the records of every "*.blob" file in `aside_dir` (the newest
  // file, by number, wins for a key found twice: blob garbage collection
  // copies live blobs forward). Files that are not usable blob files, and
  // torn tails, are named in notes(). IOError if the directory or a file
  // cannot be read.
  Status Scan(const std::string& aside_dir);

  // The value (bytes) stored under `key`; NotFound if no blob file holds it.
  // Opens the file holding it (one kept open at a time: a store has more
  // blob files than a process has descriptors).
  Status Get(std::string_view key, std::string* value);
  // Calls fn(key) for every key indexed, in no order.
  template <typename Fn>
  void ForEachKey(Fn&& fn) const {
    for (const auto& [key, loc] : index_) fn(key);
  }

  int files() const { return static_cast<int>(paths_.size()); }
  uint64_t records() const { return records_; }
  const std::vector<std::string>& notes() const { return notes_; }

 private:
  struct Location {
    uint32_t file;       // index into paths_
    uint64_t offset;     // of the value, bytes from the file's start
    uint64_t size;       // of the value, bytes
  };
  Status ScanFile(uint32_t file, int fd);

  std::vector<std::string> paths_;
  FileDescriptor open_;      // the file Get read last
  uint32_t open_file_ = 0;
  std::unordered_map<std::string, Location> index_;
  uint64_t records_ = 0;
  std::vector<std::string> notes_;
};

}  // namespace tpde
