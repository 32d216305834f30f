// Writing an object's chunks (internal to the store): shared by ingest and
// re-base.
#pragma once

#include <rocksdb/write_batch.h>

#include <functional>

#include "store/file_reader.h"
#include "store/manifest.h"
#include "store/store_impl.h"

namespace tpde {

// Sets segments[i].ref_segment to the matching segment of `ref` (kNoSegment
// when none) and returns how many matched. Tensors match by name, dtype and
// shape; a safetensors header matches a header of the same length; other
// files match segment by segment when kind and size are equal. Matching
// segments also have equal width and chunk size.
size_t MatchSegments(FileKind kind, uint64_t file_bytes, std::vector<Segment>* segments, const Manifest& ref);

// Reads file bytes [offset, offset + size) into dst.
using SourceFn = std::function<Status(uint64_t offset, uint64_t size, uint8_t* dst)>;

// Encodes every chunk of `m` (segments set, ref_segment matched against
// `ref`, object_id and generation allocated) reading content from `source`
// and reference chunks from `ref` (nullptr: all keyframe). Fills m->chunks
// and m->file_hash. Payloads of small objects go into `commit` (lane 0);
// those of large objects are staged without the WAL into a lane held for the
// duration (m->lane) and made durable (that lane's memtable flushed) before
// this returns. Encoding runs on `pool`.
Status EncodeObject(Store::Impl* impl, ThreadPool* pool, Manifest* m, const FileReader* ref,
                    const SourceFn& source, rocksdb::WriteBatch* commit);

}  // namespace tpde
