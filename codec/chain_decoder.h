// ChainDecoder: reconstructs a batch of chunks from their chains.
//
// A chunk of a stored file version is reconstructed from a chain of chunk
// records: the nearest KEY chunk of its reference chain (the keyframe link)
// and every delta after it up to the chunk itself. Deltas are wrapping
// integer differences of bit patterns, so the chunk is
//
//   key + d_1 + ... + d_k   (mod 2^(8*width), element by element)
//
// whatever the modes of the deltas (DELTA_DENSE, DELTA_SPARSE, SAME). Which
// links make up a chain and where their payloads come from is the store's
// business (store/file_reader.h resolves chains and fetches payloads); a
// ChainDecoder only turns a batch of resolved chains into bytes. There are
// two implementations of this one interface:
//   - the CPU decoder here (NewCpuChainDecoder): chains on a ThreadPool, one
//     chunk buffer per chain, deltas applied in place;
//   - the GPU decoder (kernels/gpu_chain_decoder.h): zstd on CPU threads,
//     every later stage of the whole batch in one fused kernel pass.
// Both produce the same bytes, and both check every link's payload hash
// before decoding and the final chunk's content hash (which covers every
// link) before returning OK: a chunk whose status is not OK must never be
// handed to a reader, its output bytes are unspecified.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string_view>

#include "codec/chunk.h"
#include "codec/status.h"

namespace tpde {

class ThreadPool;

// One link of a chain: a chunk record and its payload, both in host memory
// and owned by the caller for the duration of the call. `payload` holds
// record->payload_bytes() bytes.
struct ChainLink {
  const ChunkRecord* record = nullptr;
  std::string_view payload;
};

// One chunk to reconstruct. links[0] is the keyframe link (mode KEY), later
// links are deltas, oldest first; links[num_links - 1] is the chunk itself.
// Every link has the same element count and width. `out_host` receives the
// chunk: links[num_links - 1].record->content_bytes() bytes of host memory,
// owned by the caller.
struct ChainRequest {
  const ChainLink* links = nullptr;
  uint32_t num_links = 0;
  uint8_t* out_host = nullptr;
};

// Checks that `request` is a well-formed chain (a KEY first, deltas after,
// element counts and widths that line up). InvalidArgument otherwise.
Status CheckChainRequest(const ChainRequest& request);

// Decodes one chain on the calling thread into request.out_host, with the
// caller's scratch.
Status DecodeChain(const ChainRequest& request, ChunkScratch* scratch);

class ChainDecoder {
 public:
  virtual ~ChainDecoder() = default;

  // "cpu" or "gpu": which path served a batch (for statistics).
  virtual const char* name() const = 0;

  // Decodes `num_in_batch` independent requests. status_out[i] (host array
  // of num_in_batch) receives request i's result: OK, InvalidArgument for a
  // malformed chain, Corruption for a payload or content hash mismatch or a
  // malformed stream. Returns OK when every request is OK, else the first
  // error. Requests must not share output bytes.
  //
  // Thread-safety: implementations are safe to call from several threads at
  // once.
  virtual Status DecodeBatch(const ChainRequest* requests, size_t num_in_batch, Status* status_out) = 0;
};

// The CPU decoder: one task per request on `pool` (not owned; must outlive
// the decoder; nullptr or a batch of one: decoded on the calling thread).
std::unique_ptr<ChainDecoder> NewCpuChainDecoder(ThreadPool* pool);

}  // namespace tpde
