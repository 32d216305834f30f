// ControlServer: answers tpdectl on the control socket (see
// daemon/control_protocol.h): one thread accepts, each request is served on
// a thread of its own (a flush may wait minutes for ingests).
#pragma once

#include <string>
#include <condition_variable>
#include <mutex>
#include <thread>

#include "codec/status.h"
#include "fusefs/filesystem.h"
#include "kernels/gpu_chain_decoder.h"
#include "store/store.h"

namespace tpde {

class ControlServer {
 public:
  // `gpu` (nullable, not owned): the store's GPU decoder, for statistics.
  ControlServer(Store* store, Filesystem* fs, GpuChainDecoder* gpu = nullptr) : store_(store), fs_(fs), gpu_(gpu) {}
  ~ControlServer();

  // Binds `socket_path` (replacing a stale socket), mode 0660, and starts.
  Status Start(const std::string& socket_path);
  void Stop();

 private:
  void Loop();
  void Serve(int conn);
  std::string Handle(const std::string& request_line);

  Store* store_;
  Filesystem* fs_;
  GpuChainDecoder* gpu_;
  std::string path_;
  int listen_fd_ = -1;
  int stop_pipe_[2] = {-1, -1};
  std::thread thread_;
  std::mutex mu_;
  std::condition_variable idle_cv_;
  int active_ = 0;  // requests being served; guarded by mu_
};

}  // namespace tpde
