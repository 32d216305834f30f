#include "store/object_writer.h"

#include <fmt/format.h>

#include <map>

#include "codec/checksum.h"
#include "codec/thread_pool.h"
#include "store/keys.h"
#include "store/rocks_status.h"

namespace tpde {

namespace {
// Objects up to this size commit their payloads in the commit batch (WAL);
// larger ones are staged without the WAL and flushed.
constexpr uint64_t kStageThresholdBytes = 8ull << 20;

bool SameGeometry(const Segment& a, const Segment& b) {
  return a.width == b.width && a.num_elements == b.num_elements && a.chunk_elems == b.chunk_elems;
}
}  // namespace

size_t MatchSegments(FileKind kind, uint64_t file_bytes, std::vector<Segment>* segments, const Manifest& ref) {
  size_t matched = 0;
  for (auto& s : *segments) s.ref_segment = kNoSegment;
  if (kind == FileKind::kSafetensors && ref.kind == FileKind::kSafetensors) {
    std::map<std::string_view, uint32_t> by_name;
    for (uint32_t i = 1; i < ref.segments.size(); ++i) by_name.emplace(ref.segments[i].name, i);
    for (uint32_t i = 0; i < segments->size(); ++i) {
      Segment& s = (*segments)[i];
      uint32_t r = kNoSegment;
      if (i == 0) {
        r = 0;  // the header
      } else if (auto it = by_name.find(s.name); it != by_name.end()) {
        r = it->second;
      }
      if (r == kNoSegment || r >= ref.segments.size()) continue;
      const Segment& rs = ref.segments[r];
      if (SameGeometry(s, rs) && rs.dtype == s.dtype && rs.shape == s.shape) {
        s.ref_segment = r;
        ++matched;
      }
    }
  } else if (kind == ref.kind && file_bytes == ref.file_bytes && segments->size() == ref.segments.size()) {
    for (uint32_t i = 0; i < segments->size(); ++i) {
      if (SameGeometry((*segments)[i], ref.segments[i])) {
        (*segments)[i].ref_segment = i;
        ++matched;
      }
    }
  }
  return matched;
}

Status EncodeObject(Store::Impl* impl, ThreadPool* thread_pool, Manifest* m, const FileReader* ref,
                    const SourceFn& source, rocksdb::WriteBatch* commit) {
  const StoreOptions& opt = impl->options;
  ThreadPool& pool = *thread_pool;
  const bool staged = m->file_bytes > kStageThresholdBytes;
  m->lane = staged ? impl->catalog->AcquireLane() : 0;
  struct LaneLease {
    Store::Impl* impl;
    uint8_t lane;
    ~LaneLease() {
      if (lane != 0) impl->catalog->ReleaseLane(lane);
    }
  } lease{impl, m->lane};
  rocksdb::ColumnFamilyHandle* lane_cf = impl->catalog->lanes()[m->lane];

  // The flat chunk index, in file order.
  m->chunks.assign(CountChunks(m->segments), ChunkRecord());
  for (uint32_t si = 0; si < m->segments.size(); ++si) {
    const Segment& s = m->segments[si];
    for (uint32_t k = 0; k < s.num_chunks(); ++k) {
      ChunkRecord& c = m->chunks[s.first_chunk + k];
      c.segment = si;
      c.width = s.width;
      c.elem_begin = uint64_t{k} * s.chunk_elems;
      c.elem_count = static_cast<uint32_t>(std::min<uint64_t>(s.chunk_elems, s.num_elements - c.elem_begin));
    }
  }

  StreamingChecksum file_sum;
  std::vector<uint8_t> cur;
  std::vector<std::string> payloads;
  uint64_t payload_offset = 0;
  const uint32_t n = static_cast<uint32_t>(m->chunks.size());
  for (uint32_t c = 0; c < n;) {
    const uint32_t first = c;
    const uint64_t begin = m->chunk_file_offset(first);
    uint64_t bytes = 0;
    while (c < n && (c == first || bytes + m->chunks[c].content_bytes() <= opt.batch_bytes)) {
      bytes += m->chunks[c].content_bytes();
      ++c;
    }
    cur.resize(bytes);
    TPDE_RETURN_IF_ERROR(source(begin, bytes, cur.data()));
    file_sum.Update(cur.data(), bytes);
    payloads.resize(c - first);
    pool.ParallelFor(c - first, [&](size_t i) {
      struct Worker {
        ChunkScratch scratch;
        std::vector<uint8_t> ref_buf;
      };
      thread_local Worker wk;
      ChunkRecord& rec = m->chunks[first + i];
      const Segment& seg = m->segments[rec.segment];
      const uint8_t* ref_bytes = nullptr;
      if (ref != nullptr && seg.ref_segment != kNoSegment) {
        wk.ref_buf.resize(rec.content_bytes());
        // A reference chunk that fails to decode is not used: this chunk
        // becomes a keyframe chunk and the new file stays sound.
        if (ref->ReadSegmentChunk(seg.ref_segment, static_cast<uint32_t>(rec.elem_begin / seg.chunk_elems),
                                  wk.ref_buf.data(), &wk.scratch)
                .ok()) {
          ref_bytes = wk.ref_buf.data();
        }
      }
      const uint8_t* cur_bytes = cur.data() + (m->chunk_file_offset(first + static_cast<uint32_t>(i)) - begin);
      EncodeChunk(cur_bytes, ref_bytes, rec.elem_count, rec.width, opt.encode, &wk.scratch, &rec, &payloads[i]);
    });
    rocksdb::WriteBatch stage;
    for (uint32_t i = 0; i < c - first; ++i) {
      ChunkRecord& rec = m->chunks[first + i];
      rec.payload_offset = payload_offset;
      payload_offset += payloads[i].size();
      if (payloads[i].empty()) continue;
      (staged ? stage : *commit).Put(lane_cf, keys::Chunk(m->object_id, m->generation, first + i), payloads[i]);
    }
    if (staged && stage.Count() > 0) {
      rocksdb::WriteOptions wo;
      wo.disableWAL = true;
      TPDE_RETURN_IF_ERROR(impl->write_guard->Run("staging chunks", [&] { return impl->db->Write(wo, &stage); }));
    }
  }
  m->file_hash = file_sum.Digest();
  if (staged) {
    rocksdb::FlushOptions fo;
    fo.wait = true;
    TPDE_RETURN_IF_ERROR(impl->write_guard->Run("flushing staged chunks", [&] { return impl->db->Flush(fo, lane_cf); }));
  }
  return Status::OK();
}

}  // namespace tpde
