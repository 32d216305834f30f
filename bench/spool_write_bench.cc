// spool_write_bench: how fast can a daemon's threads put 1 MiB writes of one
// file into the page cache — the spool's job on the write path.
//
//   spool_write_bench --dir DIR [--mb 1500] [--threads 1,4,16] [--reps 2]
//
// Each thread takes the next 1 MiB block (as the FUSE workers take write
// requests), copies it into its own buffer (the request as it arrives from
// /dev/fuse) and writes it out by one of:
//   pwrite-one-file   pwrite(2) into one file (today's spool draft);
//   pwrite-striped    pwrite(2) into one file per thread;
//   mmap-fallocated   memcpy into a shared mapping of a fallocated file;
//   mmap-ftruncated   the same over a sparse (ftruncated) file.
// Prints GB/s per method and thread count. Buffered writes to one file are
// serialised by the kernel's inode lock whatever the thread count.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <fmt/format.h>

namespace {

enum class Method { kPwriteOneFile, kPwriteStriped, kMmapFallocated, kMmapFtruncated };
constexpr const char* kNames[] = {"pwrite-one-file", "pwrite-striped", "mmap-fallocated", "mmap-ftruncated"};
constexpr size_t kBlock = size_t{1} << 20;

bool Run(const std::string& dir, size_t total, size_t threads, Method method, double* gbps) {
  const size_t files = method == Method::kPwriteStriped ? threads : 1;
  std::vector<int> fds;
  for (size_t f = 0; f < files; ++f) {
    const std::string path = fmt::format("{}/spool_write_bench.{}", dir, f);
    int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) return false;
    ::unlink(path.c_str());
    fds.push_back(fd);
  }
  std::vector<char> source(kBlock * 64);
  for (size_t i = 0; i < source.size(); ++i) source[i] = static_cast<char>(i * 7 + 3);
  const auto t0 = std::chrono::steady_clock::now();
  char* map = nullptr;
  if (method == Method::kMmapFallocated || method == Method::kMmapFtruncated) {
    const int r = method == Method::kMmapFallocated ? ::fallocate(fds[0], 0, 0, static_cast<off_t>(total))
                                                    : ::ftruncate(fds[0], static_cast<off_t>(total));
    if (r != 0) return false;
    void* p = ::mmap(nullptr, total, PROT_READ | PROT_WRITE, MAP_SHARED, fds[0], 0);
    if (p == MAP_FAILED) return false;
    map = static_cast<char*>(p);
  }
  std::atomic<size_t> next{0};
  std::atomic<bool> ok{true};
  std::vector<std::thread> pool;
  for (size_t t = 0; t < threads; ++t) {
    pool.emplace_back([&] {
      std::vector<char> request(kBlock);
      for (size_t i; (i = next.fetch_add(1)) < total / kBlock;) {
        std::memcpy(request.data(), source.data() + (i % 64) * kBlock, kBlock);
        ssize_t n = static_cast<ssize_t>(kBlock);
        switch (method) {
          case Method::kPwriteOneFile: n = ::pwrite(fds[0], request.data(), kBlock, static_cast<off_t>(i * kBlock)); break;
          case Method::kPwriteStriped:
            n = ::pwrite(fds[i % files], request.data(), kBlock, static_cast<off_t>(i / files * kBlock));
            break;
          default: std::memcpy(map + i * kBlock, request.data(), kBlock);
        }
        if (n != static_cast<ssize_t>(kBlock)) ok = false;
      }
    });
  }
  for (auto& t : pool) t.join();
  const double s = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  if (map != nullptr) ::munmap(map, total);
  for (int fd : fds) ::close(fd);
  *gbps = static_cast<double>(total) / s / 1e9;
  return ok;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{"spool_write_bench: 1 MiB writes of one file from many threads into the page cache"};
  std::string dir;
  size_t mb = 1500, reps = 2;
  std::vector<size_t> threads{1, 4, 16};
  app.add_option("--dir", dir, "directory on the spool's file system")->required();
  app.add_option("--mb", mb, "MiB written per run")->capture_default_str();
  app.add_option("--threads", threads, "thread counts")->delimiter(',')->capture_default_str();
  app.add_option("--reps", reps, "runs per method and thread count")->capture_default_str();
  CLI11_PARSE(app, argc, argv);
  const size_t total = mb << 20;
  for (size_t t : threads) {
    for (int m = 0; m < 4; ++m) {
      for (size_t r = 0; r < reps; ++r) {
        double gbps = 0;
        if (!Run(dir, total, t, static_cast<Method>(m), &gbps)) {
          fmt::print(stderr, "spool_write_bench: {} with {} threads failed: {}\n", kNames[m], t, std::strerror(errno));
          return 1;
        }
        fmt::print("threads {:2} {:16} {:6.2f} GB/s\n", t, kNames[m], gbps);
      }
    }
  }
  return 0;
}
