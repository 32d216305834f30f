// ChainBundle: everything needed to reconstruct one stored file version
// away from the store — each chunk's chain of records and their payloads —
// in one flat buffer. tpded writes it into the loader's buffers (memfds of
// the loader's process, see "Bundle buffers" below), which the loader maps
// and decodes on its own CPU or GPU: payloads cross the process boundary
// through shared memory, never through the socket.
//
// Layout (little-endian; offsets in bytes from the start of the buffer):
//
//   header  (48 bytes)
//     0  magic "TPDECB01"
//     8  u64 file_bytes       size of the file version
//    16  u32 num_chunks       chunks of the file, in file order
//    20  u32 num_links        chain links over all chunks
//    24  u64 links_offset     = 48 + 16 * num_chunks
//    32  u64 payloads_offset  = links_offset + 120 * num_links
//    40  u64 total_bytes      size of the whole bundle
//   chunks  (16 bytes each)
//     u64 file_offset   where the chunk's bytes start in the file
//     u32 first_link    its links: links[first_link, first_link + num_links),
//     u32 num_links     keyframe first (ChainRequest order)
//   links   (120 bytes each)
//     chunk record (kChunkRecordBytes = 104, codec/chunk.h)
//     u64 payload_offset  from payloads_offset
//     u64 payload_bytes
//   payloads
//
// Thread-safety: plain functions over caller-owned bytes.
#pragma once

#include <cstdint>
#include <string_view>
#include <vector>

#include "codec/chain_decoder.h"
#include "codec/chunk.h"
#include "codec/status.h"

namespace tpde {

inline constexpr char kChainBundleMagic[8] = {'T', 'P', 'D', 'E', 'C', 'B', '0', '1'};
inline constexpr uint64_t kChainBundleHeaderBytes = 48;
inline constexpr uint64_t kChainBundleChunkBytes = 16;
inline constexpr uint64_t kChainBundleLinkBytes = kChunkRecordBytes + 16;

// One chunk of a parsed bundle: its place in the file and its chain, with
// views into the bundle's bytes (valid while the bundle is).
struct BundleChunk {
  uint64_t file_offset = 0;
  uint64_t content_bytes = 0;
  uint32_t first_link = 0;  // into ParsedChainBundle::links
  uint32_t num_links = 0;
};

struct ParsedChainBundle {
  uint64_t file_bytes = 0;
  std::vector<BundleChunk> chunks;
  std::vector<ChunkRecord> records;  // one per link
  std::vector<ChainLink> links;      // records[i] and its payload view

  // The request that reconstructs chunk `c` into `out` (host or device
  // memory, as the decoder expects).
  ChainRequest Request(uint32_t c, uint8_t* out) const {
    return {links.data() + chunks[c].first_link, chunks[c].num_links, out};
  }
};

// Parses and checks a bundle: the magic, every offset and size in bounds,
// each record well formed (ParseChunkRecord), chains that are CheckChainRequest
// valid, chunks that tile [0, file_bytes) in order. Corruption otherwise.
// The payload hashes are checked by the decoder, not here.
Status ParseChainBundle(std::string_view bytes, ParsedChainBundle* out);

// Writing side: lays a bundle out. AddChunk for every chunk, in file
// order, with its chain's records (keyframe first); then WriteTables fills
// the header and both tables (tables_bytes() bytes at the start), and the caller
// copies each link's payload (record->payload_bytes() bytes) to
// PayloadOffset(chunk, link). Not thread-safe while adding; the const
// methods may be called from several threads.
// Bundle buffers: a bundle written into N memfds (the loader's) is dealt
// out in blocks of kBundleBlockBytes, round robin: bundle block b lives in
// buffer b % N at byte (b / N) * kBundleBlockBytes, and the loader maps the
// blocks back in order. Writers working on consecutive chunks at once so
// land in different buffers (a tmpfs file takes one lock per write), and the
// bundle can be filled, and read, in file order.
inline constexpr uint64_t kBundleBlockBytes = 1u << 20;
inline constexpr size_t kMaxBundleBuffers = 32;

struct BundleSpot {
  size_t buffer = 0;     // which buffer
  uint64_t offset = 0;   // byte in that buffer
  uint64_t contiguous = 0;  // bytes from there to the end of the block
};

inline BundleSpot BundleBufferSpot(uint64_t bundle_offset, size_t num_buffers) {
  const uint64_t block = bundle_offset / kBundleBlockBytes;
  const uint64_t within = bundle_offset % kBundleBlockBytes;
  return {static_cast<size_t>(block % num_buffers), (block / num_buffers) * kBundleBlockBytes + within,
          kBundleBlockBytes - within};
}

// Bytes each of `num_buffers` buffers needs for a bundle of `bundle_bytes`
// (whole blocks).
inline uint64_t BundleBufferBytes(uint64_t bundle_bytes, size_t num_buffers) {
  const uint64_t blocks = (bundle_bytes + kBundleBlockBytes - 1) / kBundleBlockBytes;
  return (blocks + num_buffers - 1) / num_buffers * kBundleBlockBytes;
}

class ChainBundleLayout {
 public:
  void AddChunk(uint64_t file_offset, const ChunkRecord* const* records, uint32_t num_links);

  uint32_t num_chunks() const { return static_cast<uint32_t>(chunks_.size()); }
  uint32_t chunk_links(uint32_t c) const { return chunks_[c].num_links; }
  uint64_t total_bytes() const;
  uint64_t tables_bytes() const;  // header and both tables: where the payloads start
  void WriteTables(uint64_t file_bytes, uint8_t* dst) const;
  uint64_t PayloadOffset(uint32_t c, uint32_t link) const;

 private:
  struct Link {
    ChunkRecord record;
    uint64_t payload_offset;  // from the payload area
  };
  std::vector<BundleChunk> chunks_;
  std::vector<Link> links_;
  uint64_t payload_bytes_ = 0;
};

}  // namespace tpde
