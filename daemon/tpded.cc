// tpded: serves a tpde store as a directory through FUSE.
//
//   tpded --store DIR --mount MNT [--config FILE] [--foreground] [options]
//
// Options may also come from an INI/TOML config file (--config; see
// systemd/tpded.conf.example): every long option is a key. Without
// --foreground the daemon detaches once the mount is live and reports
// startup errors before detaching. SIGTERM and SIGINT unmount cleanly.
// Under systemd (Type=notify) READY=1 is sent once the mount is live.
#include <fcntl.h>
#include <libmount/libmount.h>
#include <sys/sysmacros.h>
#include <fmt/format.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/sinks/systemd_sink.h>
#include <spdlog/spdlog.h>
#include <malloc.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstring>
#include <fstream>
#include <sstream>
#include <filesystem>

#include "daemon/control_protocol.h"
#include "daemon/control_server.h"
#include "kernels/gpu_chain_decoder.h"
#include "codec/thread_pool.h"
#include "fusefs/filesystem.h"
#include "fusefs/fuse_ops.h"
#include "store/store.h"

namespace {

struct Options {
  std::string store;
  std::string mount;
  std::string spool;            // default STORE/spool
  std::string control_socket;   // default STORE/control.sock
  std::string log_file;         // default STORE/tpded.log when detached
  uint64_t cache_mb = 256;
  size_t readahead_chunks = 0;  // 0: eight per core, at least 16, at most an eighth of the cache
  size_t ingest_threads = 4;
  uint64_t ingest_delay_ms = 100;
  size_t threads = 0;
  int chain_depth = 8;
  int zstd_level = 3;
  bool allow_other = false;
  bool nonempty = false;
  bool foreground = false;
  bool debug_fuse = false;
  uint64_t writeback_buffer_mb = 0;  // 0: min(1 GiB, 5% of memory)
  std::string gpu = "auto";          // auto | off | device index
};

// The device number of the newest mount on `target` (0 if none), from
// mountinfo (libmount: it unescapes mount points with spaces), not from a
// stat() of the mount point: that would be a FUSE request to this very
// daemon, whose session loop is not running yet. `target`: the mount point
// as mountinfo spells it (canonical), computed before mounting.
dev_t MountDevice(const std::string& target) {
  dev_t dev = 0;
  if (libmnt_table* table = mnt_new_table(); table != nullptr) {
    if (mnt_table_parse_file(table, "/proc/self/mountinfo") == 0) {
      // The newest mount on that point is the last one.
      if (libmnt_fs* fs = mnt_table_find_target(table, target.c_str(), MNT_ITER_BACKWARD); fs != nullptr) {
        dev = mnt_fs_get_devno(fs);
      }
    }
    mnt_unref_table(table);
  }
  return dev;
}

// Tunes the kernel's per-mount (bdi) limits. Write-back: lets the kernel
// buffer up to `mb` MiB of writes to the mount before it
// throttles the writer to the daemon's pace. FUSE mounts start with a 1%
// share of the dirty-page limit (strictly enforced), which makes writing a
// large checkpoint as slow as ingesting it. Best effort: older kernels have
// no max_bytes (then max_ratio is raised), and a failure only costs speed.
//
// The budget stays well below the system's dirty limit (and the daemon is an
// I/O flusher where the kernel lets it, see MarkIoFlusher), so its own writes
// to the spool are not held back by the dirty pages it is writing back.
// `dev`: the mount's device number (MountDevice).
void TuneMountBdi(dev_t dev, uint64_t mb) {
  if (mb == 0) {
    const uint64_t ram_mb = uint64_t(::sysconf(_SC_PHYS_PAGES)) * uint64_t(::sysconf(_SC_PAGESIZE)) >> 20;
    mb = std::min<uint64_t>(1024, ram_mb / 20);
  }
  if (dev == 0) return;
  const std::string device = fmt::format("{}:{}", major(dev), minor(dev));
  const std::string bdi = "/sys/class/bdi/" + device + "/";
  auto write = [&](const std::string& file, const std::string& value) {
    int fd = ::open((bdi + file).c_str(), O_WRONLY | O_CLOEXEC);
    if (fd < 0) return false;
    const bool ok = ::write(fd, value.data(), value.size()) == static_cast<ssize_t>(value.size());
    ::close(fd);
    return ok;
  };
  if (!write("max_bytes", std::to_string(mb << 20)) && !write("max_ratio", "50")) {
    spdlog::warn("cannot raise the write-back limit in {} ({}); writes are throttled to ingest speed", bdi,
                 std::strerror(errno));
  }
  // The kernel's read-ahead window for the mount: FUSE takes the smaller of
  // this and the max_readahead the daemon answers at INIT (which comes after
  // this, once the session loop runs), and the default is 128 KiB. A wide
  // window keeps many 1 MiB reads in flight, which the daemon decodes on
  // every core.
  if (!write("read_ahead_kb", std::to_string(tpde::kReadaheadBytes >> 10))) {
    spdlog::info("cannot widen the read-ahead window in {} ({})", bdi, std::strerror(errno));
  }
}

// Reports startup success or failure to the parent that waits in the
// foreground terminal, then detaches stdio.
class Detacher {
 public:
  // Forks; returns in the child. The parent waits for the child's report and
  // exits with its status.
  void Detach() {
    if (::pipe2(pipe_, O_CLOEXEC) != 0) return;
    pid_t pid = ::fork();
    if (pid < 0) return;
    if (pid > 0) {
      ::close(pipe_[1]);
      std::string msg;
      char buf[512];
      ssize_t n;
      while ((n = ::read(pipe_[0], buf, sizeof(buf))) > 0) msg.append(buf, static_cast<size_t>(n));
      if (msg == "ok") _exit(0);
      fmt::print(stderr, "{}\n", msg.empty() ? "tpded: daemon exited during startup" : msg);
      _exit(1);
    }
    ::close(pipe_[0]);
    ::setsid();
    detached_ = true;
  }
  void Report(const std::string& msg, const std::string& log_file) {
    if (!detached_) return;
    (void)!::write(pipe_[1], msg.data(), msg.size());
    ::close(pipe_[1]);
    if (msg != "ok") return;
    int null = ::open("/dev/null", O_RDWR);
    int log = ::open(log_file.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    ::dup2(null, STDIN_FILENO);
    ::dup2(log >= 0 ? log : null, STDOUT_FILENO);
    ::dup2(log >= 0 ? log : null, STDERR_FILENO);
    if (null > 2) ::close(null);
    if (log > 2) ::close(log);
    (void)!::chdir("/");
  }

 private:
  int pipe_[2] = {-1, -1};
  bool detached_ = false;
};

// PR_SET_IO_FLUSHER (Linux 5.6+, Documentation/admin-guide/...): the daemon
// writes back the mount's dirty pages, so it must be throttled only by the
// dirty pages of the devices it writes to, and its allocations must not
// recurse into I/O to the mount. Without CAP_SYS_RESOURCE this fails; the
// kernel's default 1% write-back share for FUSE then keeps things safe.
bool MarkIoFlusher() { return ::prctl(PR_SET_IO_FLUSHER, 1, 0, 0, 0) == 0; }

// The daemon's log: spdlog's default logger, to stderr (the terminal in the
// foreground, the log file once detached) with a timestamp and level per
// line, or to the journal with each line's priority when systemd connected
// stderr to it (JOURNAL_STREAM names stderr's device and inode, sd_journal
// docs).
bool StderrIsJournal() {
  const char* env = std::getenv("JOURNAL_STREAM");
  struct stat st {};
  unsigned long long dev = 0, ino = 0;
  return env != nullptr && std::sscanf(env, "%llu:%llu", &dev, &ino) == 2 && ::fstat(STDERR_FILENO, &st) == 0 &&
         st.st_dev == dev && st.st_ino == ino;
}

void SetUpLogging() {
  std::shared_ptr<spdlog::logger> logger;
  if (StderrIsJournal()) {
    logger = std::make_shared<spdlog::logger>("tpded", std::make_shared<spdlog::sinks::systemd_sink_mt>("tpded"));
  } else {
    logger = std::make_shared<spdlog::logger>("tpded", std::make_shared<spdlog::sinks::stderr_sink_mt>());
    logger->set_pattern("%Y-%m-%d %H:%M:%S.%e tpded %l: %v");
  }
  spdlog::set_default_logger(std::move(logger));
}

int Fail(Detacher* d, const Options& o, const std::string& msg) {
  const std::string line = fmt::format("tpded: {}", msg);
  spdlog::error("{}", msg);
  d->Report(line, o.log_file);
  sd_notifyf(0, "STATUS=%s", line.c_str());
  return 1;
}

}  // namespace

namespace {

std::string EscapeMountOption(const std::string& value) {
  std::string out;
  for (char c : value) {
    if (c == ',' || c == '\\') out += '\\';
    out += c;
  }
  return out;
}

// Why `mount` cannot be mounted on ("" if it can): not a directory, already
// a mount point (a live or dead tpded, or anything else), or not empty.
std::string CheckMountPoint(const std::string& mount, bool nonempty) {
  struct stat st {}, up {};
  if (::stat(mount.c_str(), &st) != 0) {
    if (errno == ENOTCONN) return fmt::format("'{}' is the mount point of a daemon that died: umount -l it first", mount);
    return fmt::format("mount point '{}': {}", mount, std::strerror(errno));
  }
  if (!S_ISDIR(st.st_mode)) return fmt::format("mount point '{}' is not a directory", mount);
  const std::string parent = (std::filesystem::path(mount) / "..").string();
  if (::stat(parent.c_str(), &up) == 0 && (up.st_dev != st.st_dev || up.st_ino == st.st_ino)) {
    return fmt::format("'{}' is already a mount point (another tpded?): unmount it first", mount);
  }
  std::error_code ec;
  if (!nonempty && std::filesystem::directory_iterator(mount, ec) != std::filesystem::directory_iterator()) {
    return fmt::format("mount point '{}' is not empty: its files would be hidden (--nonempty to mount anyway)", mount);
  }
  return "";
}

}  // namespace

int main(int argc, char** argv) {
  ::umask(077);  // the store, spool and log hold other users' files: owner-only
  // Chunk buffers and payloads are 1 MiB: keep them on the heap for reuse
  // rather than mapping and unmapping (and page-faulting) each one.
  mallopt(M_MMAP_THRESHOLD, 64 << 20);
  mallopt(M_TRIM_THRESHOLD, 512 << 20);
  CLI::App app{"tpded: mount a tpde checkpoint store as a directory"};
  Options o;
  app.set_config("--config", "", "INI/TOML file of options (keys are the long option names)");
  app.add_option("--store", o.store, "store directory")->required();
  app.add_option("--mount", o.mount, "mount point (an existing empty directory)")->required();
  app.add_option("--spool", o.spool, "spool directory for files being written (default STORE/spool)");
  app.add_option("--control-socket", o.control_socket, "control socket (default STORE/control.sock)");
  app.add_option("--log-file", o.log_file, "log file when detached (default STORE/tpded.log)");
  app.add_option("--cache-mb", o.cache_mb, "decoded chunk cache, MiB")->capture_default_str();
  app.add_option("--readahead-chunks", o.readahead_chunks,
                 "MiB decoded ahead of a sequential reader (0: eight per core, at least 16, at most an eighth of --cache-mb)")
      ->capture_default_str();
  app.add_option("--ingest-threads", o.ingest_threads, "files ingested concurrently")->capture_default_str();
  app.add_option("--ingest-delay-ms", o.ingest_delay_ms, "wait after the last close before ingesting")
      ->capture_default_str();
  app.add_option("--threads", o.threads, "encode/decode threads (0: all cores)")->capture_default_str();
  app.add_option("--chain-depth", o.chain_depth, "longest chain of deltas behind a keyframe (the newest version)")
      ->check(CLI::Range(0, 62))
      ->capture_default_str();
  app.add_option("--zstd-level", o.zstd_level, "zstd level of every stream")->check(CLI::Range(1, 22))->capture_default_str();
  app.add_flag("--nonempty", o.nonempty, "mount over a directory that has files (they are hidden while mounted)");
  app.add_flag("--allow-other", o.allow_other, "let users other than the mounting one access the mount");
  app.add_flag("-f,--foreground", o.foreground, "stay in the foreground");
  app.add_option("--writeback-buffer-mb", o.writeback_buffer_mb,
                 "writes the kernel may buffer before throttling writers, MiB (0: min(1024, 5% of RAM))")
      ->capture_default_str();
  app.add_option("--gpu", o.gpu,
                 "reconstruct batches of delta-coded chunks on a CUDA GPU: auto (the first one, if any), off, or a "
                 "device index")
      ->capture_default_str()
      ->check([](const std::string& v) -> std::string {
        if (v == "auto" || v == "off" || (!v.empty() && v.find_first_not_of("0123456789") == std::string::npos)) return "";
        return "--gpu takes auto, off or a device index";
      });
  app.add_flag("--debug-fuse", o.debug_fuse, "log every FUSE request and reply (libfuse -d)");
  CLI11_PARSE(app, argc, argv);
  SetUpLogging();

  std::error_code ec;
  o.store = std::filesystem::absolute(o.store, ec).string();
  o.mount = std::filesystem::absolute(o.mount, ec).string();
  if (o.spool.empty()) o.spool = (std::filesystem::path(o.store) / "spool").string();
  if (o.control_socket.empty()) o.control_socket = tpde::ControlSocketPath(o.store);
  if (o.log_file.empty()) o.log_file = (std::filesystem::path(o.store) / "tpded.log").string();

  Detacher detacher;
  if (!o.foreground && !sd_notify(0, "STATUS=starting")) detacher.Detach();  // not under systemd: detach

  if (std::string why = CheckMountPoint(o.mount, o.nonempty); !why.empty()) return Fail(&detacher, o, why);
  const std::string mount_target = std::filesystem::canonical(o.mount, ec).string();  // before it is a mount
  tpde::StoreOptions so;
  so.max_chain_depth = o.chain_depth;
  so.encode.zstd_level = o.zstd_level;
  so.threads = o.threads;
  so.ingest_nice = 5;  // ingest yields to the threads serving writes and reads
  // The GPU's batched chain decoder, where there is one (a read never needs
  // it: without one, or after a CUDA error, chunks decode on the CPU).
  std::unique_ptr<tpde::ThreadPool> gpu_pool;
  tpde::GpuChainDecoder* gpu = nullptr;
  if (o.gpu != "off") {
    gpu_pool = std::make_unique<tpde::ThreadPool>(o.threads);
    tpde::GpuDecoderOptions go;
    go.device = o.gpu == "auto" ? 0 : std::stoi(o.gpu);
    go.pool = gpu_pool.get();
    go.log = [](const std::string& line) { spdlog::warn("gpu: {}", line); };
    std::unique_ptr<tpde::GpuChainDecoder> decoder;
    tpde::Status gs = tpde::GpuChainDecoder::Open(go, &decoder);
    if (gs.ok()) {
      spdlog::info("gpu: {} decodes batches of delta-coded chunks", decoder->stats().device_name);
      gpu = decoder.get();
      so.chain_decoder = std::move(decoder);
    } else {
      spdlog::info("gpu: {}; decoding on the CPU", gs.message());
    }
  }
  std::unique_ptr<tpde::Store> store;
  tpde::Status s = tpde::Store::Open(o.store, so, &store);
  if (!s.ok()) return Fail(&detacher, o, s.message());

  tpde::FsOptions fo;
  fo.spool_dir = o.spool;
  fo.cache_bytes = o.cache_mb << 20;
  fo.ingest_threads = o.ingest_threads;
  fo.readahead_chunks = o.readahead_chunks == 0 ? tpde::kAutoReadahead : o.readahead_chunks;
  fo.ingest_delay_ms = o.ingest_delay_ms;
  std::unique_ptr<tpde::Filesystem> fs;
  s = tpde::Filesystem::Open(store.get(), fo, &fs);
  if (!s.ok()) return Fail(&detacher, o, s.ToString());

  tpde::ControlServer control(store.get(), fs.get(), gpu);
  s = control.Start(o.control_socket);
  if (!s.ok()) return Fail(&detacher, o, s.ToString());

  // The store path goes into an option list: its commas and backslashes are
  // escaped (libfuse's fuse_opt unescapes them), so a path cannot add options.
  std::string mount_opts = fmt::format("fsname=tpde:{},subtype=tpde,default_permissions,max_read={}",
                                       EscapeMountOption(o.store), tpde::kMaxRequestBytes);
  if (o.allow_other) mount_opts += ",allow_other";
  std::vector<std::string> arg_strings = {"tpded", "-o", mount_opts};
  if (o.debug_fuse) arg_strings.push_back("-d");
  std::vector<char*> fuse_argv;
  for (auto& a : arg_strings) fuse_argv.push_back(a.data());
  fuse_args args = FUSE_ARGS_INIT(static_cast<int>(fuse_argv.size()), fuse_argv.data());
  fuse_session* se = fuse_session_new(&args, tpde::FuseOps(), sizeof(fuse_lowlevel_ops), fs.get());
  fuse_opt_free_args(&args);  // fuse_session_new leaves an allocated copy of argv[0] in `args`
  if (se == nullptr) return Fail(&detacher, o, "cannot create the FUSE session");
  if (fuse_set_signal_handlers(se) != 0) return Fail(&detacher, o, "cannot install signal handlers");
  if (fuse_session_mount(se, o.mount.c_str()) != 0) {
    fuse_remove_signal_handlers(se);
    fuse_session_destroy(se);
    return Fail(&detacher, o, fmt::format("cannot mount on '{}' (is /dev/fuse available, are you root?)", o.mount));
  }
  // Pages of a version that was discarded (a write failed) leave the kernel's
  // cache, so reads agree with what is committed.
  fs->SetCacheInvalidator([se](const tpde::Filesystem::Invalidation& i) {
    fuse_lowlevel_notify_inval_inode(se, i.ino, 0, 0);
    if (!i.name.empty()) fuse_lowlevel_notify_inval_entry(se, i.parent, i.name.c_str(), i.name.size());
  });
  if (!MarkIoFlusher()) {
    spdlog::info("not an I/O flusher ({}); write-back budget kept small", std::strerror(errno));
  }
  const dev_t mount_device = MountDevice(mount_target);
  control.set_mount_device(mount_device);
  TuneMountBdi(mount_device, o.writeback_buffer_mb);
  spdlog::info("serving '{}' on '{}'", o.store, o.mount);
  detacher.Report("ok", o.log_file);
  sd_notifyf(0, "READY=1\nSTATUS=serving %s on %s", o.store.c_str(), o.mount.c_str());

  fuse_loop_config* loop = fuse_loop_cfg_create();
  fuse_loop_cfg_set_max_threads(loop, 64);
  fuse_loop_cfg_set_idle_threads(loop, 16);
  fuse_loop_cfg_set_clone_fd(loop, 1);  // a /dev/fuse descriptor per worker: no shared read queue
  const int rc = fuse_session_loop_mt(se, loop);
  fuse_loop_cfg_destroy(loop);

  sd_notify(0, "STOPPING=1");
  fuse_session_unmount(se);
  fuse_remove_signal_handlers(se);
  fuse_session_destroy(se);
  control.Stop();
  fs.reset();     // closed files not yet committed stay in the spool for the next start
  store.reset();
  spdlog::info("unmounted '{}'", o.mount);
  return rc == 0 ? 0 : 1;
}
