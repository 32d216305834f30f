#include "client/loader.h"

#include <fmt/format.h>
#include <libmount/libmount.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <map>
#include <mutex>
#include <nlohmann/json.hpp>
#include <thread>
#include <type_traits>
#include <vector>

#include "codec/chain_bundle.h"
#include "codec/chain_decoder.h"
#include "codec/thread_annotations.h"
#include "codec/thread_pool.h"
#include "daemon/control_socket.h"
#include "daemon/unique_fd.h"
#include "kernels/gpu_chain_decoder.h"

namespace tpde {

namespace {

using Json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// TPDE_LOADER_TRACE=1: one line per phase on stderr (where a load's time goes).
bool Tracing() {
  static const bool on = std::getenv("TPDE_LOADER_TRACE") != nullptr;
  return on;
}
void Trace(const char* what, Clock::time_point since, uint64_t bytes) {
  if (!Tracing()) return;
  const double s = std::chrono::duration<double>(Clock::now() - since).count();
  fmt::print(stderr, "tpde loader: {:<28} {:8.1f} ms  {:7.2f} GB/s\n", what, s * 1e3, bytes / s / 1e9);
}

// The tpde mount holding `path`: its mount point and store directory.
Status FindMount(const std::string& path, std::string* mount_point, std::string* store) {
  std::error_code ec;
  const std::string real = std::filesystem::weakly_canonical(std::filesystem::absolute(path), ec).string();
  if (ec) return Status::InvalidArgument(fmt::format("'{}': {}", path, ec.message()));
  libmnt_table* table = mnt_new_table();
  if (table == nullptr || mnt_table_parse_file(table, "/proc/self/mountinfo") != 0) {
    mnt_unref_table(table);
    return Status::IOError("cannot read /proc/self/mountinfo");
  }
  Status s = Status::InvalidArgument(fmt::format("'{}' is not in a tpde mount", path));
  // The mount of the nearest existing ancestor (a missing file is reported
  // by the daemon as missing, not as outside the mount).
  std::filesystem::path probe = real;
  while (!std::filesystem::exists(probe, ec) && probe.has_parent_path() && probe != probe.parent_path()) {
    probe = probe.parent_path();
  }
  if (libmnt_fs* fs = mnt_table_find_mountpoint(table, probe.c_str(), MNT_ITER_BACKWARD); fs != nullptr) {
    const char* type = mnt_fs_get_fstype(fs);
    const char* source = mnt_fs_get_source(fs);
    if (type != nullptr && std::strcmp(type, "fuse.tpde") == 0 && source != nullptr &&
        std::strncmp(source, "tpde:", 5) == 0) {
      *mount_point = mnt_fs_get_target(fs);
      *store = source + 5;
      s = Status::OK();
    }
  }
  mnt_unref_table(table);
  return s;
}

// A field of the daemon's reply, of the expected type (or `fallback`):
// never an exception out of the library.
template <typename T>
T Field(const Json& j, const char* key, T fallback) {
  auto it = j.find(key);
  if (it == j.end()) return fallback;
  if constexpr (std::is_same_v<T, bool>) {
    return it->is_boolean() ? it->get<bool>() : fallback;
  } else if constexpr (std::is_same_v<T, std::string>) {
    return it->is_string() ? it->get<std::string>() : fallback;
  } else {
    return it->is_number_integer() ? it->get<T>() : fallback;
  }
}

// The most descriptors a reply may pass (the daemon passes at most one).
constexpr size_t kMaxReplyFds = 4;

// A connection to the daemon's control socket (daemon/control_protocol.h):
// one request, then reply lines (one, or a streamed bundle's progress).
class ControlConnection {
 public:
  Status Connect(const std::string& socket_path) {
    sock_.reset(ConnectControlSocket(socket_path));
    if (sock_.get() >= 0) return Status::OK();
    const int err = errno;
    if (err == ENAMETOOLONG) return Status::InvalidArgument(fmt::format("control socket path too long: {}", socket_path));
    if (err == EACCES) return Status::IOError(fmt::format("permission denied on the control socket {}", socket_path));
    return Status::IOError(
        fmt::format("the tpde daemon is not running (no answer on {}: {})", socket_path, std::strerror(err)));
  }

  // The request, with `send` (descriptors) on its first byte.
  Status Send(const Json& request, const std::vector<int>& send) {
    if (!SendWithFds(sock_.get(), request.dump() + "\n", send)) {
      return Status::IOError(fmt::format("control socket: {}", std::strerror(errno)));
    }
    return Status::OK();
  }

  // The next reply line, a JSON object. IOError if the daemon closed the
  // connection first. The loader passes its own buffers, so no descriptor
  // should come back; any that does is closed.
  Status ReadLine(Json* reply) {
    char buf[65536];
    while (text_.find('\n') == std::string::npos) {
      std::vector<UniqueFd> unexpected;
      const ssize_t n = RecvWithFds(sock_.get(), buf, sizeof(buf), kMaxReplyFds, &unexpected);
      if (n <= 0) return Status::IOError("the tpde daemon closed the connection mid-reply");
      text_.append(buf, static_cast<size_t>(n));
    }
    const size_t end = text_.find('\n');
    *reply = Json::parse(text_.substr(0, end), nullptr, /*allow_exceptions=*/false);
    text_.erase(0, end + 1);
    if (reply->is_discarded() || !reply->is_object()) return Status::IOError("malformed reply from the tpde daemon");
    return Status::OK();
  }

 private:
  UniqueFd sock_;
  std::string text_;  // received, not yet returned
};

// Bundle buffers the daemon writes into (daemon/control_protocol.h
// "bundle" with buffers): memfds of this process, their 1 MiB blocks mapped
// in bundle order (codec/chain_bundle.h, BundleBufferSpot) read-only once,
// and reused by later loads. A fresh memfd costs a page allocation per
// 4 KiB (the daemon's share of a first load); a reused one costs only the
// copy, with no page faults on either side.
class BundleArena {
 public:
  // Room for at least `capacity` bytes in `buffers` memfds (pages are
  // allocated as the daemon writes them).
  static Status Create(uint64_t capacity, size_t buffers, std::unique_ptr<BundleArena>* out) {
    auto a = std::unique_ptr<BundleArena>(new BundleArena);
    a->buffer_bytes_ = BundleBufferBytes(std::max<uint64_t>(capacity, 1), buffers);
    a->bytes_ = a->buffer_bytes_ * buffers;
    void* range = ::mmap(nullptr, a->bytes_, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (range == MAP_FAILED) return Status::IOError(fmt::format("bundle buffers: {}", std::strerror(errno)));
    a->map_ = static_cast<uint8_t*>(range);
    for (size_t i = 0; i < buffers; ++i) {
      a->fds_.emplace_back(::memfd_create("tpde-bundle", MFD_CLOEXEC));
      const int fd = a->fds_.back().get();
      if (fd < 0 || ::ftruncate(fd, static_cast<off_t>(a->buffer_bytes_)) != 0) {
        return Status::IOError(fmt::format("bundle buffers of {} bytes: {}", a->bytes_, std::strerror(errno)));
      }
    }
    for (uint64_t at = 0; at < a->bytes_; at += kBundleBlockBytes) {
      const BundleSpot spot = BundleBufferSpot(at, buffers);
      if (::mmap(a->map_ + at, kBundleBlockBytes, PROT_READ, MAP_SHARED | MAP_FIXED, a->fds_[spot.buffer].get(),
                 static_cast<off_t>(spot.offset)) == MAP_FAILED) {
        return Status::IOError(fmt::format("mapping bundle buffers of {} bytes: {}", a->bytes_, std::strerror(errno)));
      }
    }
    *out = std::move(a);
    return Status::OK();
  }
  ~BundleArena() {
    if (map_ != nullptr) ::munmap(map_, bytes_);
  }
  uint64_t capacity() const { return bytes_; }
  const uint8_t* data() const { return map_; }
  std::vector<int> fds() const {
    std::vector<int> v;
    for (const auto& f : fds_) v.push_back(f.get());
    return v;
  }

 private:
  BundleArena() = default;
  std::vector<UniqueFd> fds_;
  uint64_t buffer_bytes_ = 0, bytes_ = 0;
  uint8_t* map_ = nullptr;
};

// Process-wide decoding resources: one CPU pool, one GPU decoder per device
// (its pinned buffers are allocated once).
struct Shared {
  std::mutex mu;
  std::unique_ptr<ThreadPool> pool;
  std::map<int, std::unique_ptr<GpuChainDecoder>> gpus;
  std::map<int, Status> gpu_errors;
  // Bundle buffers of closed files, for the next load: the largest is kept.
  std::unique_ptr<BundleArena> idle_arena;

  std::unique_ptr<BundleArena> TakeArena() {
    std::lock_guard<std::mutex> lock(mu);
    return std::move(idle_arena);
  }
  void ReturnArena(std::unique_ptr<BundleArena> a) {
    std::lock_guard<std::mutex> lock(mu);
    if (!idle_arena || idle_arena->capacity() < a->capacity()) idle_arena = std::move(a);
  }
  void DropArenas() {
    std::unique_ptr<BundleArena> gone;
    std::lock_guard<std::mutex> lock(mu);
    gone = std::move(idle_arena);
  }

  ThreadPool* Pool(size_t threads) {
    std::lock_guard<std::mutex> lock(mu);
    if (!pool) pool = std::make_unique<ThreadPool>(threads);
    return pool.get();
  }
  Status Gpu(int device, ThreadPool* p, GpuChainDecoder** out) {
    std::lock_guard<std::mutex> lock(mu);
    if (auto it = gpus.find(device); it != gpus.end()) {
      *out = it->second.get();
      return Status::OK();
    }
    if (auto it = gpu_errors.find(device); it != gpu_errors.end()) return it->second;
    GpuDecoderOptions o;
    o.device = device;
    o.pool = p;
    // Smaller than the daemon's: the pinned buffers are allocated in the
    // caller's process, at its first GPU load (2 x 128 MiB).
    o.batch_bytes = 32u << 20;
    o.staging_bytes = 96u << 20;
    std::unique_ptr<GpuChainDecoder> d;
    Status s = GpuChainDecoder::Open(o, &d);
    if (!s.ok()) {
      gpu_errors[device] = s;
      return s;
    }
    *out = d.get();
    gpus[device] = std::move(d);
    return Status::OK();
  }
};

Shared& TheShared() {
  static Shared* shared = new Shared;  // never destroyed: decoders may be in use at exit
  return *shared;
}

}  // namespace

struct LoadedFile::Impl {
  LoaderOptions options;
  std::unique_ptr<BundleArena> arena;  // holds the bundle; back to the pool on close
  ParsedChainBundle bundle;
  int chain_depth = 0;

  // The daemon streams the payloads after the tables: chunks [0, ready)
  // are in the arena. The connection stays open until "done".
  std::mutex stream_mu;
  std::unique_ptr<ControlConnection> stream TPDE_GUARDED_BY(stream_mu);  // null once done
  uint32_t ready TPDE_GUARDED_BY(stream_mu) = 0;
  Status stream_error TPDE_GUARDED_BY(stream_mu);
  Clock::time_point opened;
  uint64_t bundle_bytes = 0;

  ~Impl() {
    // Buffers the daemon may still be writing into are never reused: the
    // daemon stops at its next progress line (the connection is closed) and
    // drops its references; the pages go with the last one.
    if (arena && !stream) TheShared().ReturnArena(std::move(arena));
  }

  // Waits until chunks [0, end) are in the arena (or the fill failed).
  Status WaitReady(uint32_t end) {
    std::lock_guard<std::mutex> lock(stream_mu);
    while (ready < end && stream_error.ok()) {
      Json line;
      Status s = stream ? stream->ReadLine(&line) : Status::IOError("bundle stream ended early");
      if (s.ok() && !Field(line, "ok", true)) {
        s = Status::IOError(fmt::format("the tpde daemon failed the bundle: {}",
                                        Field(line, "error", std::string("unknown error"))));
      }
      if (!s.ok()) {
        stream_error = s;
        break;
      }
      const uint64_t r = Field(line, "ready", uint64_t{0});
      ready = static_cast<uint32_t>(std::min<uint64_t>(std::max<uint64_t>(ready, r), bundle.chunks.size()));
      if (Field(line, "done", false)) {
        if (ready != bundle.chunks.size()) stream_error = Status::IOError("bundle stream ended early");
        stream.reset();
        Trace("bundle payloads all in", opened, bundle_bytes);
      }
    }
    return stream_error;
  }

  // The chunk that starts at `offset` (InvalidArgument if none does).
  Status ChunkAt(uint64_t offset, uint32_t* c) const {
    auto it = std::lower_bound(bundle.chunks.begin(), bundle.chunks.end(), offset,
                               [](const BundleChunk& k, uint64_t off) { return k.file_offset < off; });
    if (it == bundle.chunks.end() || it->file_offset != offset) {
      return Status::InvalidArgument(fmt::format("offset {} is not on a chunk boundary", offset));
    }
    *c = static_cast<uint32_t>(it - bundle.chunks.begin());
    return Status::OK();
  }
};

LoadedFile::LoadedFile(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
LoadedFile::~LoadedFile() = default;

void LoadedFile::ReleaseBuffers() { TheShared().DropArenas(); }

uint64_t LoadedFile::file_bytes() const { return impl_->bundle.file_bytes; }
int LoadedFile::chain_depth() const { return impl_->chain_depth; }

Status LoadedFile::Open(const std::string& path, const LoaderOptions& options, std::unique_ptr<LoadedFile>* out) {
  std::string mount_point, store;
  TPDE_RETURN_IF_ERROR(FindMount(path, &mount_point, &store));
  const char* env = std::getenv("TPDE_CONTROL_SOCKET");
  const std::string socket_path = env != nullptr ? env : (std::filesystem::path(store) / "control.sock").string();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(options.wait_seconds);
  Json reply;
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->arena = TheShared().TakeArena();
  const size_t buffers = std::clamp<size_t>(std::thread::hardware_concurrency(), 1, kMaxBundleBuffers);
  uint64_t want = 0;
  int resized = 0;
  auto t0 = Clock::now();
  while (true) {
    // The file, opened for reading through the mount, goes with the request:
    // the kernel checks our permissions at this open, and the daemon serves
    // the inode it names (a rename meanwhile cannot swap files).
    UniqueFd file(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    struct stat st;
    if (file.get() < 0 || ::fstat(file.get(), &st) != 0) {
      const int err = errno;
      if (err == ENOENT) return Status::NotFound(fmt::format("'{}': no such file", path));
      return Status::IOError(fmt::format("'{}': {}", path, std::strerror(err)));
    }
    // Room for the file's compressed chunks and tables; a deeper chain may
    // need more, which the daemon says (need_bytes).
    want = std::max<uint64_t>(want, static_cast<uint64_t>(st.st_size) + (static_cast<uint64_t>(st.st_size) >> 4) +
                                        (4u << 20));
    if (!impl->arena || impl->arena->capacity() < want) {
      impl->arena.reset();
      TPDE_RETURN_IF_ERROR(BundleArena::Create(want, buffers, &impl->arena));
    }
    std::vector<int> send = {file.get()};
    for (int fd : impl->arena->fds()) send.push_back(fd);
    auto conn = std::make_unique<ControlConnection>();
    TPDE_RETURN_IF_ERROR(conn->Connect(socket_path));
    TPDE_RETURN_IF_ERROR(conn->Send(Json{{"cmd", "bundle"}, {"path", path}, {"stream", true}}, send));
    TPDE_RETURN_IF_ERROR(conn->ReadLine(&reply));  // passes buffers: no descriptor comes back
    if (Field(reply, "ok", false) && Field(reply, "streaming", false)) impl->stream = std::move(conn);
    if (Field(reply, "ok", false)) break;
    const std::string error = Field(reply, "error", std::string("unknown error"));
    if (const uint64_t need = Field(reply, "need_bytes", uint64_t{0}); need > 0 && resized++ < 3) {
      want = need;
      continue;
    }
    if (Field(reply, "not_committed", false)) {
      if (std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(50));
        continue;
      }
      return Status::NotFound(fmt::format("{} (waited {} s)", error, options.wait_seconds));
    }
    if (Field(reply, "code", 0) == static_cast<int>(Status::Code::kNotFound)) {
      return Status::NotFound(fmt::format("'{}': no such file in the store", path));
    }
    return Status::IOError(fmt::format("'{}': {}", path, error));
  }
  const uint64_t bundle_bytes = Field(reply, "bundle_bytes", uint64_t{0});
  if (bundle_bytes == 0 || bundle_bytes > impl->arena->capacity()) {
    return Status::IOError("the tpde daemon answered with a bundle size that does not fit its buffers");
  }
  Trace(impl->stream ? "bundle tables from the daemon" : "bundle from the daemon", t0, bundle_bytes);
  impl->opened = t0;
  impl->bundle_bytes = bundle_bytes;
  t0 = Clock::now();
  impl->chain_depth = Field(reply, "chain_depth", 0);
  // The tables are written (streamed or not); only payload views are taken.
  TPDE_RETURN_IF_ERROR(ParseChainBundle(
      std::string_view(reinterpret_cast<const char*>(impl->arena->data()), bundle_bytes), &impl->bundle));
  if (!impl->stream) impl->ready = static_cast<uint32_t>(impl->bundle.chunks.size());
  Trace("bundle parsed", t0, bundle_bytes);
  out->reset(new LoadedFile(std::move(impl)));
  return Status::OK();
}

Status LoadedFile::ReadRanges(size_t n, const uint64_t* offsets, const uint64_t* sizes, void* const* dst, int device,
                              void* stream) {
  const ParsedChainBundle& b = impl_->bundle;
  std::vector<ChainRequest> requests;
  std::vector<uint8_t*> outs;
  std::vector<uint32_t> chunk_of;  // each request's chunk
  for (size_t i = 0; i < n; ++i) {
    if (sizes[i] == 0) continue;
    if (offsets[i] > b.file_bytes || sizes[i] > b.file_bytes - offsets[i]) {
      return Status::InvalidArgument(fmt::format("range {}+{} past the end of the file", offsets[i], sizes[i]));
    }
    uint32_t c = 0;
    TPDE_RETURN_IF_ERROR(impl_->ChunkAt(offsets[i], &c));
    uint64_t done = 0;
    for (; done < sizes[i]; ++c) {
      if (c == b.chunks.size() || done + b.chunks[c].content_bytes > sizes[i]) {
        return Status::InvalidArgument(fmt::format("range {}+{} does not end on a chunk boundary", offsets[i], sizes[i]));
      }
      uint8_t* out = static_cast<uint8_t*>(dst[i]) + done;
      requests.push_back(b.Request(c, out));
      outs.push_back(out);
      chunk_of.push_back(c);
      done += b.chunks[c].content_bytes;
    }
  }
  if (requests.empty()) return Status::OK();
  ThreadPool* pool = TheShared().Pool(impl_->options.threads);
  std::vector<Status> statuses(requests.size());
  uint64_t bytes = 0;
  for (const ChainRequest& r : requests) bytes += r.links[r.num_links - 1].record->content_bytes();
  GpuChainDecoder* gpu = nullptr;
  if (device >= 0) {
    const auto t0 = Clock::now();
    TPDE_RETURN_IF_ERROR(TheShared().Gpu(device, pool, &gpu));
    Trace("GPU decoder ready", t0, 0);
  }
  // In steps of about kStepBytes of output, each decoded once the daemon
  // has streamed its chunks: the decode of one step overlaps the daemon's
  // reads of the next.
  constexpr uint64_t kStepBytes = 128u << 20;
  std::unique_ptr<ChainDecoder> cpu = device < 0 ? NewCpuChainDecoder(pool) : nullptr;
  const auto t1 = Clock::now();
  Status result;
  for (size_t begin = 0; begin < requests.size();) {
    size_t end = begin;
    uint64_t step = 0;
    uint32_t last_chunk = 0;
    for (; end < requests.size() && (end == begin || step < kStepBytes); ++end) {
      step += requests[end].links[requests[end].num_links - 1].record->content_bytes();
      last_chunk = std::max(last_chunk, chunk_of[end]);
    }
    TPDE_RETURN_IF_ERROR(impl_->WaitReady(last_chunk + 1));
    Status s = device < 0 ? cpu->DecodeBatch(requests.data() + begin, end - begin, statuses.data() + begin)
                          : gpu->DecodeBatchToDevice(requests.data() + begin, end - begin, outs.data() + begin,
                                                     stream, statuses.data() + begin);
    if (result.ok()) result = s;
    begin = end;
  }
  Trace(device < 0 ? "decoded on the CPU" : "decoded on the GPU", t1, bytes);
  return result;
}

Status LoadedFile::ReadHost(uint64_t offset, uint64_t size, void* dst) {
  const ParsedChainBundle& b = impl_->bundle;
  if (offset > b.file_bytes || size > b.file_bytes - offset) {
    return Status::InvalidArgument(fmt::format("range {}+{} past the end of the file", offset, size));
  }
  if (size == 0) return Status::OK();
  auto it = std::upper_bound(b.chunks.begin(), b.chunks.end(), offset,
                             [](uint64_t off, const BundleChunk& k) { return off < k.file_offset; });
  uint32_t c = static_cast<uint32_t>(it - b.chunks.begin()) - 1;
  {
    auto last = std::lower_bound(b.chunks.begin(), b.chunks.end(), offset + size,
                                 [](const BundleChunk& k, uint64_t off) { return k.file_offset < off; });
    TPDE_RETURN_IF_ERROR(impl_->WaitReady(static_cast<uint32_t>(last - b.chunks.begin())));
  }
  ChunkScratch scratch;
  std::vector<uint8_t> buf;
  uint64_t done = 0;
  for (; done < size; ++c) {
    const BundleChunk& k = b.chunks[c];
    buf.resize(k.content_bytes);
    TPDE_RETURN_IF_ERROR(DecodeChain(b.Request(c, buf.data()), &scratch).WithContext(fmt::format("chunk {}", c)));
    const uint64_t from = offset + done - k.file_offset;
    const uint64_t len = std::min(k.content_bytes - from, size - done);
    std::memcpy(static_cast<uint8_t*>(dst) + done, buf.data() + from, len);
    done += len;
  }
  return Status::OK();
}

}  // namespace tpde
