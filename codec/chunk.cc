#include "codec/chunk.h"

#include <fmt/format.h>
#include <zstd.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "codec/byte_planes.h"
#include "codec/checksum.h"
#include "codec/elias_delta.h"

namespace tpde {

using internal::ApplyDensePlanes;
using internal::ApplySparsePlanes;
using internal::EliasDeltaDecodeGaps;
using internal::EliasDeltaEncodeGaps;
using internal::GatherNonZero;
using internal::MergePlanes;
using internal::SplitPlanes;
using internal::ZigzagDelta;

struct ChunkScratch::Impl {
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ZSTD_DCtx* dctx = ZSTD_createDCtx();
  std::vector<uint8_t> planes;
  std::vector<uint8_t> zz;
  std::vector<uint32_t> positions;
  std::string gaps;
  std::vector<uint32_t> gap_values;
  // Candidate encodings, one per mode tried.
  std::string candidate_payload[3];

  ~Impl() {
    ZSTD_freeCCtx(cctx);
    ZSTD_freeDCtx(dctx);
  }
};

ChunkScratch::ChunkScratch() : impl_(std::make_unique<Impl>()) {}
ChunkScratch::~ChunkScratch() = default;

const char* ChunkModeName(ChunkMode mode) {
  switch (mode) {
    case ChunkMode::kKey: return "KEY";
    case ChunkMode::kDeltaDense: return "DELTA_DENSE";
    case ChunkMode::kDeltaSparse: return "DELTA_SPARSE";
    case ChunkMode::kSame: return "SAME";
  }
  return "?";
}

uint64_t ChunkRecord::payload_bytes() const {
  uint64_t n = 0;
  for (int s = 0; s < num_streams && s < kMaxChunkStreams; ++s) n += stream_bytes[s];
  return n;
}

// ---- Record serialization -------------------------------------------------

namespace {

template <typename T>
void PutLE(std::string* out, T v) {
  for (size_t i = 0; i < sizeof(T); ++i) out->push_back(static_cast<char>(static_cast<uint64_t>(v) >> (8 * i)));
}

template <typename T>
T GetLE(const char* p) {
  uint64_t v = 0;
  for (size_t i = 0; i < sizeof(T); ++i) v |= uint64_t{static_cast<unsigned char>(p[i])} << (8 * i);
  return static_cast<T>(v);
}

int StreamsForMode(ChunkMode mode, int width) {
  switch (mode) {
    case ChunkMode::kKey:
    case ChunkMode::kDeltaDense: return width;
    case ChunkMode::kDeltaSparse: return width + 1;
    case ChunkMode::kSame: return 0;
  }
  return -1;
}

}  // namespace

void SerializeChunkRecord(const ChunkRecord& rec, std::string* out) {
  PutLE<uint8_t>(out, static_cast<uint8_t>(rec.mode));  // 0
  PutLE<uint8_t>(out, rec.width);                       // 1
  PutLE<uint8_t>(out, rec.num_streams);                 // 2
  PutLE<uint8_t>(out, static_cast<uint8_t>(rec.gap_coding));  // 3
  PutLE<uint32_t>(out, 0);                              // 4 reserved
  PutLE<uint32_t>(out, rec.segment);                    // 8
  PutLE<uint32_t>(out, rec.elem_count);                 // 12
  PutLE<uint64_t>(out, rec.elem_begin);                 // 16
  PutLE<uint32_t>(out, rec.nnz);                        // 24
  PutLE<uint32_t>(out, rec.gap_bytes);                  // 28
  for (uint32_t b : rec.stream_bytes) PutLE<uint32_t>(out, b);  // 32..68
  for (StreamCodec c : rec.codec) PutLE<uint8_t>(out, static_cast<uint8_t>(c));  // 68..77
  out->append(3, '\0');                                 // 77 reserved
  PutLE<uint64_t>(out, rec.payload_offset);             // 80
  PutLE<uint64_t>(out, rec.payload_hash);               // 88
  PutLE<uint64_t>(out, rec.content_hash);               // 96
}

Status ParseChunkRecord(std::string_view in, ChunkRecord* rec) {
  if (in.size() < kChunkRecordBytes) return Status::Corruption("chunk record: truncated");
  const char* p = in.data();
  ChunkRecord r;
  uint8_t mode = GetLE<uint8_t>(p + 0);
  if (mode > static_cast<uint8_t>(ChunkMode::kSame)) {
    return Status::Corruption(fmt::format("chunk record: unknown mode {}", mode));
  }
  r.mode = static_cast<ChunkMode>(mode);
  r.width = GetLE<uint8_t>(p + 1);
  if (r.width != 1 && r.width != 2 && r.width != 4 && r.width != 8) {
    return Status::Corruption(fmt::format("chunk record: bad element width {}", r.width));
  }
  r.num_streams = GetLE<uint8_t>(p + 2);
  if (r.num_streams != StreamsForMode(r.mode, r.width)) {
    return Status::Corruption(fmt::format("chunk record: {} streams for mode {} width {}", r.num_streams,
                                          ChunkModeName(r.mode), r.width));
  }
  const uint8_t gap_coding = GetLE<uint8_t>(p + 3);
  if (gap_coding > 1 || (gap_coding != 0 && r.mode != ChunkMode::kDeltaSparse)) {
    return Status::Corruption(fmt::format("chunk record: unknown gap coding {}", gap_coding));
  }
  r.gap_coding = static_cast<GapCoding>(gap_coding);
  if (GetLE<uint32_t>(p + 4) != 0 || p[77] != 0 || p[78] != 0 || p[79] != 0) {
    return Status::Corruption("chunk record: reserved field is not zero");
  }
  r.segment = GetLE<uint32_t>(p + 8);
  r.elem_count = GetLE<uint32_t>(p + 12);
  r.elem_begin = GetLE<uint64_t>(p + 16);
  r.nnz = GetLE<uint32_t>(p + 24);
  r.gap_bytes = GetLE<uint32_t>(p + 28);
  for (int s = 0; s < kMaxChunkStreams; ++s) r.stream_bytes[s] = GetLE<uint32_t>(p + 32 + 4 * s);
  for (int s = 0; s < kMaxChunkStreams; ++s) {
    const uint8_t codec = GetLE<uint8_t>(p + 68 + s);
    if (codec > static_cast<uint8_t>(StreamCodec::kZstd)) {
      return Status::Corruption(fmt::format("chunk record: stream {} has unknown codec {}", s, codec));
    }
    if (s >= r.num_streams && (codec != 0 || r.stream_bytes[s] != 0)) {
      return Status::Corruption(fmt::format("chunk record: unused stream {} is not empty", s));
    }
    r.codec[s] = static_cast<StreamCodec>(codec);
  }
  r.payload_offset = GetLE<uint64_t>(p + 80);
  r.payload_hash = GetLE<uint64_t>(p + 88);
  r.content_hash = GetLE<uint64_t>(p + 96);
  if (r.nnz > r.elem_count) return Status::Corruption("chunk record: more changed elements than elements");
  // An Elias-delta code of a 32-bit gap takes at most 5 + 6 + 31 bits.
  if (r.gap_coding == GapCoding::kEliasDelta ? uint64_t{r.gap_bytes} > uint64_t{r.nnz} * 6 + 1
                                             : uint64_t{r.gap_bytes} != uint64_t{r.nnz} * 4) {
    return Status::Corruption("chunk record: gap stream size does not fit its coding");
  }
  *rec = r;
  return Status::OK();
}

// ---- Encoder --------------------------------------------------------------

namespace {

// True when the order-0 entropy of `data` is so close to 8 bits per byte
// that zstd cannot shrink it (the low mantissa planes of trained weights):
// skipping zstd there saves most of the encode time at no cost in size.
bool LooksIncompressible(const uint8_t* data, size_t size) {
  if (size < 4096) return false;
  uint32_t hist[256] = {};
  for (size_t i = 0; i < size; ++i) hist[data[i]]++;
  double bits = 0;
  for (uint32_t h : hist) {
    if (h != 0) bits -= h * std::log2(double(h) / double(size));
  }
  return bits >= 7.95 * double(size);
}

// Appends one stream (zstd, or raw when zstd does not shrink it) to *payload.
void AppendStream(ZSTD_CCtx* cctx, int level, const void* data, size_t size, int index, ChunkRecord* rec,
                  std::string* payload) {
  const size_t start = payload->size();
  if (size > 0 && !LooksIncompressible(static_cast<const uint8_t*>(data), size)) {
    payload->resize(start + ZSTD_compressBound(size));
    size_t n = ZSTD_compressCCtx(cctx, payload->data() + start, ZSTD_compressBound(size), data, size, level);
    if (!ZSTD_isError(n) && n < size) {
      payload->resize(start + n);
      rec->stream_bytes[index] = static_cast<uint32_t>(n);
      rec->codec[index] = StreamCodec::kZstd;
      return;
    }
    payload->resize(start);
  }
  payload->append(static_cast<const char*>(data), size);
  rec->codec[index] = StreamCodec::kRaw;
  rec->stream_bytes[index] = static_cast<uint32_t>(size);
}

void AppendPlanes(ZSTD_CCtx* cctx, int level, const uint8_t* planes, size_t plane_bytes, int width,
                  int first_index, ChunkRecord* rec, std::string* payload) {
  for (int i = 0; i < width; ++i) {
    AppendStream(cctx, level, planes + i * plane_bytes, plane_bytes, first_index + i, rec, payload);
  }
}

// Appends stream 0 of a DELTA_SPARSE chunk: the gaps of s.positions[0..nnz)
// in whichever coding compresses smaller.
void AppendGapStream(ChunkScratch::Impl& s, int level, size_t nnz, ChunkRecord* rec, std::string* payload) {
  s.gaps.clear();
  EliasDeltaEncodeGaps(s.positions.data(), nnz, &s.gaps);
  ChunkRecord elias = *rec;
  std::string elias_stream;
  AppendStream(s.cctx, level, s.gaps.data(), s.gaps.size(), 0, &elias, &elias_stream);
  elias.gap_bytes = static_cast<uint32_t>(s.gaps.size());

  // The same gaps as 32-bit integers in 4 byte planes.
  s.gap_values.resize(nnz);
  uint32_t prev = 0;  // position + 1 of the previous change
  for (size_t k = 0; k < nnz; ++k) {
    s.gap_values[k] = s.positions[k] + 1 - prev;
    prev = s.positions[k] + 1;
  }
  s.gaps.resize(nnz * 4);
  SplitPlanes(reinterpret_cast<const uint8_t*>(s.gap_values.data()), nnz, 4,
              reinterpret_cast<uint8_t*>(s.gaps.data()));
  ChunkRecord planes = *rec;
  std::string planes_stream;
  AppendStream(s.cctx, level, s.gaps.data(), s.gaps.size(), 0, &planes, &planes_stream);
  planes.gap_bytes = static_cast<uint32_t>(s.gaps.size());
  planes.gap_coding = GapCoding::kBytePlanes;

  const bool use_planes = planes_stream.size() < elias_stream.size();
  *rec = use_planes ? planes : elias;
  payload->append(use_planes ? planes_stream : elias_stream);
}

// Decodes the gaps of a DELTA_SPARSE chunk (stream 0, already decompressed
// into `stream`) into s.positions.
Status DecodeGaps(ChunkScratch::Impl& s, const ChunkRecord& rec, std::string_view stream) {
  const size_t nnz = rec.nnz;
  if (s.positions.size() < nnz) s.positions.resize(nnz);
  if (rec.gap_coding == GapCoding::kEliasDelta) {
    return EliasDeltaDecodeGaps(stream, nnz, rec.elem_count, s.positions.data());
  }
  if (stream.size() != nnz * 4) return Status::Corruption("gap planes: size mismatch");
  s.gap_values.resize(nnz);
  MergePlanes(reinterpret_cast<const uint8_t*>(stream.data()), nnz, 4,
              reinterpret_cast<uint8_t*>(s.gap_values.data()));
  uint64_t pos1 = 0;
  for (size_t k = 0; k < nnz; ++k) {
    const uint32_t gap = s.gap_values[k];
    pos1 += gap;
    if (gap == 0 || pos1 > rec.elem_count) return Status::Corruption("gap planes: position out of range");
    s.positions[k] = static_cast<uint32_t>(pos1 - 1);
  }
  return Status::OK();
}

}  // namespace

void EncodeChunk(const uint8_t* cur, const uint8_t* ref, uint32_t elem_count, int width,
                 const ChunkEncodeOptions& options, ChunkScratch* scratch, ChunkRecord* rec,
                 std::string* payload) {
  ChunkScratch::Impl& s = *scratch->impl();
  const size_t count = elem_count;
  const size_t bytes = count * width;
  const int level = options.zstd_level;

  ChunkRecord base;
  base.width = static_cast<uint8_t>(width);
  base.elem_count = elem_count;
  base.segment = rec->segment;
  base.elem_begin = rec->elem_begin;
  base.payload_offset = rec->payload_offset;
  base.content_hash = Checksum(cur, bytes);

  if (ref != nullptr && std::memcmp(cur, ref, bytes) == 0) {
    *rec = base;
    rec->mode = ChunkMode::kSame;
    payload->clear();
    rec->payload_hash = Checksum(payload->data(), 0);
    return;
  }

  if (s.planes.size() < bytes) s.planes.resize(bytes);
  ChunkRecord cand[3] = {base, base, base};
  bool tried[3] = {true, false, false};

  // KEY: planes of the elements themselves.
  cand[0].mode = ChunkMode::kKey;
  cand[0].num_streams = static_cast<uint8_t>(width);
  s.candidate_payload[0].clear();
  SplitPlanes(cur, count, width, s.planes.data());
  AppendPlanes(s.cctx, level, s.planes.data(), count, width, 0, &cand[0], &s.candidate_payload[0]);

  if (ref != nullptr) {
    if (s.zz.size() < bytes) s.zz.resize(bytes);
    const size_t nnz = ZigzagDelta(cur, ref, count, width, s.zz.data());

    // DELTA_DENSE: planes of every element's zigzag difference.
    tried[1] = true;
    cand[1].mode = ChunkMode::kDeltaDense;
    cand[1].num_streams = static_cast<uint8_t>(width);
    s.candidate_payload[1].clear();
    SplitPlanes(s.zz.data(), count, width, s.planes.data());
    AppendPlanes(s.cctx, level, s.planes.data(), count, width, 0, &cand[1], &s.candidate_payload[1]);

    // DELTA_SPARSE: worth trying only when most elements are unchanged.
    if (nnz * 2 <= count) {
      tried[2] = true;
      cand[2].mode = ChunkMode::kDeltaSparse;
      cand[2].num_streams = static_cast<uint8_t>(width + 1);
      cand[2].nnz = static_cast<uint32_t>(nnz);
      if (s.positions.size() < count) s.positions.resize(count);
      GatherNonZero(s.zz.data(), count, width, s.positions.data(), s.planes.data());
      std::string& out = s.candidate_payload[2];
      out.clear();
      AppendGapStream(s, level, nnz, &cand[2], &out);
      AppendPlanes(s.cctx, level, s.planes.data(), nnz, width, 1, &cand[2], &out);
    }
  }

  int best = 0;
  for (int m = 1; m < 3; ++m) {
    if (tried[m] && s.candidate_payload[m].size() < s.candidate_payload[best].size()) best = m;
  }
  *rec = cand[best];
  payload->swap(s.candidate_payload[best]);
  rec->payload_hash = Checksum(payload->data(), payload->size());
}

// ---- Decoder --------------------------------------------------------------

namespace {

// Reads stream `index` of `rec` (decoded size `expect` bytes) at *offset of
// the payload into `dst`, advancing *offset.
Status ReadStream(ZSTD_DCtx* dctx, const ChunkRecord& rec, std::string_view payload, int index, size_t expect,
                  size_t* offset, uint8_t* dst) {
  const size_t stored = rec.stream_bytes[index];
  const char* src = payload.data() + *offset;
  *offset += stored;
  if (rec.codec[index] == StreamCodec::kRaw) {
    if (stored != expect) {
      return Status::Corruption(fmt::format("chunk stream {}: raw size {} != expected {}", index, stored, expect));
    }
    if (expect > 0) std::memcpy(dst, src, expect);
    return Status::OK();
  }
  size_t n = ZSTD_decompressDCtx(dctx, dst, expect, src, stored);
  if (ZSTD_isError(n)) {
    return Status::Corruption(fmt::format("chunk stream {}: zstd: {}", index, ZSTD_getErrorName(n)));
  }
  if (n != expect) {
    return Status::Corruption(fmt::format("chunk stream {}: decoded {} bytes, expected {}", index, n, expect));
  }
  return Status::OK();
}

Status ReadPlanes(ZSTD_DCtx* dctx, const ChunkRecord& rec, std::string_view payload, int first_index,
                  size_t plane_bytes, size_t* offset, uint8_t* planes) {
  for (int i = 0; i < rec.width; ++i) {
    TPDE_RETURN_IF_ERROR(
        ReadStream(dctx, rec, payload, first_index + i, plane_bytes, offset, planes + i * plane_bytes));
  }
  return Status::OK();
}

}  // namespace

Status DecodeChunk(const ChunkRecord& rec, std::string_view payload, uint8_t* buf, ChunkScratch* scratch,
                   bool check_content) {
  ChunkScratch::Impl& s = *scratch->impl();
  TPDE_RETURN_IF_ERROR(CheckPayload(rec, payload));
  const size_t count = rec.elem_count;
  const size_t bytes = rec.content_bytes();
  const int width = rec.width;
  size_t offset = 0;

  switch (rec.mode) {
    case ChunkMode::kSame:
      break;
    case ChunkMode::kKey:
      if (width == 1) {
        TPDE_RETURN_IF_ERROR(ReadStream(s.dctx, rec, payload, 0, count, &offset, buf));
      } else {
        if (s.planes.size() < bytes) s.planes.resize(bytes);
        TPDE_RETURN_IF_ERROR(ReadPlanes(s.dctx, rec, payload, 0, count, &offset, s.planes.data()));
        MergePlanes(s.planes.data(), count, width, buf);
      }
      break;
    case ChunkMode::kDeltaDense:
      if (s.planes.size() < bytes) s.planes.resize(bytes);
      TPDE_RETURN_IF_ERROR(ReadPlanes(s.dctx, rec, payload, 0, count, &offset, s.planes.data()));
      ApplyDensePlanes(s.planes.data(), count, width, buf);
      break;
    case ChunkMode::kDeltaSparse: {
      const size_t nnz = rec.nnz;
      if (s.gaps.size() < rec.gap_bytes) s.gaps.resize(rec.gap_bytes);
      TPDE_RETURN_IF_ERROR(ReadStream(s.dctx, rec, payload, 0, rec.gap_bytes, &offset,
                                      reinterpret_cast<uint8_t*>(s.gaps.data())));
      TPDE_RETURN_IF_ERROR(DecodeGaps(s, rec, std::string_view(s.gaps.data(), rec.gap_bytes)));
      if (s.planes.size() < nnz * width) s.planes.resize(nnz * width);
      TPDE_RETURN_IF_ERROR(ReadPlanes(s.dctx, rec, payload, 1, nnz, &offset, s.planes.data()));
      ApplySparsePlanes(s.positions.data(), s.planes.data(), nnz, width, buf);
      break;
    }
  }
  if (check_content && Checksum(buf, bytes) != rec.content_hash) {
    return Status::Corruption("decoded chunk checksum mismatch");
  }
  return Status::OK();
}

// ---- The entropy stage alone ----------------------------------------------

size_t DecodedStreamBytes(const ChunkRecord& rec, int index) {
  switch (rec.mode) {
    case ChunkMode::kKey:
    case ChunkMode::kDeltaDense: return index < rec.width ? rec.elem_count : 0;
    case ChunkMode::kDeltaSparse:
      if (index == 0) return rec.gap_bytes;
      return index <= rec.width ? rec.nnz : 0;
    case ChunkMode::kSame: return 0;
  }
  return 0;
}

Status CheckPayload(const ChunkRecord& rec, std::string_view payload) {
  if (payload.size() != rec.payload_bytes()) {
    return Status::Corruption(
        fmt::format("chunk payload holds {} bytes, index says {}", payload.size(), rec.payload_bytes()));
  }
  if (Checksum(payload.data(), payload.size()) != rec.payload_hash) {
    return Status::Corruption("chunk payload checksum mismatch");
  }
  return Status::OK();
}

Status DecodeStreamsChecked(const ChunkRecord& rec, std::string_view payload, uint8_t* const* dst,
                            ChunkScratch* scratch) {
  if (payload.size() != rec.payload_bytes()) {
    return Status::Corruption(
        fmt::format("chunk payload holds {} bytes, index says {}", payload.size(), rec.payload_bytes()));
  }
  StreamingChecksum sum;
  size_t offset = 0;
  for (int i = 0; i < rec.num_streams; ++i) {
    const size_t start = offset;
    TPDE_RETURN_IF_ERROR(
        ReadStream(scratch->impl()->dctx, rec, payload, i, DecodedStreamBytes(rec, i), &offset, dst[i]));
    if (rec.codec[i] == StreamCodec::kRaw) {
      sum.Update(dst[i], rec.stream_bytes[i]);  // the same bytes, just copied
    } else {
      sum.Update(payload.data() + start, rec.stream_bytes[i]);
    }
  }
  if (sum.Digest() != rec.payload_hash) return Status::Corruption("chunk payload checksum mismatch");
  return Status::OK();
}

Status DecodeSparsePositions(const ChunkRecord& rec, std::string_view gap_stream, uint32_t* positions) {
  if (rec.gap_coding == GapCoding::kEliasDelta) {
    return EliasDeltaDecodeGaps(gap_stream, rec.nnz, rec.elem_count, positions);
  }
  if (gap_stream.size() != uint64_t{rec.nnz} * 4) return Status::Corruption("gap planes: size mismatch");
  const size_t nnz = rec.nnz;
  uint64_t pos1 = 0;
  for (size_t k = 0; k < nnz; ++k) {
    uint32_t gap = 0;
    for (int p = 0; p < 4; ++p) gap |= uint32_t{static_cast<uint8_t>(gap_stream[p * nnz + k])} << (8 * p);
    pos1 += gap;
    if (gap == 0 || pos1 > rec.elem_count) return Status::Corruption("gap planes: position out of range");
    positions[k] = static_cast<uint32_t>(pos1 - 1);
  }
  return Status::OK();
}

}  // namespace tpde
