// FileReader: random and streaming reads of one stored file version.
//
// Reconstructs chunks from the keyframe and the chain of deltas: the chain
// of chunk records is walked back to the nearest KEY chunk, which is decoded
// into one chunk-sized buffer, and each later delta is applied to it in
// place (one buffer for the whole chain, not one per link). Every chunk's
// payload and decoded bytes are checked against their checksums; a mismatch
// is returned as Corruption and the bytes are never handed out.
//
// Chains are resolved and payloads fetched here; the decoding itself is a
// ChainDecoder's (codec/chain_decoder.h): single chunks are decoded on the
// calling thread, batches (ReadChunks, ReadChunksParallel, DecodeAll) by the
// store's batched decoder when it has one (the GPU's), else one chunk per
// pool task.
//
// Thread-safety: Read and ReadChunk may be called concurrently, each caller
// passing its own ChunkScratch; DecodeAll uses the store's pool.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "codec/chain_bundle.h"
#include "codec/chain_decoder.h"
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
  // chain[i]. Reads through `snapshot` (released by the reader). `decoder`
  // (not owned; nullptr: none) decodes batches.
  FileReader(rocksdb::DB* db, const ChunkLanes* lanes, const rocksdb::Snapshot* snapshot,
             std::vector<std::shared_ptr<const Manifest>> chain, ThreadPool* pool,
             ChainDecoder* decoder = nullptr);
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

  // Decodes chunks chunks[0..n) of the file into out[i] (content_bytes() of
  // chunk chunks[i] each, host memory) as one batch of `decoder`, resolving
  // chains and fetching payloads on `pool` (nullptr: the calling thread).
  // Stops at the first error, naming the chunk.
  Status ReadChunks(const uint32_t* chunks, size_t n, uint8_t* const* out, ChainDecoder* decoder,
                    ThreadPool* pool) const;

  // The file as a ChainBundle (codec/chain_bundle.h), for a decoder in
  // another process (the loader): BundleLayout resolves every chunk's chain;
  // WriteBundle hands the tables and every payload to `write` (byte offset
  // in the bundle, bytes, size; called from the pool's threads at once, for
  // disjoint ranges), fetching one chunk per task on `pool` (nullptr: the
  // store's), tasks taken in file order. `written` (optional) is called,
  // from the task's thread, once chunk c's payloads are all written.
  // Stops at the first error of a fetch, `write` or `written`; tasks not
  // started by then do nothing.
  using BundleSink = std::function<Status(uint64_t offset, const void* data, size_t size)>;
  using ChunkWritten = std::function<Status(uint32_t chunk)>;
  Status BundleLayout(ChainBundleLayout* layout) const;
  Status WriteBundle(const ChainBundleLayout& layout, const BundleSink& write, ThreadPool* pool,
                     const ChunkWritten& written = nullptr) const;
  // The two halves of WriteBundle: the header and tables (at offset 0, on
  // the calling thread), then the payloads.
  Status WriteBundleTables(const ChainBundleLayout& layout, const BundleSink& write) const;
  Status WriteBundlePayloads(const ChainBundleLayout& layout, const BundleSink& write, ThreadPool* pool,
                             const ChunkWritten& written = nullptr) const;

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
  // One link of a chunk's chain: chunk `chunk` of manifest `m`.
  struct Link {
    const Manifest* m;
    uint32_t chunk;
  };
  static constexpr size_t kMaxLinks = 64;
  // A chunk's resolved chain and its payloads, ready for a ChainDecoder.
  struct FetchedChain {
    std::vector<Link> links;  // keyframe first
    std::vector<std::string> payloads;
    std::vector<ChainLink> chain_links;  // views of links and payloads
  };
  // The links of chunk k of `segment`, keyframe first.
  Status ResolveChain(uint32_t segment, uint32_t k, std::vector<Link>* links) const;
  Status FetchChain(uint32_t c, FetchedChain* out) const;
  Status LoadPayload(const Manifest& m, uint32_t c, std::string* payload) const;

  rocksdb::DB* db_;
  const ChunkLanes* lanes_;
  const rocksdb::Snapshot* snapshot_;
  std::vector<std::shared_ptr<const Manifest>> chain_;
  ThreadPool* pool_;
  ChainDecoder* decoder_;
};

}  // namespace tpde
