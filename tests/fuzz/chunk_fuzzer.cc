// libFuzzer target: the chunk decoder must reject garbage with a Status.
// Input: a 96-byte chunk record, then the payload; the reference chunk is
// synthetic so that delta modes are exercised too. The payload checksum is
// fixed up; the content checksum is left to catch what decodes.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "codec/checksum.h"
#include "codec/chunk.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size < tpde::kChunkRecordBytes) return 0;
  std::string_view in(reinterpret_cast<const char*>(data), size);
  tpde::ChunkRecord rec;
  if (!tpde::ParseChunkRecord(in.substr(0, tpde::kChunkRecordBytes), &rec).ok()) return 0;
  if (rec.content_bytes() > (1u << 20)) return 0;  // the store bounds chunks by its manifest
  std::string_view payload = in.substr(tpde::kChunkRecordBytes);
  // Get past the payload checksum so that the stream decoders see the bytes.
  rec.payload_hash = tpde::Checksum(payload.data(), payload.size());
  std::vector<uint8_t> buf(rec.content_bytes());
  for (size_t i = 0; i < buf.size(); ++i) buf[i] = static_cast<uint8_t>(i * 131 + 7);
  static tpde::ChunkScratch scratch;
  (void)tpde::DecodeChunk(rec, payload, buf.data(), &scratch);
  return 0;
}
