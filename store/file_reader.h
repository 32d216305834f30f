// FileReader: random and streaming reads of one stored file version.
//
// Reconstructs chunks from the keyframe and the chain of deltas: the chain
// of chunk records is walked back to the nearest KEY chunk, which is decoded
// into one chunk-sized buffer, and each later delta is applied to it in
// place (one buffer for the whole chain, not one per link). Every chunk's
// payload and decoded bytes are checked against their checksums; a mismatch
// is returned as Corruption and the bytes are never handed out.
//
// Thread-safety: Read and ReadChunk may be called concurrently, each caller
// passing its own ChunkScratch; DecodeAll uses the store's pool.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "codec/chunk.h"
#include "codec/status.h"
#include "store/manifest.h"

namespace rocksdb {
class DB;
class ColumnFamilyHandle;
class Snapshot;
}  // namespace rocksdb

namespace tpde {

class ThreadPool;

class FileReader {
 public:
  // `chain[0]` is the file's manifest, chain[i + 1] the reference of
  // chain[i]. Reads through `snapshot` (released by the reader).
  FileReader(rocksdb::DB* db, const ChunkLanes* lanes, const rocksdb::Snapshot* snapshot,
             std::vector<std::shared_ptr<const Manifest>> chain, ThreadPool* pool);
  ~FileReader();
  FileReader(const FileReader&) = delete;
  FileReader& operator=(const FileReader&) = delete;

  const Manifest& manifest() const { return *chain_[0]; }
  uint64_t size() const { return chain_[0]->file_bytes; }
  // Deltas between this file and its keyframe (manifest chain length - 1).
  int chain_depth() const { return static_cast<int>(chain_.size()) - 1; }

  // Decodes chunk `c` of the file into `buf` (content_bytes() of the chunk).
  Status ReadChunk(uint32_t c, uint8_t* buf, ChunkScratch* scratch) const;

  // Decodes chunk `c` of segment `segment` (segment-relative chunk number).
  Status ReadSegmentChunk(uint32_t segment, uint32_t k, uint8_t* buf, ChunkScratch* scratch) const;

  // Copies file bytes [offset, offset + size) into `out`; *read_bytes is less
  // than size only at the end of the file.
  Status Read(uint64_t offset, uint64_t size, uint8_t* out, uint64_t* read_bytes, ChunkScratch* scratch) const;

  // Decodes file bytes [offset, offset + size), which must start and end on
  // chunk boundaries (or the end of the file), into `out`, one chunk per
  // task on `pool`.
  Status ReadChunksParallel(uint64_t offset, uint64_t size, uint8_t* out, ThreadPool* pool) const;

  // Decodes the whole file in order, in parallel batches of about
  // `batch_bytes`, handing consecutive byte ranges to `sink`. Also checks the
  // whole-file checksum. Stops at the first error (of decoding or of sink).
  Status DecodeAll(uint64_t batch_bytes, const std::function<Status(const uint8_t*, size_t)>& sink) const;

 private:
  Status LoadPayload(const Manifest& m, uint32_t c, std::string* payload) const;

  rocksdb::DB* db_;
  const ChunkLanes* lanes_;
  const rocksdb::Snapshot* snapshot_;
  std::vector<std::shared_ptr<const Manifest>> chain_;
  ThreadPool* pool_;
};

}  // namespace tpde
