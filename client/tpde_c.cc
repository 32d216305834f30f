#include "client/tpde_c.h"

#include <memory>
#include <string>

#include "client/loader.h"
#include "kernels/gpu_chain_decoder.h"

struct tpde_file {
  std::unique_ptr<tpde::LoadedFile> file;
};

namespace {

thread_local std::string last_error;

int Fail(const tpde::Status& s) {
  if (s.ok()) return 0;
  last_error = s.ToString();
  return static_cast<int>(s.code());
}

int Closed() { return Fail(tpde::Status::InvalidArgument("the file is closed (a NULL tpde_file)")); }

}  // namespace

extern "C" {

int tpde_open(const char* path, double wait_seconds, tpde_file** out) {
  if (path == nullptr || out == nullptr) return Fail(tpde::Status::InvalidArgument("tpde_open: NULL argument"));
  tpde::LoaderOptions o;
  o.wait_seconds = wait_seconds;
  auto f = std::make_unique<tpde_file>();
  if (int rc = Fail(tpde::LoadedFile::Open(path, o, &f->file)); rc != 0) return rc;
  *out = f.release();
  return 0;
}

void tpde_close(tpde_file* f) { delete f; }

uint64_t tpde_file_bytes(const tpde_file* f) { return f != nullptr ? f->file->file_bytes() : 0; }
int tpde_chain_depth(const tpde_file* f) { return f != nullptr ? f->file->chain_depth() : -1; }

int tpde_read_ranges(tpde_file* f, size_t n, const uint64_t* offsets, const uint64_t* sizes, void* const* dst,
                     int device, void* stream) {
  if (f == nullptr) return Closed();
  if (n > 0 && (offsets == nullptr || sizes == nullptr || dst == nullptr)) {
    return Fail(tpde::Status::InvalidArgument("tpde_read_ranges: NULL array"));
  }
  return Fail(f->file->ReadRanges(n, offsets, sizes, dst, device, stream));
}

int tpde_read_host(tpde_file* f, uint64_t offset, uint64_t size, void* dst) {
  if (f == nullptr) return Closed();
  if (size > 0 && dst == nullptr) return Fail(tpde::Status::InvalidArgument("tpde_read_host: NULL destination"));
  return Fail(f->file->ReadHost(offset, size, dst));
}

void tpde_release_buffers(void) { tpde::LoadedFile::ReleaseBuffers(); }

int tpde_gpu_compiled(void) { return tpde::GpuSupportCompiled() ? 1 : 0; }

const char* tpde_last_error(void) { return last_error.c_str(); }

}  // extern "C"
