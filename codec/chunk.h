// TPDE chunks: the unit of coding, storage and parallel decode.
//
// A segment (one tensor, a file header, or a run of opaque bytes) is a vector
// of elements of `width` bytes, cut into chunks of a fixed number of elements.
// Each chunk is coded on its own, given at most the same chunk of its
// reference (the same element range of the matching segment of the reference
// file), in one of four modes:
//
//   KEY           byte planes of the elements, each plane a stream.
//   DELTA_DENSE   byte planes of zigzag(cur - ref), wrapping integer
//                 difference of bit patterns mod 2^(8*width).
//   DELTA_SPARSE  stream 0: the gaps between positions of changed elements,
//                 Elias-delta bit-packed or (when smaller) as byte planes of
//                 32-bit gaps (GapCoding); streams 1..width: byte planes of
//                 the changed elements' zigzag(cur - ref).
//   SAME          identical to the reference chunk; no payload.
//
// The encoder takes the smallest. Every stream names its entropy codec
// (StreamCodec, one byte per stream in the record): zstd (RFC 8878), or raw
// when zstd does not make it smaller. A chunk's streams are concatenated, in
// order, into its payload. The exact layout is in docs/format.md (format
// version 2).
//
// Because deltas are integer differences of bit patterns, reconstruction is
// bit-exact, and deltas compose: chunk k of a chain is the keyframe chunk
// plus the sum of the deltas mod 2^(8*width), applied in place, one chunk
// buffer for the whole chain.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "codec/status.h"

namespace tpde {

enum class ChunkMode : uint8_t {
  kKey = 0,
  kDeltaDense = 1,
  kDeltaSparse = 2,
  kSame = 3,
};

const char* ChunkModeName(ChunkMode mode);

inline constexpr int kMaxChunkStreams = 9;  // sparse: gaps + 8 planes

// The entropy stage of one stream. Values are on disk; new codecs (a
// GPU-decodable entropy coder) take new values, and a decoder refuses values
// it does not know.
enum class StreamCodec : uint8_t {
  kRaw = 0,   // the stream's decoded bytes, stored as they are
  kZstd = 1,  // one zstd frame (RFC 8878)
};

// How DELTA_SPARSE stream 0 codes the gaps (gap_0 = pos_0 + 1,
// gap_k = pos_k - pos_{k-1}).
enum class GapCoding : uint8_t {
  kEliasDelta = 0,  // bit-packed Elias-delta codes (codec/elias_delta.h)
  kBytePlanes = 1,  // 4 byte planes of the gaps as 32-bit integers, concatenated
};

// One entry of a file's flat chunk index. Fixed size on disk
// (kChunkRecordBytes); see docs/format.md for the byte layout.
struct ChunkRecord {
  ChunkMode mode = ChunkMode::kKey;
  uint8_t width = 1;        // element width in bytes: 1, 2, 4 or 8
  uint8_t num_streams = 0;  // streams in the payload
  GapCoding gap_coding = GapCoding::kEliasDelta;  // DELTA_SPARSE only
  uint32_t segment = 0;     // index of the segment in the file's manifest
  uint64_t elem_begin = 0;  // first element of the chunk within the segment
  uint32_t elem_count = 0;  // elements in the chunk
  uint32_t nnz = 0;         // DELTA_SPARSE: changed elements; else 0
  uint32_t gap_bytes = 0;   // DELTA_SPARSE: uncompressed bytes of stream 0
  uint32_t stream_bytes[kMaxChunkStreams] = {};  // stored bytes of each stream
  StreamCodec codec[kMaxChunkStreams] = {};      // entropy codec of each stream (kRaw when unused)
  uint64_t payload_offset = 0;  // offset of the payload in the file's payload sequence
  uint64_t payload_hash = 0;    // XXH3-64 of the payload bytes
  uint64_t content_hash = 0;    // XXH3-64 of the decoded chunk bytes

  uint64_t payload_bytes() const;
  uint64_t content_bytes() const { return uint64_t{elem_count} * width; }
};

inline constexpr size_t kChunkRecordBytes = 104;

// Appends the fixed-size little-endian encoding of `rec` to *out.
void SerializeChunkRecord(const ChunkRecord& rec, std::string* out);

// Parses kChunkRecordBytes bytes. Corruption on an unknown mode, a width not
// in {1,2,4,8}, a stream count that does not fit the mode, an unknown stream
// codec, or a reserved field that is not zero.
Status ParseChunkRecord(std::string_view in, ChunkRecord* rec);

struct ChunkEncodeOptions {
  int zstd_level = 3;
};

// Per-thread reusable buffers and zstd contexts. Not thread-safe: give each
// thread its own. Memory grows to a few times the largest chunk seen.
class ChunkScratch {
 public:
  ChunkScratch();
  ~ChunkScratch();
  ChunkScratch(const ChunkScratch&) = delete;
  ChunkScratch& operator=(const ChunkScratch&) = delete;

  struct Impl;
  Impl* impl() { return impl_.get(); }

 private:
  std::unique_ptr<Impl> impl_;
};

// Encodes one chunk of `elem_count` elements of `width` bytes at `cur`
// (elem_count * width bytes). `ref` is the same chunk of the reference
// (same size) or nullptr for none. Sets the mode, width, element count,
// streams, nnz, gap_bytes and both hashes of *rec (segment, elem_begin and
// payload_offset are the caller's), and replaces *payload with the payload.
// elem_count must be < 2^32.
void EncodeChunk(const uint8_t* cur, const uint8_t* ref, uint32_t elem_count, int width,
                 const ChunkEncodeOptions& options, ChunkScratch* scratch, ChunkRecord* rec,
                 std::string* payload);

// Decodes one chunk into `buf` (rec.content_bytes() bytes). For KEY, `buf`'s
// prior content is ignored; for delta modes and SAME, `buf` must hold the
// decoded reference chunk on entry and holds this chunk on return.
// Checks the payload hash before decoding and, when `check_content`, the
// content hash after: Corruption if either differs or any stream is
// malformed; `buf` is then unspecified and must not be returned to a reader.
// A chain decoder checks the content of the last link only (the intermediate
// links' payloads are still checked): the final hash covers every link.
Status DecodeChunk(const ChunkRecord& rec, std::string_view payload, uint8_t* buf, ChunkScratch* scratch,
                   bool check_content = true);

// ---- The entropy stage alone ----------------------------------------------
// For decoders that run the later stages elsewhere (the GPU's,
// kernels/gpu_chain_decoder.h). Stream i of a chunk decodes to
// DecodedStreamBytes(rec, i) bytes: a byte plane of elem_count bytes (KEY,
// DELTA_DENSE), the gap stream of gap_bytes bytes (DELTA_SPARSE stream 0),
// or a byte plane of nnz bytes (DELTA_SPARSE streams 1..width).
size_t DecodedStreamBytes(const ChunkRecord& rec, int index);

// Corruption unless `payload` has the record's size and payload hash.
Status CheckPayload(const ChunkRecord& rec, std::string_view payload);

// Decodes every stream of `payload` into dst[i], DecodedStreamBytes(rec, i)
// bytes of caller memory each, and checks the payload's size and hash (as
// CheckPayload) in the same pass: a raw stream is hashed from its fresh copy
// in dst, while it is in cache. Corruption if the payload does not match its
// record or a stream is malformed; dst is then unspecified.
Status DecodeStreamsChecked(const ChunkRecord& rec, std::string_view payload, uint8_t* const* dst,
                            ChunkScratch* scratch);

// The positions (rec.nnz, increasing, each < rec.elem_count) of a
// DELTA_SPARSE chunk from its decoded gap stream (`gap_stream`, gap_bytes
// bytes), in either GapCoding. Corruption if a gap is out of range.
Status DecodeSparsePositions(const ChunkRecord& rec, std::string_view gap_stream, uint32_t* positions);

}  // namespace tpde
