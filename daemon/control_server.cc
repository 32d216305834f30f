#include "daemon/control_server.h"

#include "daemon/control_socket.h"
#include <fcntl.h>
#include <fmt/format.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <functional>
#include <memory>
#include <nlohmann/json.hpp>

#include "daemon/bundle_memfd.h"
#include "daemon/control_protocol.h"
#include "daemon/control_socket.h"
#include "store/file_reader.h"

namespace tpde {

using Json = nlohmann::json;

ControlServer::~ControlServer() { Stop(); }

Status ControlServer::Start(const std::string& socket_path) {
  path_ = socket_path;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path_.size() >= sizeof(addr.sun_path)) return Status::InvalidArgument("control socket path too long");
  std::memcpy(addr.sun_path, path_.c_str(), path_.size() + 1);
  ::unlink(path_.c_str());  // stale socket of a daemon that died; the store lock proves none runs
  listen_fd_ = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (listen_fd_ < 0) return Status::IOError(fmt::format("socket: {}", std::strerror(errno)));
  const mode_t old = ::umask(0117);
  const int rc = ::bind(listen_fd_, reinterpret_cast<sockaddr*>(&addr), sizeof(addr));
  ::umask(old);
  if (rc != 0 || ::listen(listen_fd_, 16) != 0) {
    return Status::IOError(fmt::format("bind '{}': {}", path_, std::strerror(errno)));
  }
  ::chmod(path_.c_str(), 0660);
  if (::pipe2(stop_pipe_, O_CLOEXEC) != 0) return Status::IOError("pipe");
  thread_ = std::thread([this] { Loop(); });
  return Status::OK();
}

void ControlServer::Stop() {
  if (thread_.joinable()) {
    char c = 1;
    (void)!::write(stop_pipe_[1], &c, 1);
    thread_.join();
    fs_->StopWaiters();  // a waiting flush answers "stopping"
    std::unique_lock<std::mutex> lock(mu_);
    idle_cv_.wait(lock, [&] { return active_ == 0; });
  }
  for (int* fd : {&listen_fd_, &stop_pipe_[0], &stop_pipe_[1]}) {
    if (*fd >= 0) ::close(*fd);
    *fd = -1;
  }
  if (!path_.empty()) ::unlink(path_.c_str());
  path_.clear();
}

void ControlServer::Loop() {
  while (true) {
    pollfd fds[2] = {{listen_fd_, POLLIN, 0}, {stop_pipe_[0], POLLIN, 0}};
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return;
    }
    if (fds[1].revents) return;
    int conn = ::accept4(listen_fd_, nullptr, nullptr, SOCK_CLOEXEC);
    if (conn < 0) continue;
    // Each request on its own thread: a flush that waits for ingests does
    // not hold up stats, verify or another flush.
    {
      std::lock_guard<std::mutex> lock(mu_);
      ++active_;
    }
    std::thread([this, conn] {
      Serve(conn);
      std::lock_guard<std::mutex> lock(mu_);
      if (--active_ == 0) idle_cv_.notify_all();
    }).detach();
  }
}

void ControlServer::Serve(int conn) {
  std::string line;
  char buf[4096];
  std::vector<UniqueFd> in;  // the descriptors the request carries (bundle)
  while (line.find('\n') == std::string::npos && line.size() < (1 << 20)) {
    const ssize_t n = RecvWithFds(conn, buf, sizeof(buf), kMaxBundleBuffers + 1, &in);
    if (n <= 0) break;
    line.append(buf, static_cast<size_t>(n));
  }
  std::vector<UniqueFd> fds;
  std::function<void(int conn)> then;  // a streamed bundle's fill, after the reply
  const std::string reply = Handle(line, &in, &fds, &then) + "\n";
  in.clear();
  std::vector<int> raw;  // on the reply's first byte
  for (const UniqueFd& f : fds) raw.push_back(f.get());
  if (SendWithFds(conn, reply, raw) && then) then(conn);
  ::close(conn);
}

// The chain bundle of the file open as `file_fd` in a sealed memfd, for the
// loader: payloads go through shared memory, not the socket. The descriptor
// is the caller's proof of access: opened for reading on this mount, so the
// kernel checked its permissions (default_permissions) at open.
Status ControlServer::Bundle(const std::string& path, bool stream, std::vector<UniqueFd>* in_fds, Json* reply,
                             std::vector<UniqueFd>* fds, std::function<void(int conn)>* then) {
  const std::vector<UniqueFd>& in = *in_fds;
  if (in.empty()) {
    return Status::InvalidArgument("bundle: the request carries no descriptor of the file (open it for reading "
                                   "through the mount and pass it with SCM_RIGHTS)");
  }
  const int file_fd = in[0].get();
  struct stat st;
  if (::fstat(file_fd, &st) != 0) return Status::IOError(fmt::format("bundle: fstat: {}", std::strerror(errno)));
  const uint64_t mount_device = mount_device_.load();
  if (mount_device == 0 || static_cast<uint64_t>(st.st_dev) != mount_device) {
    return Status::InvalidArgument(fmt::format("'{}': the descriptor passed is not a file of this tpde mount", path));
  }
  const int flags = ::fcntl(file_fd, F_GETFL);
  if (flags < 0 || (flags & O_ACCMODE) == O_WRONLY || (flags & O_PATH) != 0) {
    return Status::InvalidArgument(fmt::format("'{}': the descriptor passed is not open for reading", path));
  }
  Inode n;
  TPDE_RETURN_IF_ERROR(store_->GetInode(st.st_ino, &n));
  if (n.type != InodeType::kFile) return Status::InvalidArgument(fmt::format("'{}' is not a file", path));
  if (fs_->IsSpooled(n.ino) || n.object == 0) {
    (*reply)["not_committed"] = true;
    return Status::NotFound(fmt::format("'{}' is not committed yet (still being written or ingested)", path));
  }
  std::unique_ptr<FileReader> reader;
  TPDE_RETURN_IF_ERROR(store_->OpenReader(n.ino, &reader));
  ChainBundleLayout layout;
  TPDE_RETURN_IF_ERROR(reader->BundleLayout(&layout));
  (*reply)["file_bytes"] = reader->size();
  (*reply)["chain_depth"] = reader->chain_depth();
  if (in.size() > 1) {
    // The loader's own buffers: filled in place, nothing passed back.
    std::vector<int> buffers;
    for (size_t i = 1; i < in.size(); ++i) buffers.push_back(in[i].get());
    uint64_t buffer_bytes = 0;
    TPDE_RETURN_IF_ERROR(CheckBundleBuffers(buffers, &buffer_bytes));
    const uint64_t total = layout.total_bytes();
    if (BundleBufferBytes(total, buffers.size()) > buffer_bytes) {
      (*reply)["need_bytes"] = total;
      return Status::InvalidArgument(fmt::format("'{}': a bundle of {} bytes does not fit {} buffers of {}", path,
                                                 total, buffers.size(), buffer_bytes));
    }
    (*reply)["bundle_bytes"] = total;
    if (!stream) return FillBundleBuffers(*reader, layout, buffers, buffer_bytes, BundlePart::kAll, nullptr);
    // Streamed: the tables now, the payloads after the reply, with progress
    // lines, so the loader decodes the first chunks while later ones are
    // still being read.
    TPDE_RETURN_IF_ERROR(FillBundleBuffers(*reader, layout, buffers, buffer_bytes, BundlePart::kTables, nullptr));
    (*reply)["streaming"] = true;
    auto fill = std::make_shared<StreamedBundle>();
    fill->reader = std::move(reader);
    fill->layout = std::move(layout);
    fill->buffer_bytes = buffer_bytes;
    for (size_t i = 1; i < in_fds->size(); ++i) fill->buffers.push_back(std::move((*in_fds)[i]));
    *then = [fill](int conn) { fill->Run(conn); };
    return Status::OK();
  }
  TPDE_RETURN_IF_ERROR(MakeBundleMemfd(*reader, layout, BundleFill::kPwrite, nullptr, &fds->emplace_back()));
  (*reply)["bundle_bytes"] = layout.total_bytes();
  return Status::OK();
}

void ControlServer::StreamedBundle::Run(int conn) {
  std::vector<int> fds;
  for (const UniqueFd& f : buffers) fds.push_back(f.get());
  const size_t n = layout.num_chunks();
  const size_t step = std::max<size_t>(1, n / 64);  // progress lines per bundle: about 64
  std::mutex mu;
  std::vector<bool> written(n);
  size_t ready = 0, announced = 0;  // chunks [0, ready) are written; both under mu (locals take no annotation)
  Status s = FillBundleBuffers(*reader, layout, fds, buffer_bytes, BundlePart::kPayloads, nullptr,
                               [&](uint32_t c) -> Status {
                                 std::lock_guard<std::mutex> lock(mu);
                                 written[c] = true;
                                 while (ready < n && written[ready]) ++ready;
                                 if (ready < n && ready - announced >= step) {
                                   if (!SendWithFds(conn, fmt::format("{{\"ready\":{}}}\n", ready))) {
                                     return Status::IOError("the loader closed the connection");
                                   }
                                   announced = ready;
                                 }
                                 return Status::OK();
                               });
  const Json last = s.ok() ? Json{{"ready", n}, {"done", true}}
                           : Json{{"ok", false}, {"error", s.ToString()}, {"code", static_cast<int>(s.code())}};
  SendWithFds(conn, last.dump() + "\n");
}

std::string ControlServer::Handle(const std::string& request_line, std::vector<UniqueFd>* in,
                                  std::vector<UniqueFd>* fds, std::function<void(int conn)>* then) {
  Json req = Json::parse(request_line, nullptr, /*allow_exceptions=*/false);
  if (req.is_discarded() || !req.is_object() || !req.contains("cmd") || !req["cmd"].is_string()) {
    return Json{{"ok", false}, {"error", "malformed request"}}.dump();
  }
  const std::string cmd = req["cmd"];
  // A string field of the request ("" when missing or not a string: never
  // an exception out of the request's thread).
  auto field = [&req](const char* key) {
    auto it = req.find(key);
    return it != req.end() && it->is_string() ? it->get<std::string>() : std::string();
  };
  Json reply{{"ok", true}};
  Status s;
  if (cmd == "stats") {
    StoreStats st;
    s = store_->Stats(field("path"), &st);
    if (s.ok()) {
      reply["stats"] = StatsToJson(st);
      // Which path reconstructed the chunks read through the mount.
      const Filesystem::Counters c = fs_->counters();
      Json decode{{"cpu_chunk_bytes", c.chunk_decoded_bytes}, {"batch_bytes", c.batch_decoded_bytes}};
      if (gpu_ != nullptr) {
        const GpuDecoderStats g = gpu_->stats();
        decode["gpu"] = g.device_name;
        decode["gpu_enabled"] = g.gpu_enabled;
        decode["gpu_bytes"] = g.gpu_bytes;
        decode["gpu_cpu_fallback_bytes"] = g.cpu_bytes;
      }
      reply["decode"] = decode;
    }
  } else if (cmd == "verify") {
    VerifyReport r;
    s = store_->Verify(&r, [this](uint64_t ino) { return fs_->IsSpooled(ino); });
    if (s.ok()) reply["verify"] = VerifyToJson(r);
  } else if (cmd == "flush") {
    s = fs_->FlushAll();
  } else if (cmd == "gc") {
    s = store_->CollectGarbage();
  } else if (cmd == "bundle") {
    auto stream = req.find("stream");
    s = Bundle(field("path"), stream != req.end() && stream->is_boolean() && stream->get<bool>(), in, &reply, fds,
               then);
    if (!s.ok()) {
      Json error{{"ok", false}, {"error", s.ToString()}, {"code", static_cast<int>(s.code())}};
      for (const char* key : {"not_committed", "need_bytes"}) {
        if (reply.contains(key)) error[key] = reply[key];
      }
      return error.dump();
    }
  } else if (cmd == "status") {
    const Filesystem::Counters c = fs_->counters();
    reply["status"] = {{"spooled_files", c.spooled_files}, {"ingests_done", c.ingests_done},
                       {"ingest_errors", c.ingest_errors}, {"cache_bytes", c.cache_bytes},
                       {"cache_hits", c.cache_hits},       {"cache_misses", c.cache_misses}};
  } else {
    s = Status::InvalidArgument(fmt::format("unknown command '{}'", cmd));
  }
  if (!s.ok()) return Json{{"ok", false}, {"error", s.ToString()}, {"code", static_cast<int>(s.code())}}.dump();
  return reply.dump();
}

}  // namespace tpde
