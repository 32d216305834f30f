// ControlServer: answers tpdectl on the control socket (see
// daemon/control_protocol.h): one thread accepts, each request is served on
// a thread of its own (a flush may wait minutes for ingests).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <atomic>
#include <condition_variable>
#include <mutex>
#include <thread>
#include <utility>

#include <unistd.h>

#include "codec/status.h"
#include "fusefs/filesystem.h"
#include "kernels/gpu_chain_decoder.h"
#include "store/store.h"

namespace tpde {

// An owned file descriptor (closed on destruction), for replies that pass one.
class UniqueFd {
 public:
  UniqueFd() = default;
  explicit UniqueFd(int fd) : fd_(fd) {}
  UniqueFd(UniqueFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  UniqueFd& operator=(UniqueFd&& o) noexcept {
    reset(std::exchange(o.fd_, -1));
    return *this;
  }
  ~UniqueFd() { reset(); }
  int get() const { return fd_; }
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

class ControlServer {
 public:
  // `gpu` (nullable, not owned): the store's GPU decoder, for statistics.
  ControlServer(Store* store, Filesystem* fs, GpuChainDecoder* gpu = nullptr) : store_(store), fs_(fs), gpu_(gpu) {}
  ~ControlServer();

  // Binds `socket_path` (replacing a stale socket), mode 0660, and starts.
  Status Start(const std::string& socket_path);
  void Stop();

  // The device number of the FUSE mount this daemon serves (from
  // mountinfo), set once mounted: `bundle` serves only descriptors of files
  // on it. Until then `bundle` is refused. Thread-safe.
  void set_mount_device(uint64_t dev) { mount_device_.store(dev); }

 private:
  void Loop();
  void Serve(int conn);
  // `in`: the descriptor the request carried (-1: none); `out`: the one
  // the reply passes.
  std::string Handle(const std::string& request_line, int in, UniqueFd* out);
  Status Bundle(const std::string& path, int file_fd, nlohmann::json* reply, UniqueFd* fd);

  Store* store_;
  Filesystem* fs_;
  GpuChainDecoder* gpu_;
  std::atomic<uint64_t> mount_device_{0};
  std::string path_;
  int listen_fd_ = -1;
  int stop_pipe_[2] = {-1, -1};
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable idle_cv_;
  int active_ = 0;  // requests being served; guarded by mu_
};

}  // namespace tpde
