/* The loader's plain C ABI (client/loader.h), for ctypes and other FFIs.
 *
 * Every function that can fail returns 0 on success or a non-zero status
 * code (the values of tpde::Status::Code: 1 not found, 2 corruption,
 * 3 invalid argument, 4 I/O error, 7 not supported, ...); the message of
 * the calling thread's last failure is tpde_last_error(). Sizes and offsets
 * are in bytes. A tpde_file may be used from several threads, but not
 * after (or while) tpde_close frees it. A NULL tpde_file is refused with
 * 3 (invalid argument); tpde_file_bytes of NULL is 0, tpde_chain_depth -1.
 */
#ifndef TPDE_CLIENT_TPDE_C_H_
#define TPDE_CLIENT_TPDE_C_H_

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

typedef struct tpde_file tpde_file;

/* Opens a committed file of a tpde mount; waits up to wait_seconds for one
 * still being written (then fails with 1, "not committed"). The file is
 * opened for reading through the mount (the kernel checks permissions) and
 * its chunks come from the daemon in shared memory of this process, held
 * until tpde_close and then kept for the next tpde_open. */
int tpde_open(const char* path, double wait_seconds, tpde_file** out);
void tpde_close(tpde_file* f);

uint64_t tpde_file_bytes(const tpde_file* f);
int tpde_chain_depth(const tpde_file* f);

/* n ranges [offsets[i], offsets[i] + sizes[i]), each on chunk boundaries,
 * into dst[i]: host memory when device < 0, else device memory of CUDA
 * device `device`, ordered after `stream` (a cudaStream_t; NULL: default). */
int tpde_read_ranges(tpde_file* f, size_t n, const uint64_t* offsets, const uint64_t* sizes, void* const* dst,
                     int device, void* stream);

/* Any range into host memory. */
int tpde_read_host(tpde_file* f, uint64_t offset, uint64_t size, void* dst);

/* Frees the bundle buffers kept for the next tpde_open (shared memory of
 * about the compressed size of the largest file loaded; see
 * LoadedFile::ReleaseBuffers in client/loader.h). */
void tpde_release_buffers(void);

/* 1 if this library was built with CUDA. */
int tpde_gpu_compiled(void);

const char* tpde_last_error(void);

#ifdef __cplusplus
}
#endif

#endif /* TPDE_CLIENT_TPDE_C_H_ */
