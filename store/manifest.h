// Manifest: everything needed to reconstruct one stored file version (an
// "object"), apart from the chunk payloads themselves.
//
// An object is immutable in content. Its encoding may be rewritten (re-based
// onto another reference, or made a keyframe) under a new `generation`; its
// chunk payloads live under keys (object id, generation, chunk index).
// The binary layout is specified in docs/format.md.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "codec/chunk.h"
#include "codec/layout.h"
#include "codec/status.h"

namespace rocksdb {
class ColumnFamilyHandle;
}  // namespace rocksdb

namespace tpde {

// Chunk payloads live in one of kChunkLanes column families ("lanes"). A
// large object's payloads are written to a lane it holds alone until they
// are flushed, so each blob file RocksDB writes belongs to one (object,
// generation) and is deleted whole once that generation is freed; lane 0 is
// shared by small objects, whose payloads commit through the WAL.
inline constexpr uint8_t kChunkLanes = 8;
using ChunkLanes = std::array<rocksdb::ColumnFamilyHandle*, kChunkLanes>;

struct Manifest {
  uint64_t object_id = 0;
  uint32_t generation = 0;
  uint8_t lane = 0;          // column family of the chunk payloads, < kChunkLanes
  FileKind kind = FileKind::kText;
  uint64_t reference = 0;    // object id of the reference; 0 = keyframe
  uint64_t commit_seq = 0;   // store-wide commit order (for reference choice)
  uint64_t file_bytes = 0;   // logical size of the file
  uint64_t file_hash = 0;    // XXH3-64 of the whole file
  std::vector<Segment> segments;  // tile the file in order
  std::vector<ChunkRecord> chunks;  // flat chunk index, in file order
  uint64_t stored_bytes = 0;        // size of the stored (serialized) manifest; set by ParseManifest

  // Sum of the chunk payload bytes.
  uint64_t payload_bytes() const;

  // Byte range in the file of chunk `c`.
  uint64_t chunk_file_offset(uint32_t c) const;

  // Index of the chunk holding file byte `offset` (< file_bytes).
  uint32_t ChunkAt(uint64_t offset) const;
};

void SerializeManifest(const Manifest& m, std::string* out);

// Parses and checks a manifest: the trailing checksum, and that segments
// tile the file and chunks tile the segments. Corruption otherwise.
Status ParseManifest(std::string_view in, Manifest* m);

}  // namespace tpde
