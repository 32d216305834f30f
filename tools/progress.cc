#include "tools/progress.h"

#include <fmt/format.h>
#include <unistd.h>

#include <algorithm>

namespace tpde {

Progress::Progress(uint64_t total_bytes) : total_(total_bytes), tty_(::isatty(STDERR_FILENO) == 1) {}

void Progress::SetLabel(const std::string& label) {
  label_ = label;
  Draw(false);
}

void Progress::Advance(uint64_t bytes) {
  done_ += bytes;
  Draw(false);
}

void Progress::Message(const std::string& line) {
  if (tty_ && drawn_) fmt::print(stderr, "\r\033[K");
  fmt::print(stderr, "{}\n", line);
  Draw(true);
}

void Progress::Finish() {
  if (tty_ && drawn_) fmt::print(stderr, "\r\033[K");
  drawn_ = false;
}

void Progress::Draw(bool force) {
  if (!tty_) return;
  const auto now = std::chrono::steady_clock::now();
  if (!force && now - last_draw_ < std::chrono::milliseconds(100)) return;
  last_draw_ = now;
  const double frac = total_ == 0 ? 1.0 : std::min(1.0, double(done_) / double(total_));
  const int width = 30;
  const int fill = static_cast<int>(frac * width);
  const double secs = std::chrono::duration<double>(now - start_).count();
  std::string label = label_.size() > 40 ? "..." + label_.substr(label_.size() - 37) : label_;
  fmt::print(stderr, "\r\033[K[{}{}] {:3.0f}% {:.0f} MB/s {}", std::string(fill, '='), std::string(width - fill, ' '),
             frac * 100, done_ / 1e6 / std::max(secs, 1e-3), label);
  drawn_ = true;
}

}  // namespace tpde
