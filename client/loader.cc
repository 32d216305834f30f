#include "client/loader.h"

#include <fmt/format.h>
#include <libmount/libmount.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/un.h>
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
#include "codec/thread_pool.h"
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

// An owned descriptor.
struct Fd {
  int fd = -1;
  Fd() = default;
  explicit Fd(int f) : fd(f) {}
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }
  void reset(int f = -1) {
    if (fd >= 0) ::close(fd);
    fd = f;
  }
};

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

// One request on the control socket, passing `send_fd` (>= 0) with it; the
// reply's descriptor, if any, goes to *fd (owned by the caller, also on
// failure).
Status Call(const std::string& socket_path, const Json& request, int send_fd, Json* reply, int* fd) {
  *fd = -1;
  const int sock = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (sock < 0) return Status::IOError(fmt::format("socket: {}", std::strerror(errno)));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (socket_path.size() >= sizeof(addr.sun_path)) {
    ::close(sock);
    return Status::InvalidArgument(fmt::format("control socket path too long: {}", socket_path));
  }
  std::memcpy(addr.sun_path, socket_path.c_str(), socket_path.size());
  if (::connect(sock, reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    const int err = errno;
    ::close(sock);
    if (err == EACCES) return Status::IOError(fmt::format("permission denied on the control socket {}", socket_path));
    return Status::IOError(fmt::format("the tpde daemon is not running (no answer on {}: {})", socket_path,
                                       std::strerror(err)));
  }
  const std::string line = request.dump() + "\n";
  size_t sent = 0;
  if (send_fd >= 0) {
    // The request's first byte carries the descriptor (SCM_RIGHTS).
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
    iovec iov{const_cast<char*>(line.data()), 1};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    cmsghdr* cm = CMSG_FIRSTHDR(&msg);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cm), &send_fd, sizeof(int));
    ssize_t n;
    do {
      n = ::sendmsg(sock, &msg, MSG_NOSIGNAL);
    } while (n < 0 && errno == EINTR);
    if (n != 1) {
      ::close(sock);
      return Status::IOError(fmt::format("control socket: {}", std::strerror(errno)));
    }
    sent = 1;
  }
  while (sent < line.size()) {
    ssize_t n = ::send(sock, line.data() + sent, line.size() - sent, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      ::close(sock);
      return Status::IOError(fmt::format("control socket: {}", std::strerror(errno)));
    }
    sent += static_cast<size_t>(n);
  }
  std::string text;
  char buf[65536];
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))];
  while (text.find('\n') == std::string::npos) {
    iovec iov{buf, sizeof(buf)};
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof(control);
    ssize_t n = ::recvmsg(sock, &msg, MSG_CMSG_CLOEXEC);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    for (cmsghdr* cm = CMSG_FIRSTHDR(&msg); cm != nullptr; cm = CMSG_NXTHDR(&msg, cm)) {
      if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
      int got;
      std::memcpy(&got, CMSG_DATA(cm), sizeof(int));
      if (*fd < 0) {
        *fd = got;
      } else {
        ::close(got);
      }
    }
    text.append(buf, static_cast<size_t>(n));
  }
  ::close(sock);
  *reply = Json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (reply->is_discarded() || !reply->is_object()) {
    if (*fd >= 0) ::close(*fd);
    *fd = -1;
    return Status::IOError("malformed reply from the tpde daemon");
  }
  return Status::OK();
}

// Process-wide decoding resources: one CPU pool, one GPU decoder per device
// (its pinned buffers are allocated once).
struct Shared {
  std::mutex mu;
  std::unique_ptr<ThreadPool> pool;
  std::map<int, std::unique_ptr<GpuChainDecoder>> gpus;
  std::map<int, Status> gpu_errors;

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
  uint8_t* map = nullptr;
  uint64_t map_bytes = 0;
  ParsedChainBundle bundle;
  int chain_depth = 0;

  ~Impl() {
    if (map != nullptr) ::munmap(map, map_bytes);
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

uint64_t LoadedFile::file_bytes() const { return impl_->bundle.file_bytes; }
int LoadedFile::chain_depth() const { return impl_->chain_depth; }

Status LoadedFile::Open(const std::string& path, const LoaderOptions& options, std::unique_ptr<LoadedFile>* out) {
  std::string mount_point, store;
  TPDE_RETURN_IF_ERROR(FindMount(path, &mount_point, &store));
  const char* env = std::getenv("TPDE_CONTROL_SOCKET");
  const std::string socket_path = env != nullptr ? env : (std::filesystem::path(store) / "control.sock").string();
  const auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(options.wait_seconds);
  Json reply;
  Fd bundle;
  auto t0 = Clock::now();
  while (true) {
    // The file, opened for reading through the mount, goes with the request:
    // the kernel checks our permissions at this open, and the daemon serves
    // the inode it names (a rename meanwhile cannot swap files).
    Fd file(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (file.fd < 0) {
      const int err = errno;
      if (err == ENOENT) return Status::NotFound(fmt::format("'{}': no such file", path));
      return Status::IOError(fmt::format("'{}': {}", path, std::strerror(err)));
    }
    int got = -1;
    TPDE_RETURN_IF_ERROR(Call(socket_path, Json{{"cmd", "bundle"}, {"path", path}}, file.fd, &reply, &got));
    bundle.reset(got);
    if (Field(reply, "ok", false)) break;
    const std::string error = Field(reply, "error", std::string("unknown error"));
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
  if (bundle.fd < 0) return Status::IOError("the tpde daemon sent no bundle");
  const uint64_t bundle_bytes = Field(reply, "bundle_bytes", uint64_t{0});
  // What we map must be what the reply says, and sealed: nobody can shrink
  // it under our mapping (SIGBUS) or change it while we decode.
  struct stat st;
  const int seals = ::fcntl(bundle.fd, F_GET_SEALS);
  const int needed = F_SEAL_SHRINK | F_SEAL_GROW | F_SEAL_WRITE;
  if (::fstat(bundle.fd, &st) != 0 || static_cast<uint64_t>(st.st_size) != bundle_bytes || seals < 0 ||
      (seals & needed) != needed) {
    return Status::IOError("the tpde daemon sent a bundle that is not a sealed memfd of the size it announced");
  }
  Trace("bundle from the daemon", t0, bundle_bytes);
  t0 = Clock::now();
  auto impl = std::make_unique<Impl>();
  impl->options = options;
  impl->map_bytes = bundle_bytes;
  impl->chain_depth = Field(reply, "chain_depth", 0);
  // Not populated here: the decoder's threads fault the pages in as they
  // stage them, in parallel.
  void* map = ::mmap(nullptr, std::max<uint64_t>(impl->map_bytes, 1), PROT_READ, MAP_SHARED, bundle.fd, 0);
  if (map == MAP_FAILED) return Status::IOError(fmt::format("mapping the bundle: {}", std::strerror(errno)));
  impl->map = static_cast<uint8_t*>(map);
  Trace("bundle mapped", t0, impl->map_bytes);
  t0 = Clock::now();
  TPDE_RETURN_IF_ERROR(ParseChainBundle(
      std::string_view(reinterpret_cast<const char*>(impl->map), impl->map_bytes), &impl->bundle));
  Trace("bundle parsed", t0, impl->map_bytes);
  out->reset(new LoadedFile(std::move(impl)));
  return Status::OK();
}

Status LoadedFile::ReadRanges(size_t n, const uint64_t* offsets, const uint64_t* sizes, void* const* dst, int device,
                              void* stream) {
  const ParsedChainBundle& b = impl_->bundle;
  std::vector<ChainRequest> requests;
  std::vector<uint8_t*> outs;
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
      done += b.chunks[c].content_bytes;
    }
  }
  if (requests.empty()) return Status::OK();
  ThreadPool* pool = TheShared().Pool(impl_->options.threads);
  std::vector<Status> statuses(requests.size());
  uint64_t bytes = 0;
  for (const ChainRequest& r : requests) bytes += r.links[r.num_links - 1].record->content_bytes();
  const auto t0 = Clock::now();
  if (device < 0) {
    Status s = NewCpuChainDecoder(pool)->DecodeBatch(requests.data(), requests.size(), statuses.data());
    Trace("decoded on the CPU", t0, bytes);
    return s;
  }
  GpuChainDecoder* gpu = nullptr;
  TPDE_RETURN_IF_ERROR(TheShared().Gpu(device, pool, &gpu));
  Trace("GPU decoder ready", t0, 0);
  const auto t1 = Clock::now();
  Status s = gpu->DecodeBatchToDevice(requests.data(), requests.size(), outs.data(), stream, statuses.data());
  Trace("decoded on the GPU", t1, bytes);
  return s;
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
