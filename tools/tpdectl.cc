// tpdectl: offline administration of a tpde store (opens it directly).
//
//   tpdectl import SRC_DIR --store STORE [--prefix PATH]
//   tpdectl export PATH DEST_DIR --store STORE
//   tpdectl ls [PATH] --store STORE
//   tpdectl rm PATH --store STORE
//   tpdectl stats [PATH] --store STORE [--json]
//   tpdectl verify --store STORE
//   tpdectl gc --store STORE
//   tpdectl flush --store STORE
//
// While tpded serves the store, stats, verify, gc and flush go to the daemon
// through its control socket; import, export, ls and rm refuse (use the
// mount). Every error prints one line on stderr and exits with status 1.
#include <CLI/CLI.hpp>
#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <sys/stat.h>

#include <filesystem>
#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "codec/thread_pool.h"
#include "daemon/control_protocol.h"
#include "store/file_reader.h"
#include "store/store.h"
#include "store/tree_io.h"
#include "tools/progress.h"

namespace fs = std::filesystem;
using tpde::Status;

namespace {

[[noreturn]] void Die(const Status& s) {
  fmt::print(stderr, "tpdectl: {}\n", s.ToString());
  std::exit(1);
}

void Check(const Status& s) {
  if (!s.ok()) Die(s);
}

std::string HumanBytes(double b) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (b >= 1024 && u < 4) {
    b /= 1024;
    ++u;
  }
  return u == 0 ? fmt::format("{:.0f} {}", b, units[u]) : fmt::format("{:.2f} {}", b, units[u]);
}

double Ratio(uint64_t logical, uint64_t stored) { return stored == 0 ? 0.0 : double(logical) / double(stored); }

uint64_t TreeBytes(const fs::path& p) {
  std::error_code ec;
  if (fs::is_regular_file(fs::symlink_status(p, ec))) return fs::file_size(p, ec);
  uint64_t n = 0;
  if (fs::is_directory(fs::symlink_status(p, ec))) {
    for (const auto& e : fs::recursive_directory_iterator(p, ec)) {
      if (e.is_regular_file(ec) && !e.is_symlink(ec)) n += e.file_size(ec);
    }
  }
  return n;
}

std::string g_socket;  // control socket of the store's daemon

bool DaemonRunning() {
  bool denied = false;
  if (tpde::DaemonListening(g_socket, &denied)) return true;
  if (denied) {
    Die(Status::IOError(fmt::format("permission denied on the control socket '{}': a daemon may serve this "
                                    "store; run tpdectl as its owner (or root)", g_socket)));
  }
  return false;
}

// Files closed while a daemon ran, not yet ingested when it stopped: they
// are in the spool, not the store, and an offline view would miss them.
void RefuseWithSpooledFiles(const std::string& dir) {
  std::error_code ec;
  size_t pending = 0;
  const fs::path spool = fs::path(dir) / "spool";
  for (const auto& e : fs::directory_iterator(spool, ec)) {
    const std::string name = e.path().filename().string();
    if (name.ends_with(".sealed") || name.ends_with(".keep")) ++pending;
  }
  if (pending > 0) {
    Die(Status::Busy(fmt::format("{} closed files in '{}' are not ingested yet: start tpded to ingest them",
                                 pending, spool.string())));
  }
}

// Opens the store directly; refuses while a daemon serves it.
std::unique_ptr<tpde::Store> OpenStore(const std::string& dir, bool create, const tpde::StoreOptions& base) {
  if (DaemonRunning()) {
    Die(Status::Busy(fmt::format("store '{}' is served by tpded; use its mount point, or stop the daemon first", dir)));
  }
  RefuseWithSpooledFiles(dir);
  tpde::StoreOptions o = base;
  o.create_if_missing = create;
  o.rocksdb_warnings = false;
  std::unique_ptr<tpde::Store> store;
  Check(tpde::Store::Open(dir, o, &store));
  return store;
}

// ---- import -----------------------------------------------------------------

int CmdImport(const std::string& store_dir, const tpde::StoreOptions& opt, const std::string& src,
              const std::string& prefix) {
  std::error_code ec;
  if (!fs::is_directory(src, ec)) Die(Status::InvalidArgument(fmt::format("'{}' is not a directory", src)));
  auto store = OpenStore(store_dir, true, opt);
  tpde::Inode dest;
  Check(store->MakeDirectories(prefix, &dest));
  tpde::Progress progress(TreeBytes(src));
  uint64_t files = 0, logical = 0, stored = 0;
  const auto t0 = std::chrono::steady_clock::now();
  Check(tpde::ImportTree(
      store.get(), src, dest.ino,
      [&](const std::string& path, const tpde::IngestResult& r) {
        if (!r.note.empty()) progress.Message(fmt::format("{}: {}", path, r.note));
        ++files;
        logical += r.file_bytes;
        stored += r.stored_bytes;
        progress.SetLabel(path);
        progress.Advance(r.file_bytes);
      },
      [&](const std::string& path) { progress.Message(fmt::format("{}: skipped (not a file, directory or symlink)", path)); }));
  progress.Finish();
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  fmt::print("imported {} files, {} -> {} ({:.2f}x) in {:.1f} s ({:.0f} MB/s)\n", files,
             HumanBytes(double(logical)), HumanBytes(double(stored)), Ratio(logical, stored), secs,
             logical / 1e6 / std::max(secs, 1e-9));
  return 0;
}

// ---- export -----------------------------------------------------------------

int CmdExport(const std::string& store_dir, const tpde::StoreOptions& opt, const std::string& path,
              const std::string& dest) {
  auto store = OpenStore(store_dir, false, opt);
  tpde::Inode node;
  Check(store->Resolve(path, &node));
  tpde::StoreStats stats;
  Check(store->Stats(path, &stats));
  tpde::Progress progress(stats.logical_bytes);
  fs::path target = dest;
  if (node.type != tpde::InodeType::kDirectory) {
    std::error_code ec;
    fs::create_directories(dest, ec);
    std::string leaf = path;
    while (!leaf.empty() && leaf.back() == '/') leaf.pop_back();
    target /= fs::path(leaf).filename();
  }
  Check(tpde::ExportTree(store.get(), node, target.string(), [&](const std::string& p, uint64_t bytes) {
    progress.SetLabel(p);
    progress.Advance(bytes);
  }));
  progress.Finish();
  fmt::print("exported {} files, {}\n", stats.files, HumanBytes(double(stats.logical_bytes)));
  return 0;
}

// Sends a request to the daemon and returns its reply. Dies on error.
nlohmann::json Remote(const nlohmann::json& request) {
  nlohmann::json reply;
  Check(tpde::ControlCall(g_socket, request, &reply).WithContext("tpded"));
  return reply;
}

// ---- ls, rm, gc -------------------------------------------------------------

int CmdLs(const std::string& store_dir, const tpde::StoreOptions& opt, const std::string& path) {
  auto store = OpenStore(store_dir, false, opt);
  tpde::Inode node;
  Check(store->Resolve(path, &node));
  std::vector<tpde::DirEntry> entries;
  if (node.type == tpde::InodeType::kDirectory) {
    Check(store->ReadDir(node.ino, &entries));
  } else {
    entries.push_back({fs::path(path).filename().string(), node.ino, node.type});
  }
  for (const auto& e : entries) {
    tpde::Inode n;
    Check(store->GetInode(e.ino, &n));
    if (n.type == tpde::InodeType::kDirectory) {
      fmt::print("{:>12}  {}/\n", "-", e.name);
    } else if (n.type == tpde::InodeType::kSymlink) {
      fmt::print("{:>12}  {} -> {}\n", "-", e.name, n.target);
    } else {
      fmt::print("{:>12}  {}\n", n.size, e.name);
    }
  }
  return 0;
}

int CmdRm(const std::string& store_dir, const tpde::StoreOptions& opt, const std::string& path) {
  auto store = OpenStore(store_dir, false, opt);
  Check(store->RemoveTree(path));
  Check(store->CollectGarbage());
  return 0;
}

int CmdGc(const std::string& store_dir, const tpde::StoreOptions& opt) {
  if (DaemonRunning()) {
    Remote({{"cmd", "gc"}});
    return 0;
  }
  auto store = OpenStore(store_dir, false, opt);
  Check(store->CollectGarbage());
  return 0;
}

int CmdFlush(const std::string& store_dir) {
  if (!DaemonRunning()) {
    fmt::print("no tpded serves '{}': nothing is spooled\n", store_dir);
    return 0;
  }
  const auto t0 = std::chrono::steady_clock::now();
  Remote({{"cmd", "flush"}});
  fmt::print("every closed file is committed ({:.2f} s)\n",
             std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  return 0;
}

// ---- stats, verify ----------------------------------------------------------

int CmdStats(const std::string& store_dir, const tpde::StoreOptions& opt, const std::string& path, bool json) {
  tpde::StoreStats st;
  nlohmann::json decode;
  if (DaemonRunning()) {
    const nlohmann::json reply = Remote({{"cmd", "stats"}, {"path", path}});
    st = tpde::StatsFromJson(reply["stats"]);
    decode = reply.value("decode", nlohmann::json());
  } else {
    auto store = OpenStore(store_dir, false, opt);
    Check(store->Stats(path, &st));
  }
  if (json) {
    fmt::print("{}\n", tpde::StatsToJson(st).dump(2));
    return 0;
  }
  fmt::print("{:<56} {:>11} {:>11} {:>7} {:>5}  {}\n", "file", "bytes", "stored", "ratio", "depth",
             "chunks KEY/DENSE/SPARSE/SAME");
  for (const auto& f : st.per_file) {
    fmt::print("{:<56} {:>11} {:>11} {:>6.2f}x {:>5}  {}/{}/{}/{}\n", f.path, f.file_bytes, f.stored_bytes,
               Ratio(f.file_bytes, f.stored_bytes), f.chain_depth, f.chunks_by_mode[0], f.chunks_by_mode[1],
               f.chunks_by_mode[2], f.chunks_by_mode[3]);
  }
  fmt::print("\n{} files in {} directories\n", st.files, st.directories);
  fmt::print("logical  {:>14} bytes ({})\n", st.logical_bytes, HumanBytes(double(st.logical_bytes)));
  fmt::print("stored   {:>14} bytes ({})\n", st.stored_bytes, HumanBytes(double(st.stored_bytes)));
  fmt::print("ratio    {:>14.2f}x\n", Ratio(st.logical_bytes, st.stored_bytes));
  fmt::print("on disk  {:>14} bytes ({}, RocksDB files)\n", st.disk_bytes, HumanBytes(double(st.disk_bytes)));
  // Work the collector has not done yet (tpded does it in the background).
  if (st.pending_demotions > 0) {
    fmt::print("pending  {:>14} keyframes to re-encode as deltas\n", st.pending_demotions);
  }
  if (st.detached_objects > 0) {
    fmt::print("pending  {:>14} deleted versions kept as references until re-based ({})\n", st.detached_objects,
               HumanBytes(double(st.detached_bytes)));
  }
  if (st.garbage_bytes > 0) {
    fmt::print("pending  {:>14} bytes of freed payloads in blob files, not yet reclaimed ({})\n", st.garbage_bytes,
               HumanBytes(double(st.garbage_bytes)));
  }
  if (decode.is_object()) {  // reads through the mount since tpded started
    fmt::print("decoded  {:>14} bytes one chunk at a time on the CPU\n", decode.value("cpu_chunk_bytes", uint64_t{0}));
    if (decode.contains("gpu")) {
      fmt::print("decoded  {:>14} bytes on the GPU ({}{}), {} bytes by its CPU fallback\n",
                 decode.value("gpu_bytes", uint64_t{0}), decode.value("gpu", std::string()),
                 decode.value("gpu_enabled", false) ? "" : ", off after an error",
                 decode.value("gpu_cpu_fallback_bytes", uint64_t{0}));
    } else {
      fmt::print("decoded  {:>14} nothing on a GPU: --gpu off, or no usable CUDA device (the daemon log says which)\n", "");
    }
  }
  return 0;
}

int CmdVerify(const std::string& store_dir, const tpde::StoreOptions& opt) {
  tpde::VerifyReport r;
  const auto t0 = std::chrono::steady_clock::now();
  if (DaemonRunning()) {
    r = tpde::VerifyFromJson(Remote({{"cmd", "verify"}})["verify"]);
  } else {
    auto store = OpenStore(store_dir, false, opt);
    Check(store->Verify(&r));
  }
  const double secs = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
  for (const auto& e : r.errors) fmt::print(stderr, "tpdectl: verify: {}\n", e);
  fmt::print("verified {} files, {} objects, {} chunks, {} decoded in {:.2f} s: {}\n", r.files, r.objects, r.chunks,
             HumanBytes(double(r.bytes)), secs, r.errors.empty() ? "OK" : fmt::format("{} ERRORS", r.errors.size()));
  return r.errors.empty() ? 0 : 1;
}

// Salvage (docs/operations.md): RocksDB's repair rebuilds the store's
// metadata from the readable files; verify then names what was lost.
int CmdRepair(const std::string& store_dir, const tpde::StoreOptions& opt) {
  if (DaemonRunning()) Die(Status::Busy(fmt::format("store '{}' is served by tpded: stop it first", store_dir)));
  tpde::Store::RepairReport report;
  Check(tpde::Store::Repair(store_dir, &report));
  fmt::print("repaired '{}': {} chunk payloads ({:.1f} MiB) restored from {} blob files; verifying\n", store_dir,
             report.payloads_restored, report.payload_bytes_restored / 1048576.0, report.blob_files);
  for (const std::string& n : report.notes) fmt::print("  {}\n", n);
  return CmdVerify(store_dir, opt);
}

}  // namespace

int main(int argc, char** argv) {
  ::umask(077);  // a store holds other users' files: created owner-only
  CLI::App app{"tpdectl: administer a tpde checkpoint store"};
  app.require_subcommand(1);
  std::string store_dir;
  tpde::StoreOptions opt;
  size_t threads = 0;
  auto add_store = [&](CLI::App* cmd) {
    cmd->add_option("--store", store_dir, "store directory")->required();
    cmd->add_option("--control-socket", g_socket, "tpded's control socket (default STORE/control.sock)");
    cmd->add_option("--threads", threads, "encode/decode threads (0: all cores)");
  };
  std::string src, prefix, path, dest;
  bool json = false;

  auto* imp = app.add_subcommand("import", "ingest a directory tree");
  imp->add_option("SRC_DIR", src, "directory to import")->required();
  imp->add_option("--prefix", prefix, "store path to import under (default: the root)");
  imp->add_option("--chain-depth", opt.max_chain_depth, "deltas per chain before a new keyframe")
      ->check(CLI::Range(0, 62));
  imp->add_option("--zstd-level", opt.encode.zstd_level, "zstd level of every stream")->check(CLI::Range(1, 22));
  add_store(imp);
  auto* exp = app.add_subcommand("export", "write a stored file or tree to a directory");
  exp->add_option("PATH", path, "store path")->required();
  exp->add_option("DEST_DIR", dest, "destination directory")->required();
  add_store(exp);
  auto* ls = app.add_subcommand("ls", "list a directory");
  ls->add_option("PATH", path, "store path");
  add_store(ls);
  auto* rm = app.add_subcommand("rm", "remove a file or tree and reclaim its space");
  rm->add_option("PATH", path, "store path")->required();
  add_store(rm);
  auto* stats = app.add_subcommand("stats", "sizes, ratios, chunk modes and chain depths");
  stats->add_option("PATH", path, "store path (default: everything)");
  stats->add_flag("--json", json, "machine-readable output");
  add_store(stats);
  auto* verify = app.add_subcommand("verify", "decode everything and check every checksum");
  add_store(verify);
  auto* gc = app.add_subcommand("gc", "re-base dependents of deleted files and free their space");
  add_store(gc);
  auto* flush = app.add_subcommand("flush", "wait until tpded has committed every closed file");
  add_store(flush);
  auto* repair = app.add_subcommand("repair", "salvage a store that no longer opens (run it on a copy)");
  add_store(repair);

  CLI11_PARSE(app, argc, argv);
  opt.threads = threads;
  if (g_socket.empty()) g_socket = tpde::ControlSocketPath(store_dir);
  if (*flush) return CmdFlush(store_dir);
  if (*imp) return CmdImport(store_dir, opt, src, prefix);
  if (*exp) return CmdExport(store_dir, opt, path, dest);
  if (*ls) return CmdLs(store_dir, opt, path);
  if (*rm) return CmdRm(store_dir, opt, path);
  if (*stats) return CmdStats(store_dir, opt, path, json);
  if (*verify) return CmdVerify(store_dir, opt);
  if (*gc) return CmdGc(store_dir, opt);
  if (*repair) return CmdRepair(store_dir, opt);
  return 1;
}
