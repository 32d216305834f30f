// A one-line progress bar on stderr, drawn only when stderr is a terminal.
// Messages always print (on their own line). Not thread-safe.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

namespace tpde {

class Progress {
 public:
  explicit Progress(uint64_t total_bytes);
  void SetLabel(const std::string& label);
  void Advance(uint64_t bytes);
  void Message(const std::string& line);
  void Finish();

 private:
  void Draw(bool force);

  uint64_t total_;
  uint64_t done_ = 0;
  std::string label_;
  bool tty_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point start_ = std::chrono::steady_clock::now();
  std::chrono::steady_clock::time_point last_draw_{};
};

}  // namespace tpde
