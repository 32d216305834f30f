// ControlServer: answers tpdectl on the control socket (see
// daemon/control_protocol.h): one thread accepts, each request is served on
// a thread of its own (a flush may wait minutes for ingests).
#pragma once

#include <nlohmann/json.hpp>
#include <string>
#include <atomic>
#include <condition_variable>
#include <functional>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#include "codec/thread_annotations.h"
#include "codec/status.h"
#include "daemon/unique_fd.h"
#include "fusefs/filesystem.h"
#include "kernels/gpu_chain_decoder.h"
#include "store/file_reader.h"
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

  // The device number of the FUSE mount this daemon serves (from
  // mountinfo), set once mounted: `bundle` serves only descriptors of files
  // on it. Until then `bundle` is refused. Thread-safe.
  void set_mount_device(uint64_t dev) { mount_device_.store(dev); }

 private:
  void Loop();
  void Serve(int conn);
  // `in`: the descriptors the request carried; `out`: those the reply
  // passes; `then`: work to do on the connection after the reply (a
  // streamed bundle's payloads and progress lines).
  std::string Handle(const std::string& request_line, std::vector<UniqueFd>* in, std::vector<UniqueFd>* out,
                     std::function<void(int conn)>* then);
  Status Bundle(const std::string& path, bool stream, std::vector<UniqueFd>* in, nlohmann::json* reply,
                std::vector<UniqueFd>* out, std::function<void(int conn)>* then);

  // The payloads of a streamed bundle, written after the reply.
  struct StreamedBundle {
    std::unique_ptr<FileReader> reader;
    ChainBundleLayout layout;
    std::vector<UniqueFd> buffers;
    uint64_t buffer_bytes = 0;
    void Run(int conn);
  };

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
  int active_ TPDE_GUARDED_BY(mu_) = 0;  // requests being served
};

}  // namespace tpde
