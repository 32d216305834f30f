// Checksums: XXH3-64 (https://github.com/Cyan4973/xxHash, doc/xxhash_spec.md)
// with seed 0, over bytes. Used for every chunk (payload and decoded
// content) and every whole file. Streaming form for whole files.
#pragma once

#include <cstddef>
#include <cstdint>

namespace tpde {

uint64_t Checksum(const void* data, size_t size_bytes);

// Incremental XXH3-64 over a byte stream; result equals Checksum() of the
// concatenation. Not thread-safe; one per stream.
class StreamingChecksum {
 public:
  StreamingChecksum();
  ~StreamingChecksum();
  StreamingChecksum(const StreamingChecksum&) = delete;
  StreamingChecksum& operator=(const StreamingChecksum&) = delete;

  void Update(const void* data, size_t size_bytes);
  uint64_t Digest() const;

 private:
  void* state_;  // XXH3_state_t*
};

}  // namespace tpde
