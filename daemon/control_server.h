// ControlServer: answers tpdectl on the control socket (see
// daemon/control_protocol.h) from one thread, one request at a time.
#pragma once

#include <string>
#include <thread>

#include "codec/status.h"
#include "fusefs/filesystem.h"
#include "store/store.h"

namespace tpde {

class ControlServer {
 public:
  ControlServer(Store* store, Filesystem* fs) : store_(store), fs_(fs) {}
  ~ControlServer();

  // Binds `socket_path` (replacing a stale socket), mode 0660, and starts.
  Status Start(const std::string& socket_path);
  void Stop();

 private:
  void Loop();
  std::string Handle(const std::string& request_line);

  Store* store_;
  Filesystem* fs_;
  std::string path_;
  int listen_fd_ = -1;
  int stop_pipe_[2] = {-1, -1};
  std::thread thread_;
};

}  // namespace tpde
