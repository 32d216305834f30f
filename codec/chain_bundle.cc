#include "codec/chain_bundle.h"

#include <fmt/format.h>

#include <cstring>

namespace tpde {

namespace {

void Put64(uint8_t* p, uint64_t v) {
  for (int i = 0; i < 8; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
void Put32(uint8_t* p, uint32_t v) {
  for (int i = 0; i < 4; ++i) p[i] = static_cast<uint8_t>(v >> (8 * i));
}
uint64_t Get64(const char* p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; ++i) v |= uint64_t{static_cast<uint8_t>(p[i])} << (8 * i);
  return v;
}
uint32_t Get32(const char* p) {
  uint32_t v = 0;
  for (int i = 0; i < 4; ++i) v |= uint32_t{static_cast<uint8_t>(p[i])} << (8 * i);
  return v;
}

}  // namespace

void ChainBundleLayout::AddChunk(uint64_t file_offset, const ChunkRecord* const* records, uint32_t num_links) {
  BundleChunk c;
  c.file_offset = file_offset;
  c.content_bytes = num_links > 0 ? records[num_links - 1]->content_bytes() : 0;
  c.first_link = static_cast<uint32_t>(links_.size());
  c.num_links = num_links;
  chunks_.push_back(c);
  for (uint32_t l = 0; l < num_links; ++l) {
    links_.push_back({*records[l], payload_bytes_});
    payload_bytes_ += records[l]->payload_bytes();
  }
}

uint64_t ChainBundleLayout::total_bytes() const {
  return kChainBundleHeaderBytes + kChainBundleChunkBytes * chunks_.size() + kChainBundleLinkBytes * links_.size() +
         payload_bytes_;
}

uint64_t ChainBundleLayout::tables_bytes() const {
  return kChainBundleHeaderBytes + kChainBundleChunkBytes * chunks_.size() + kChainBundleLinkBytes * links_.size();
}

uint64_t ChainBundleLayout::PayloadOffset(uint32_t c, uint32_t link) const {
  return kChainBundleHeaderBytes + kChainBundleChunkBytes * chunks_.size() + kChainBundleLinkBytes * links_.size() +
         links_[chunks_[c].first_link + link].payload_offset;
}

void ChainBundleLayout::WriteTables(uint64_t file_bytes, uint8_t* dst) const {
  const uint64_t links_offset = kChainBundleHeaderBytes + kChainBundleChunkBytes * chunks_.size();
  std::memcpy(dst, kChainBundleMagic, 8);
  Put64(dst + 8, file_bytes);
  Put32(dst + 16, static_cast<uint32_t>(chunks_.size()));
  Put32(dst + 20, static_cast<uint32_t>(links_.size()));
  Put64(dst + 24, links_offset);
  Put64(dst + 32, links_offset + kChainBundleLinkBytes * links_.size());
  Put64(dst + 40, total_bytes());
  for (size_t i = 0; i < chunks_.size(); ++i) {
    uint8_t* p = dst + kChainBundleHeaderBytes + kChainBundleChunkBytes * i;
    Put64(p, chunks_[i].file_offset);
    Put32(p + 8, chunks_[i].first_link);
    Put32(p + 12, chunks_[i].num_links);
  }
  std::string rec;
  for (size_t i = 0; i < links_.size(); ++i) {
    uint8_t* p = dst + links_offset + kChainBundleLinkBytes * i;
    rec.clear();
    SerializeChunkRecord(links_[i].record, &rec);
    std::memcpy(p, rec.data(), kChunkRecordBytes);
    Put64(p + kChunkRecordBytes, links_[i].payload_offset);
    Put64(p + kChunkRecordBytes + 8, links_[i].record.payload_bytes());
  }
}

Status ParseChainBundle(std::string_view bytes, ParsedChainBundle* out) {
  const char* b = bytes.data();
  if (bytes.size() < kChainBundleHeaderBytes || std::memcmp(b, kChainBundleMagic, 8) != 0) {
    return Status::Corruption("chain bundle: bad magic or truncated header");
  }
  ParsedChainBundle p;
  p.file_bytes = Get64(b + 8);
  const uint32_t num_chunks = Get32(b + 16);
  const uint32_t num_links = Get32(b + 20);
  const uint64_t links_offset = Get64(b + 24);
  const uint64_t payloads_offset = Get64(b + 32);
  const uint64_t total = Get64(b + 40);
  if (total != bytes.size() || links_offset != kChainBundleHeaderBytes + kChainBundleChunkBytes * num_chunks ||
      payloads_offset != links_offset + kChainBundleLinkBytes * num_links || payloads_offset > total) {
    return Status::Corruption("chain bundle: tables do not fit");
  }
  const uint64_t payload_area = total - payloads_offset;
  p.records.resize(num_links);
  p.links.resize(num_links);
  for (uint32_t i = 0; i < num_links; ++i) {
    const char* q = b + links_offset + kChainBundleLinkBytes * i;
    TPDE_RETURN_IF_ERROR(ParseChunkRecord(std::string_view(q, kChunkRecordBytes), &p.records[i]));
    const uint64_t off = Get64(q + kChunkRecordBytes);
    const uint64_t n = Get64(q + kChunkRecordBytes + 8);
    if (off > payload_area || n > payload_area - off || n != p.records[i].payload_bytes()) {
      return Status::Corruption(fmt::format("chain bundle: link {} payload out of bounds", i));
    }
    p.links[i] = {&p.records[i], std::string_view(b + payloads_offset + off, n)};
  }
  p.chunks.resize(num_chunks);
  uint64_t expect = 0;
  for (uint32_t c = 0; c < num_chunks; ++c) {
    const char* q = b + kChainBundleHeaderBytes + kChainBundleChunkBytes * c;
    BundleChunk& k = p.chunks[c];
    k.file_offset = Get64(q);
    k.first_link = Get32(q + 8);
    k.num_links = Get32(q + 12);
    if (k.num_links == 0 || k.first_link > num_links || k.num_links > num_links - k.first_link ||
        k.file_offset != expect) {
      return Status::Corruption(fmt::format("chain bundle: chunk {} out of bounds or order", c));
    }
    if (Status chain = CheckChainRequest(p.Request(c, nullptr)); !chain.ok()) {
      return Status::Corruption(fmt::format("chain bundle chunk {}: {}", c, chain.message()));
    }
    k.content_bytes = p.records[k.first_link + k.num_links - 1].content_bytes();
    expect += k.content_bytes;
  }
  if (expect != p.file_bytes) return Status::Corruption("chain bundle: chunks do not cover the file");
  *out = std::move(p);
  return Status::OK();
}

}  // namespace tpde
