#include "store/file_reader.h"

#include <fmt/format.h>
#include <rocksdb/db.h>

#include <algorithm>
#include <atomic>
#include <cstring>

#include "codec/checksum.h"
#include "codec/thread_pool.h"
#include "store/keys.h"

namespace tpde {

FileReader::FileReader(rocksdb::DB* db, const ChunkLanes* lanes, const rocksdb::Snapshot* snapshot,
                       std::vector<std::shared_ptr<const Manifest>> chain, ThreadPool* pool,
                       ChainDecoder* decoder)
    : db_(db), lanes_(lanes), snapshot_(snapshot), chain_(std::move(chain)), pool_(pool), decoder_(decoder) {}

FileReader::~FileReader() {
  if (snapshot_ != nullptr) db_->ReleaseSnapshot(snapshot_);
}

Status FileReader::LoadPayload(const Manifest& m, uint32_t c, std::string* payload) const {
  payload->clear();
  if (m.chunks[c].payload_bytes() == 0) return Status::OK();
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot_;
  // The payload's XXH3 in the chunk record is checked before decoding
  // (DecodeChunk), so RocksDB's own CRC32C of the blob would check the same
  // bytes twice (and Debian's build computes it without SSE4.2).
  ro.verify_checksums = false;
  rocksdb::Status s = db_->Get(ro, (*lanes_)[m.lane], keys::Chunk(m.object_id, m.generation, c), payload);
  if (s.IsNotFound()) {
    return Status::Corruption(fmt::format("object {} chunk {}: payload missing", m.object_id, c));
  }
  if (!s.ok()) return Status::IOError(fmt::format("object {} chunk {}: {}", m.object_id, c, s.ToString()));
  // A payload of another length is damaged: caught here, before it is laid
  // into a bundle at the record's offsets or handed to a decoder.
  if (payload->size() != m.chunks[c].payload_bytes()) {
    return Status::Corruption(fmt::format("object {} chunk {}: payload of {} bytes, its record says {}", m.object_id,
                                          c, payload->size(), m.chunks[c].payload_bytes()));
  }
  return Status::OK();
}

Status FileReader::ResolveChain(uint32_t segment, uint32_t k, std::vector<Link>* links) const {
  // Walk the chain back to the nearest KEY chunk, remembering each link.
  links->clear();
  const Manifest* m = chain_[0].get();
  uint32_t seg = segment;
  if (seg >= m->segments.size() || k >= m->segments[seg].num_chunks()) {
    return Status::InvalidArgument(fmt::format("object {}: no chunk {} in segment {}", m->object_id, k, seg));
  }
  const uint32_t elem_count = m->chunks[m->segments[seg].first_chunk + k].elem_count;
  for (size_t level = 0;; ++level) {
    const Segment& s = m->segments[seg];
    const uint32_t c = s.first_chunk + k;
    const ChunkRecord& rec = m->chunks[c];
    if (rec.elem_count != elem_count || links->size() == kMaxLinks) {
      return Status::Corruption(fmt::format("object {} chunk {}: chain does not line up", m->object_id, c));
    }
    links->push_back({m, c});
    if (rec.mode == ChunkMode::kKey) break;
    if (level + 1 >= chain_.size() || s.ref_segment == kNoSegment) {
      return Status::Corruption(fmt::format("object {} chunk {}: delta without reference", m->object_id, c));
    }
    const Manifest* ref = chain_[level + 1].get();
    if (s.ref_segment >= ref->segments.size() || ref->segments[s.ref_segment].chunk_elems != s.chunk_elems ||
        ref->segments[s.ref_segment].width != s.width ||
        ref->segments[s.ref_segment].num_elements != s.num_elements) {
      return Status::Corruption(
          fmt::format("object {} segment {}: reference segment does not match", m->object_id, seg));
    }
    seg = s.ref_segment;
    m = ref;
  }
  std::reverse(links->begin(), links->end());  // keyframe first
  return Status::OK();
}

Status FileReader::FetchChain(uint32_t c, FetchedChain* out) const {
  const Manifest& m = *chain_[0];
  if (c >= m.chunks.size()) return Status::InvalidArgument("chunk index out of range");
  const uint32_t segment = m.chunks[c].segment;
  TPDE_RETURN_IF_ERROR(ResolveChain(segment, c - m.segments[segment].first_chunk, &out->links));
  out->payloads.resize(out->links.size());
  out->chain_links.resize(out->links.size());
  for (size_t i = 0; i < out->links.size(); ++i) {
    const Link& l = out->links[i];
    TPDE_RETURN_IF_ERROR(LoadPayload(*l.m, l.chunk, &out->payloads[i]));
    out->chain_links[i] = {&l.m->chunks[l.chunk], out->payloads[i]};
  }
  return Status::OK();
}

Status FileReader::BundleLayout(ChainBundleLayout* layout) const {
  const Manifest& m = *chain_[0];
  std::vector<Link> links;
  std::vector<const ChunkRecord*> records;
  for (uint32_t c = 0; c < m.chunks.size(); ++c) {
    const uint32_t segment = m.chunks[c].segment;
    TPDE_RETURN_IF_ERROR(ResolveChain(segment, c - m.segments[segment].first_chunk, &links));
    records.clear();
    for (const Link& l : links) records.push_back(&l.m->chunks[l.chunk]);
    layout->AddChunk(m.chunk_file_offset(c), records.data(), static_cast<uint32_t>(records.size()));
  }
  return Status::OK();
}

Status FileReader::WriteBundle(const ChainBundleLayout& layout, const BundleSink& write, ThreadPool* pool,
                               const ChunkWritten& written) const {
  TPDE_RETURN_IF_ERROR(WriteBundleTables(layout, write));
  return WriteBundlePayloads(layout, write, pool, written);
}

Status FileReader::WriteBundleTables(const ChainBundleLayout& layout, const BundleSink& write) const {
  std::vector<uint8_t> tables(layout.tables_bytes());
  layout.WriteTables(chain_[0]->file_bytes, tables.data());
  return write(0, tables.data(), tables.size());
}

Status FileReader::WriteBundlePayloads(const ChainBundleLayout& layout, const BundleSink& write, ThreadPool* pool,
                                       const ChunkWritten& written) const {
  const size_t n = layout.num_chunks();
  std::vector<Status> statuses(n);
  std::atomic<bool> failed{false};
  auto fetch = [&](size_t c) {
    if (failed.load(std::memory_order_relaxed)) return;
    FetchedChain chain;
    Status s = FetchChain(static_cast<uint32_t>(c), &chain);
    for (uint32_t l = 0; s.ok() && l < chain.payloads.size(); ++l) {
      const std::string& p = chain.payloads[l];
      if (!p.empty()) s = write(layout.PayloadOffset(static_cast<uint32_t>(c), l), p.data(), p.size());
    }
    if (s.ok() && written) s = written(static_cast<uint32_t>(c));
    if (!s.ok()) failed.store(true, std::memory_order_relaxed);
    statuses[c] = std::move(s);
  };
  if (pool == nullptr) pool = pool_;
  if (pool != nullptr) {
    pool->ParallelFor(n, fetch);
  } else {
    for (size_t c = 0; c < n; ++c) fetch(c);
  }
  for (size_t c = 0; c < statuses.size(); ++c) {
    if (!statuses[c].ok()) return statuses[c];  // its messages name the object and chunk
  }
  return Status::OK();
}

Status FileReader::ReadSegmentChunk(uint32_t segment, uint32_t k, uint8_t* buf, ChunkScratch* scratch) const {
  const Manifest& m = *chain_[0];
  if (segment >= m.segments.size() || k >= m.segments[segment].num_chunks()) {
    return Status::InvalidArgument(fmt::format("object {}: no chunk {} in segment {}", m.object_id, k, segment));
  }
  const uint32_t c = m.segments[segment].first_chunk + k;
  FetchedChain chain;
  TPDE_RETURN_IF_ERROR(FetchChain(c, &chain));
  const ChainRequest request{chain.chain_links.data(), static_cast<uint32_t>(chain.chain_links.size()), buf};
  Status s = DecodeChain(request, scratch);
  if (!s.ok()) return s.WithContext(fmt::format("object {} chunk {}", m.object_id, c));
  return Status::OK();
}

Status FileReader::ReadChunks(const uint32_t* chunks, size_t n, uint8_t* const* out, ChainDecoder* decoder,
                              ThreadPool* pool) const {
  const Manifest& m = *chain_[0];
  std::vector<FetchedChain> fetched(n);
  std::vector<Status> statuses(n);
  // Resolve and fetch on the pool (payload reads are I/O on a cold store),
  // then decode the whole batch in one call.
  auto fetch = [&](size_t i) { statuses[i] = FetchChain(chunks[i], &fetched[i]); };
  if (pool != nullptr && n > 1) {
    pool->ParallelFor(n, fetch);
  } else {
    for (size_t i = 0; i < n; ++i) fetch(i);
  }
  for (size_t i = 0; i < n; ++i) {
    if (!statuses[i].ok()) return statuses[i].WithContext(fmt::format("object {} chunk {}", m.object_id, chunks[i]));
  }
  std::vector<ChainRequest> requests(n);
  for (size_t i = 0; i < n; ++i) {
    requests[i] = {fetched[i].chain_links.data(), static_cast<uint32_t>(fetched[i].chain_links.size()), out[i]};
  }
  decoder->DecodeBatch(requests.data(), n, statuses.data());
  for (size_t i = 0; i < n; ++i) {
    if (!statuses[i].ok()) return statuses[i].WithContext(fmt::format("object {} chunk {}", m.object_id, chunks[i]));
  }
  return Status::OK();
}

Status FileReader::ReadChunk(uint32_t c, uint8_t* buf, ChunkScratch* scratch) const {
  const Manifest& m = *chain_[0];
  if (c >= m.chunks.size()) return Status::InvalidArgument("chunk index out of range");
  const ChunkRecord& rec = m.chunks[c];
  return ReadSegmentChunk(rec.segment, c - m.segments[rec.segment].first_chunk, buf, scratch);
}

Status FileReader::Read(uint64_t offset, uint64_t size, uint8_t* out, uint64_t* read_bytes,
                        ChunkScratch* scratch) const {
  const Manifest& m = *chain_[0];
  *read_bytes = 0;
  if (offset >= m.file_bytes || size == 0) return Status::OK();
  size = std::min(size, m.file_bytes - offset);
  std::vector<uint8_t> buf;
  uint64_t done = 0;
  for (uint32_t c = m.ChunkAt(offset); done < size && c < m.chunks.size(); ++c) {
    const uint64_t begin = m.chunk_file_offset(c);
    const uint64_t bytes = m.chunks[c].content_bytes();
    const uint64_t from = offset + done - begin;
    const uint64_t n = std::min(bytes - from, size - done);
    if (from == 0 && n == bytes) {
      TPDE_RETURN_IF_ERROR(ReadChunk(c, out + done, scratch));  // whole chunk: decode in place
    } else {
      buf.resize(bytes);
      TPDE_RETURN_IF_ERROR(ReadChunk(c, buf.data(), scratch));
      std::memcpy(out + done, buf.data() + from, n);
    }
    done += n;
  }
  *read_bytes = done;
  return Status::OK();
}

Status FileReader::ReadChunksParallel(uint64_t offset, uint64_t size, uint8_t* out, ThreadPool* pool) const {
  const Manifest& m = *chain_[0];
  if (size == 0) return Status::OK();
  if (offset + size > m.file_bytes) return Status::InvalidArgument("read past the end of the file");
  const uint32_t first = m.ChunkAt(offset);
  const uint32_t last = m.ChunkAt(offset + size - 1);
  if (m.chunk_file_offset(first) != offset ||
      m.chunk_file_offset(last) + m.chunks[last].content_bytes() != offset + size) {
    return Status::InvalidArgument("parallel read not on chunk boundaries");
  }
  if (decoder_ != nullptr) {
    std::vector<uint32_t> chunks(last - first + 1);
    std::vector<uint8_t*> outs(chunks.size());
    for (size_t i = 0; i < chunks.size(); ++i) {
      chunks[i] = first + static_cast<uint32_t>(i);
      outs[i] = out + (m.chunk_file_offset(chunks[i]) - offset);
    }
    return ReadChunks(chunks.data(), chunks.size(), outs.data(), decoder_, pool);
  }
  std::vector<Status> errors(last - first + 1);
  pool->ParallelFor(errors.size(), [&](size_t i) {
    thread_local ChunkScratch scratch;
    const uint32_t c = first + static_cast<uint32_t>(i);
    errors[i] = ReadChunk(c, out + (m.chunk_file_offset(c) - offset), &scratch);
  });
  for (const auto& e : errors) TPDE_RETURN_IF_ERROR(e);
  return Status::OK();
}

Status FileReader::DecodeAll(uint64_t batch_bytes, const std::function<Status(const uint8_t*, size_t)>& sink) const {
  const Manifest& m = *chain_[0];
  StreamingChecksum file_sum;
  std::vector<uint8_t> buf;
  uint32_t c = 0;
  while (c < m.chunks.size()) {
    // A batch of whole chunks, at least one.
    const uint32_t first = c;
    const uint64_t begin = m.chunk_file_offset(first);
    uint64_t bytes = 0;
    while (c < m.chunks.size() && (c == first || bytes + m.chunks[c].content_bytes() <= batch_bytes)) {
      bytes += m.chunks[c].content_bytes();
      ++c;
    }
    buf.resize(bytes);
    TPDE_RETURN_IF_ERROR(ReadChunksParallel(begin, bytes, buf.data(), pool_));
    file_sum.Update(buf.data(), bytes);
    TPDE_RETURN_IF_ERROR(sink(buf.data(), bytes));
  }
  if (file_sum.Digest() != m.file_hash) {
    return Status::Corruption(fmt::format("object {}: whole-file checksum mismatch", m.object_id));
  }
  return Status::OK();
}

}  // namespace tpde
