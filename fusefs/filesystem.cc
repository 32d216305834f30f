#include "fusefs/filesystem.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <spdlog/spdlog.h>
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>

#include "store/file_reader.h"

namespace tpde {

namespace {

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

// The one place a Status becomes an errno: the store's POSIX sub-code where
// it set one (decided under its lock), else the code's usual errno.
int ToErrno(const Status& s) {
  if (s.posix_code() != 0) return s.posix_code();
  switch (s.code()) {
    case Status::Code::kOk: return 0;
    case Status::Code::kNotFound: return ENOENT;
    case Status::Code::kAlreadyExists: return EEXIST;
    case Status::Code::kInvalidArgument: return EINVAL;
    case Status::Code::kBusy: return EBUSY;
    case Status::Code::kNotSupported: return ENOTSUP;
    case Status::Code::kNoSpace: return ENOSPC;
    case Status::Code::kCorruption:
    case Status::Code::kIOError: return EIO;
  }
  return EIO;
}

// NAME_MAX: longer names are refused as POSIX file systems refuse them.
constexpr size_t kNameMax = 255;

timespec ToTimespec(int64_t ns) { return {ns / 1000000000, ns % 1000000000}; }

}  // namespace

// The spool state of one file: its content versions, newest first, are
//   draft   being written by open handles (lost if the daemon dies);
//   sealed  the newest complete version (closed or fsynced) not yet
//           committed, immutable; an older *durable* one may be kept beside
//           it until the newer one is durable or committed;
//   the committed object in the store.
// Readers see the newest that exists. Transitions, all under Filesystem::mu_:
//   open for writing    draft: empty (O_TRUNC), or sharing the sealed file
//                       until its first write copies it, or materialised
//                       from the committed object;
//   write               the draft is dirty; a failed write marks it failed;
//   fsync               a dirty draft is sealed and made durable, and the
//                       draft shares it again;
//   last writer closes  a dirty draft is sealed and queued for ingest; a
//                       clean draft is dropped; a failed one is discarded and
//                       the file reverts to its last complete version;
//   ingest commits      sealed versions up to the committed one are deleted;
//                       the state goes when nothing is left and no handle is
//                       open.
struct Filesystem::SpoolState {
  // Draft: the same file as `sealed` until its first change copies it.
  SpoolFile draft;
  bool draft_new_file = false;  // the draft of a file created by it (N.new)
  bool dirty = false;           // the draft differs from the version below it
  int failed = 0;               // errno of a failed write into the draft: never sealed
  uint32_t writes_in_flight = 0;
  // Sealed.
  SpoolFile sealed;
  uint64_t sealed_seq = 0;
  bool sealed_durable = false;
  bool sealed_committed = false;  // ingested; kept only for open handles
  int64_t sealed_mtime_ns = 0;
  std::optional<uint64_t> durable_seq;  // an older durable version kept on disk
  uint64_t born = 0;  // Filesystem::next_seq_ when this state was created: older versions were settled
  // Ingest of the sealed version: one at a time per file, in version order.
  //   kIdle      --Enqueue-------------------------------> kQueued
  //   kQueued    --a worker takes it (still due)---------> kRunning
  //              --taken, nothing due (committed, gone)--> kIdle
  //   kRunning   --committed, superseded or unlinked-----> kIdle, and queued
  //                                                        again at once if a
  //                                                        newer version is due
  //              --failed---------------------------------> kFailed, or
  //                                                        kWaitingForSpace if
  //                                                        the store's disk is
  //                                                        full
  //   kFailed    --a newer version is sealed, or restart--> kIdle
  //   kWaitingForSpace --the store has room again---------> kQueued
  enum class Ingest : uint8_t { kIdle, kQueued, kRunning, kFailed, kWaitingForSpace };
  Ingest ingest = Ingest::kIdle;
  uint64_t ingesting_seq = 0;  // the version being ingested, in kRunning
  uint64_t committed_seq = 0;  // the newest version committed
  // Handles and attributes.
  uint32_t writers = 0;  // open handles with write access
  uint32_t handles = 0;  // open handles reading or writing the spool
  bool unlinked = false;
  int64_t mtime_ns = 0;  // of the newest version

  bool shares_sealed() const { return draft && draft == sealed; }
  const SpoolFile& newest() const { return draft ? draft : sealed; }
  bool has_uncommitted() const { return (draft && dirty) || (sealed && !sealed_committed); }
  bool ingest_pending() const { return ingest == Ingest::kQueued || ingest == Ingest::kRunning; }
  bool ingest_failed() const { return ingest == Ingest::kFailed || ingest == Ingest::kWaitingForSpace; }
  bool ingesting(uint64_t seq) const { return ingest == Ingest::kRunning && ingesting_seq == seq; }
  bool ingest_due() const { return sealed && !sealed_committed && !ingest_failed() && !unlinked; }
};

struct Filesystem::Handle {
  uint64_t ino = 0;
  bool write = false;
  bool spooled = false;                  // reads and writes go to the spool
  std::shared_ptr<FileReader> reader;    // committed content (read-only handles)
  Inode inode;                           // attributes at open, for fstat after unlink
  std::atomic<uint64_t> next_offset{0};  // where a sequential reader reads next (reads may be concurrent)
  std::atomic<uint32_t> readahead_end{0};  // chunks below this were queued for read-ahead already
};

Filesystem::Filesystem(Store* store, const FsOptions& options)
    : store_(store), options_(options), cache_(options.cache_bytes) {}

Status Filesystem::Open(Store* store, const FsOptions& options, std::unique_ptr<Filesystem>* out) {
  std::unique_ptr<Filesystem> fs(new Filesystem(store, options));
  TPDE_RETURN_IF_ERROR(Spool::Open(options.spool_dir, &fs->spool_));
  TPDE_RETURN_IF_ERROR(fs->Recover());
  for (size_t i = 0; i < std::max<size_t>(1, options.ingest_threads); ++i) {
    fs->ingest_workers_.emplace_back([f = fs.get()] { f->IngestLoop(); });
  }
  // Read-ahead decodes on every core: a cold sequential read of a keyframe
  // is bound by chunk decode, which scales with threads, and by the disk,
  // which needs many payload reads in flight. The window is 8 MiB per core
  // (at least 16) and at most an eighth of the chunk cache: a window of half
  // the cache took 20-45% more daemon CPU per GB read and was slower warm
  // (bench/read_path_bench.py: docs/benchmarks.md, "The read path"). With
  // the default cache that is 32 MiB; a larger --cache-mb widens it.
  const size_t ra_threads = std::max<size_t>(2, std::thread::hardware_concurrency());
  if (fs->options_.readahead_chunks == kAutoReadahead) {
    fs->options_.readahead_chunks =
        std::clamp<size_t>(8 * ra_threads, 16, std::max<size_t>(16, (fs->options_.cache_bytes >> 20) / 8));
  }
  for (size_t i = 0; i < ra_threads; ++i) fs->ra_workers_.emplace_back([f = fs.get()] { f->ReadaheadLoop(); });
  fs->gc_thread_ = std::thread([f = fs.get()] { f->GcLoop(); });
  fs->RequestGc();  // deletions of an earlier run may be pending
  *out = std::move(fs);
  return Status::OK();
}

Filesystem::~Filesystem() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    stopping_ = true;
  }
  ingest_cv_.notify_all();
  idle_cv_.notify_all();
  gc_cv_.notify_all();
  {
    std::lock_guard<std::mutex> lock(ra_mu_);
    ra_queue_.clear();
  }
  ra_cv_.notify_all();
  for (auto& t : ingest_workers_) t.join();
  for (auto& t : ra_workers_) t.join();
  if (gc_thread_.joinable()) gc_thread_.join();
  // Sealed versions not yet committed stay in the spool for the next start,
  // made durable so that a reboot in between keeps them too.
  bool clean = true;
  for (auto& [ino, sp] : spooled_) {
    if (sp->sealed && !sp->sealed_committed && !sp->sealed_durable) {
      Status s = spool_.MakeDurable(ino, sp->sealed_seq, sp->sealed->get());
      if (!s.ok()) {
        spdlog::warn("stopping: syncing inode {}: {}", ino, s.ToString());
        clean = false;
      }
    }
  }
  spooled_.clear();
  if (clean) {
    Status s = spool_.MarkCleanStop();
    if (!s.ok()) spdlog::warn("stopping: marking a clean stop: {}", s.ToString());
  }
}

Status Filesystem::Recover() {
  Spool::RecoveryReport report;
  TPDE_RETURN_IF_ERROR(spool_.Recover(&report));
  for (const auto& line : report.log) spdlog::info("recovery: {}", line);
  for (uint64_t ino : report.unfinished_new) {
    // Created and never closed or fsynced: it never had a complete version.
    Inode n;
    if (store_->GetInode(ino, &n).ok() && n.type == InodeType::kFile && n.object == 0) {
      Status r = store_->RemoveFileInode(ino);
      if (!r.ok()) spdlog::warn("recovery: removing unfinished inode {}: {}", ino, r.ToString());
      spdlog::info("recovery: removed inode {}: created, never closed or fsynced", ino);
    }
  }
  for (const auto& v : report.versions) {
    Inode n;
    Status s = store_->GetInode(v.ino, &n);
    if (!s.ok() || n.type != InodeType::kFile) {  // removed meanwhile
      TPDE_RETURN_IF_ERROR(spool_.RemoveSealed(v.ino, v.seq));
      continue;
    }
    auto sp = std::make_unique<SpoolState>();
    int fd = -1;
    TPDE_RETURN_IF_ERROR(spool_.OpenSealed(v.ino, v.seq, &fd));
    sp->sealed = std::make_shared<SpoolFd>(fd);
    struct stat sb {};
    ::fstat(fd, &sb);
    sp->sealed_seq = v.seq;
    sp->sealed_durable = v.synced;
    next_seq_ = std::max(next_seq_, v.seq + 1);
    sp->mtime_ns = sp->sealed_mtime_ns = int64_t{sb.st_mtim.tv_sec} * 1000000000 + sb.st_mtim.tv_nsec;
    std::lock_guard<std::mutex> lock(mu_);
    spooled_[v.ino] = std::move(sp);
    Enqueue(v.ino, /*delay=*/false);
    spdlog::info("recovery: inode {} queued for ingest", v.ino);
  }
  return Status::OK();
}

// ---- Attributes -------------------------------------------------------------

void Filesystem::StatFromInode(const Inode& n, struct stat* st) {
  std::memset(st, 0, sizeof(*st));
  st->st_ino = n.ino;
  switch (n.type) {
    case InodeType::kDirectory:
      st->st_mode = S_IFDIR | n.mode;
      st->st_nlink = 2;
      break;
    case InodeType::kSymlink:
      st->st_mode = S_IFLNK | n.mode;
      st->st_nlink = 1;
      break;
    case InodeType::kFile:
      st->st_mode = S_IFREG | n.mode;
      st->st_nlink = n.nlink;
      break;
  }
  st->st_uid = n.uid;
  st->st_gid = n.gid;
  st->st_size = static_cast<off_t>(n.size);
  st->st_blksize = 1 << 20;
  st->st_blocks = static_cast<blkcnt_t>((n.size + 511) / 512);
  st->st_mtim = ToTimespec(n.mtime_ns);
  st->st_atim = st->st_mtim;
  st->st_ctim = ToTimespec(n.ctime_ns);
}

void Filesystem::OverlaySpool(uint64_t ino, struct stat* st) {
  auto it = spooled_.find(ino);
  if (it == spooled_.end() || !it->second->newest()) return;
  struct stat sb {};
  if (::fstat(it->second->newest()->get(), &sb) == 0) {
    st->st_size = sb.st_size;
    st->st_blocks = static_cast<blkcnt_t>((sb.st_size + 511) / 512);
  }
  st->st_mtim = ToTimespec(it->second->mtime_ns);
  st->st_atim = st->st_mtim;
}

int Filesystem::Lookup(uint64_t parent, const std::string& name, struct stat* st) {
  if (name.size() > kNameMax) return ENAMETOOLONG;
  Inode n;
  Status s = store_->Lookup(parent, name, &n);
  if (!s.ok()) return ToErrno(s);
  StatFromInode(n, st);
  std::lock_guard<std::mutex> lock(mu_);
  if (doomed_.count(n.ino)) return ENOENT;
  OverlaySpool(n.ino, st);
  return 0;
}

int Filesystem::GetAttr(uint64_t ino, uint64_t fh, struct stat* st) {
  Inode n;
  Status s = store_->GetInode(ino, &n);
  std::lock_guard<std::mutex> lock(mu_);
  if (s.IsNotFound()) {  // unlinked but still open?
    auto it = open_inodes_.find(ino);
    if (it != open_inodes_.end()) {
      n = it->second.inode;
    } else if (fh != 0) {
      n = reinterpret_cast<Handle*>(fh)->inode;
    } else {
      return ENOENT;
    }
    n.nlink = 0;
  } else if (!s.ok()) {
    return ToErrno(s);
  }
  StatFromInode(n, st);
  OverlaySpool(ino, st);
  return 0;
}

void Filesystem::TrackOpen(const Inode& n) {
  OpenInode& o = open_inodes_[n.ino];
  o.handles++;
  o.inode = n;
}

void Filesystem::TrackClose(uint64_t ino) {
  auto it = open_inodes_.find(ino);
  if (it != open_inodes_.end() && --it->second.handles == 0) open_inodes_.erase(it);
}

int Filesystem::SetAttr(uint64_t ino, uint64_t fh, const SetAttrRequest& req, struct stat* st) {
  (void)fh;
  if (req.size) {
    std::lock_guard<std::mutex> lock(mu_);
    SpoolState* sp = nullptr;
    if (int err = OpenDraft(ino, *req.size == 0, /*new_file=*/false, &sp); err != 0) return err;
    if (int err = MakeDraftPrivate(ino, sp); err != 0) return err;
    if (::ftruncate(sp->draft->get(), static_cast<off_t>(*req.size)) != 0) return errno;
    sp->dirty = true;
    sp->mtime_ns = req.mtime_ns.value_or(NowNs());
    if (sp->writers == 0) {  // truncate(2) without an open writer: a complete version
      if (int err = CloseDraft(ino, sp); err != 0) return err;
    }
  }
  if (req.mtime_ns && !req.mode && !req.uid && !req.gid) {
    // The kernel stamps the mtime of a file being written on every write:
    // kept with the draft and committed by its ingest, not by a store commit
    // each time (nor failing the write when the store's disk is full).
    std::lock_guard<std::mutex> lock(mu_);
    auto it = spooled_.find(ino);
    if (it != spooled_.end() && it->second->draft && it->second->dirty) {  // sealed with the new content
      Inode n;
      Status s = store_->GetInode(ino, &n);
      if (!s.ok() && !open_inodes_.count(ino)) return ToErrno(s);
      if (!s.ok()) n = open_inodes_.at(ino).inode;
      it->second->mtime_ns = *req.mtime_ns;
      StatFromInode(n, st);
      OverlaySpool(ino, st);
      return 0;
    }
  }
  Store::AttrChanges changes;
  changes.mode = req.mode;
  changes.uid = req.uid;
  changes.gid = req.gid;
  changes.mtime_ns = req.mtime_ns;
  Inode n;
  Status s = store_->SetAttributes(ino, changes, &n);
  std::lock_guard<std::mutex> lock(mu_);
  if (s.IsNotFound()) {  // unlinked but still open: change what the handles see
    auto it = open_inodes_.find(ino);
    if (it == open_inodes_.end()) return ENOENT;
    Inode& o = it->second.inode;
    if (req.mode) o.mode = *req.mode;
    if (req.uid) o.uid = *req.uid;
    if (req.gid) o.gid = *req.gid;
    if (req.mtime_ns) o.mtime_ns = *req.mtime_ns;
    n = o;
    n.nlink = 0;
  } else if (!s.ok()) {
    // A change the writer asked for did not happen: what it writes is not
    // the version it meant, so it is never committed.
    if (auto it = spooled_.find(ino); it != spooled_.end() && it->second->draft && it->second->failed == 0) {
      it->second->failed = ToErrno(s);
    }
    return ToErrno(s);
  } else if (auto it = open_inodes_.find(ino); it != open_inodes_.end()) {
    it->second.inode = n;
  }
  StatFromInode(n, st);
  if (req.mtime_ns) {
    if (auto it = spooled_.find(ino); it != spooled_.end()) {
      SpoolState* sp = it->second.get();
      sp->mtime_ns = *req.mtime_ns;
      if (!sp->draft) sp->sealed_mtime_ns = *req.mtime_ns;  // utimens after close: the version to ingest
    }
  }
  OverlaySpool(ino, st);
  return 0;
}

// ---- Namespace --------------------------------------------------------------

int Filesystem::Mkdir(uint64_t parent, const std::string& name, uint32_t mode, uint32_t uid, uint32_t gid,
                      struct stat* st) {
  if (name.size() > kNameMax) return ENAMETOOLONG;
  Inode n;
  Status s = store_->MakeDirectory(parent, name, mode, uid, gid, &n);
  if (!s.ok()) return ToErrno(s);
  StatFromInode(n, st);
  return 0;
}

int Filesystem::Rmdir(uint64_t parent, const std::string& name) {
  if (name.size() > kNameMax) return ENAMETOOLONG;
  return ToErrno(store_->RemoveDirectory(parent, name));
}

int Filesystem::Unlink(uint64_t parent, const std::string& name) {
  if (name.size() > kNameMax) return ENAMETOOLONG;
  Inode n;
  Status s = store_->Unlink(parent, name, &n);
  if (!s.ok()) return ToErrno(s);
  RequestGc();
  std::lock_guard<std::mutex> lock(mu_);
  if (auto it = spooled_.find(n.ino); it != spooled_.end() && n.nlink <= 1) {
    it->second->unlinked = true;
    MaybeDropSpool(n.ino);
  }
  return 0;
}

int Filesystem::Rename(uint64_t parent, const std::string& name, uint64_t new_parent, const std::string& new_name,
                       unsigned flags) {
  if (name.size() > kNameMax || new_name.size() > kNameMax) return ENAMETOOLONG;
  Inode dst;  // the target replaced, if any
  Status s = store_->Rename(parent, name, new_parent, new_name, flags, &dst);
  if (!s.ok()) return ToErrno(s);
  if (dst.ino == 0) return 0;
  RequestGc();
  if (dst.type == InodeType::kFile && dst.nlink <= 1) {
    std::lock_guard<std::mutex> lock(mu_);
    if (auto it = spooled_.find(dst.ino); it != spooled_.end()) {
      it->second->unlinked = true;
      MaybeDropSpool(dst.ino);
    }
  }
  return 0;
}

int Filesystem::Symlink(const std::string& target, uint64_t parent, const std::string& name, uint32_t uid,
                        uint32_t gid, struct stat* st) {
  if (name.size() > kNameMax) return ENAMETOOLONG;
  Inode n;
  Status s = store_->Symlink(parent, name, target, uid, gid, &n);
  if (!s.ok()) return ToErrno(s);
  StatFromInode(n, st);
  return 0;
}

int Filesystem::Readlink(uint64_t ino, std::string* target) {
  Inode n;
  Status s = store_->GetInode(ino, &n);
  if (!s.ok()) return ToErrno(s);
  if (n.type != InodeType::kSymlink) return EINVAL;
  *target = n.target;
  return 0;
}

int Filesystem::ReadDir(uint64_t ino, std::vector<DirListEntry>* entries) {
  Inode dir;
  Status s = store_->GetInode(ino, &dir);
  if (!s.ok()) return ToErrno(s);
  if (dir.type != InodeType::kDirectory) return ENOTDIR;
  std::vector<DirEntry> children;
  s = store_->ReadDir(ino, &children);
  if (!s.ok()) return ToErrno(s);
  entries->clear();
  DirListEntry self{".", {}}, up{"..", {}};
  StatFromInode(dir, &self.st);
  Inode parent;
  if (store_->GetInode(dir.parent, &parent).ok()) StatFromInode(parent, &up.st); else up.st = self.st;
  entries->push_back(self);
  entries->push_back(up);
  std::lock_guard<std::mutex> lock(mu_);
  for (const auto& c : children) {
    Inode n;
    if (!store_->GetInode(c.ino, &n).ok() || doomed_.count(c.ino)) continue;  // removed (or being removed)
    DirListEntry e{c.name, {}};
    StatFromInode(n, &e.st);
    OverlaySpool(n.ino, &e.st);
    entries->push_back(std::move(e));
  }
  return 0;
}

int Filesystem::StatFs(struct statvfs* sv) {
  std::memset(sv, 0, sizeof(*sv));
  uint64_t free = 0, total = 0, inodes = 0;
  if (!spool_.FreeBytes(&free, &total).ok() || !store_->CountInodes(&inodes).ok()) return EIO;
  sv->f_bsize = sv->f_frsize = 4096;
  sv->f_blocks = total / 4096;
  sv->f_bfree = sv->f_bavail = free / 4096;
  sv->f_files = inodes + (1u << 30);
  sv->f_ffree = sv->f_favail = 1u << 30;
  sv->f_namemax = 255;
  return 0;
}

// ---- Open files -------------------------------------------------------------

int Filesystem::OpenDraft(uint64_t ino, bool truncate, bool new_file, SpoolState** state) {
  auto [it, inserted] = spooled_.try_emplace(ino);
  if (inserted) {
    it->second = std::make_unique<SpoolState>();
    it->second->born = next_seq_;
  }
  SpoolState* sp = it->second.get();
  *state = sp;
  auto fail = [&](int err) {
    if (inserted) spooled_.erase(it);
    return err;
  };
  if (sp->draft) {
    if (!truncate) return 0;
    if (int err = MakeDraftPrivate(ino, sp); err != 0) return err;
    if (::ftruncate(sp->draft->get(), 0) != 0) return errno;
    sp->dirty = true;
    return 0;
  }
  sp->dirty = truncate || new_file;
  sp->failed = 0;
  if (sp->sealed && !truncate) {  // copied on its first change
    sp->draft = sp->sealed;
    return 0;
  }
  int fd = -1;
  Status s = spool_.CreateDraft(ino, new_file, &fd);
  if (!s.ok()) {
    spdlog::warn("inode {}: creating a draft: {}", ino, s.ToString());
    return fail(ToErrno(s));
  }
  sp->draft = std::make_shared<SpoolFd>(fd);
  sp->draft_new_file = new_file;
  if (truncate || new_file || sp->sealed) return 0;

  // The committed content, materialised.
  Inode n;
  s = store_->GetInode(ino, &n);
  if (s.ok() && n.type != InodeType::kFile) s = Status::InvalidArgument("not a file").WithPosixCode(EISDIR);
  if (s.ok()) sp->mtime_ns = n.mtime_ns;
  int write_errno = 0;
  if (s.ok() && n.object != 0) {
    std::unique_ptr<FileReader> reader;
    s = store_->OpenReader(ino, &reader);
    uint64_t offset = 0;
    if (s.ok()) {
      s = reader->DecodeAll(64ull << 20, [&](const uint8_t* data, size_t len) -> Status {
        while (len > 0) {
          ssize_t w = ::pwrite(fd, data, len, static_cast<off_t>(offset));
          if (w < 0 && errno == EINTR) continue;
          if (w < 0) {
            write_errno = errno;
            return Status::IOError(std::strerror(errno));
          }
          data += w;
          len -= static_cast<size_t>(w);
          offset += static_cast<uint64_t>(w);
        }
        return Status::OK();
      });
    }
  }
  if (!s.ok()) {
    sp->draft.reset();
    spool_.RemoveDraft(ino, false);
    spdlog::warn("materialising inode {}: {}", ino, s.ToString());
    return fail(write_errno != 0 && s.posix_code() == 0 ? write_errno : ToErrno(s));
  }
  return 0;
}

int Filesystem::MakeDraftPrivate(uint64_t ino, SpoolState* sp) {
  if (!sp->shares_sealed()) return 0;
  int fd = -1;
  Status s = spool_.CopyToDraft(ino, sp->sealed->get(), &fd);
  if (!s.ok()) {
    spdlog::warn("inode {}: copying its sealed version to a draft: {}", ino, s.ToString());
    return ToErrno(s);
  }
  sp->draft = std::make_shared<SpoolFd>(fd);
  sp->draft_new_file = false;
  return 0;
}

int Filesystem::SealDraft(uint64_t ino, SpoolState* sp) {
  const uint64_t seq = next_seq_++;
  Status s = spool_.SealDraft(ino, sp->draft_new_file, seq);
  if (!s.ok()) {
    spdlog::warn("inode {}: sealing version {}: {}", ino, seq, s.ToString());
    return ToErrno(s);
  }
  // The version it replaces goes, unless it is the only durable one.
  if (sp->sealed) {
    if (sp->sealed_durable && !sp->sealed_committed) {
      if (sp->durable_seq) RemoveVersion(ino, sp, *sp->durable_seq);
      sp->durable_seq = sp->sealed_seq;
    } else {
      RemoveVersion(ino, sp, sp->sealed_seq);
    }
  }
  sp->sealed = sp->draft;  // the draft shares it until its next change
  sp->sealed_seq = seq;
  sp->sealed_durable = false;
  sp->sealed_committed = false;
  sp->sealed_mtime_ns = sp->mtime_ns;
  sp->draft_new_file = false;
  sp->dirty = false;
  if (sp->ingest_failed()) sp->ingest = SpoolState::Ingest::kIdle;  // the new version is tried
  return 0;
}

int Filesystem::CloseDraft(uint64_t ino, SpoolState* sp) {
  int err = 0;
  if (sp->failed) {
    // A write failed (ENOSPC, EIO): this version is incomplete and is never
    // committed. The file reverts to its last complete version.
    Inode n;
    const bool named = store_->GetInode(ino, &n).ok();
    if (sp->draft_new_file && !sp->sealed) {
      // Created by this version: it never had a complete one, so it is
      // absent rather than empty. If the store cannot commit the removal now
      // (its disk is full too), the file is hidden and removed later; the
      // empty N.new left in the spool removes it at the next start otherwise.
      Status r = store_->RemoveFileInode(ino);
      if (r.ok() || r.IsNotFound()) {
        spool_.RemoveDraft(ino, true);
      } else {
        (void)::ftruncate(sp->draft->get(), 0);
        doomed_.insert(ino);
      }
      sp->unlinked = true;
      spdlog::warn("inode {}: a write failed; the new file is removed", ino);
    } else {
      if (!sp->shares_sealed()) spool_.RemoveDraft(ino, sp->draft_new_file);
      spdlog::warn("inode {}: a write failed; the file keeps its last complete version", ino);
    }
    sp->mtime_ns = sp->sealed_mtime_ns;
    ++generations_[ino];
    if (invalidate_ && named) pending_invalidations_.push_back({ino, n.parent, store_->NameOf(n)});
    err = sp->failed;
  } else if (sp->dirty) {
    err = SealDraft(ino, sp);
  } else if (!sp->shares_sealed()) {
    spool_.RemoveDraft(ino, sp->draft_new_file);  // unchanged copy
  }
  sp->draft.reset();
  sp->dirty = false;
  sp->failed = 0;
  if (sp->ingest_due()) Enqueue(ino);  // sealed now, or by an fsync before
  return err;
}

void Filesystem::RemoveVersion(uint64_t ino, SpoolState* sp, uint64_t seq) {
  if (sp->ingesting(seq)) return;  // the ingest worker removes it when done
  if (sp->durable_seq == seq) sp->durable_seq.reset();
  Status s = spool_.RemoveSealed(ino, seq);
  if (!s.ok()) spdlog::warn("inode {}: removing version {}: {}", ino, seq, s.ToString());
}

int Filesystem::Create(uint64_t parent, const std::string& name, uint32_t mode, int flags, uint32_t uid,
                       uint32_t gid, struct stat* st, uint64_t* fh) {
  if (name.size() > kNameMax) return ENAMETOOLONG;
  Inode n;
  Status s = store_->CreateFile(parent, name, mode, uid, gid, &n);
  if (s.IsAlreadyExists()) {
    if (flags & O_EXCL) return EEXIST;
    s = store_->Lookup(parent, name, &n);
    if (!s.ok()) return ToErrno(s);
    bool keep = false;
    if (int err = Open(n.ino, flags, fh, &keep); err != 0) return err;
    return GetAttr(n.ino, *fh, st);
  }
  if (!s.ok()) return ToErrno(s);
  std::lock_guard<std::mutex> lock(mu_);
  SpoolState* sp = nullptr;
  if (int err = OpenDraft(n.ino, true, /*new_file=*/true, &sp); err != 0) {
    // No draft (the spool's disk is full): the new name goes again, or is
    // hidden until its removal commits.
    Status r = store_->RemoveFileInode(n.ino);
    if (!r.ok() && !r.IsNotFound()) doomed_.insert(n.ino);
    return err;
  }
  sp->writers++;
  sp->handles++;
  sp->mtime_ns = n.mtime_ns;
  auto h = std::make_unique<Handle>();
  h->ino = n.ino;
  h->write = true;
  h->spooled = true;
  h->inode = n;
  TrackOpen(n);
  *fh = reinterpret_cast<uint64_t>(h.release());
  StatFromInode(n, st);
  return 0;
}

int Filesystem::Open(uint64_t ino, int flags, uint64_t* fh, bool* keep_cache) {
  const int acc = flags & O_ACCMODE;
  const bool write = acc == O_WRONLY || acc == O_RDWR;
  const bool truncate = write && (flags & O_TRUNC);
  auto h = std::make_unique<Handle>();
  h->ino = ino;
  h->write = write;
  Status s = store_->GetInode(ino, &h->inode);
  if (!s.ok()) return ToErrno(s);
  if (h->inode.type != InodeType::kFile) return EISDIR;
  *keep_cache = false;

  std::unique_lock<std::mutex> lock(mu_);
  auto it = spooled_.find(ino);
  if (write) {
    SpoolState* sp = nullptr;
    if (int err = OpenDraft(ino, truncate, /*new_file=*/false, &sp); err != 0) return err;
    if (truncate) sp->mtime_ns = NowNs();
    sp->handles++;
    sp->writers++;
    h->spooled = true;
  } else if (it != spooled_.end()) {
    it->second->handles++;
    h->spooled = true;
  } else {
    lock.unlock();
    // Read again: an ingest may have committed (and left the spool) since
    // the inode was read above; it commits before it leaves.
    s = store_->GetInode(ino, &h->inode);
    if (!s.ok()) return ToErrno(s);
    if (h->inode.object == 0) {
      // Created, never committed, not in the spool: its content was lost
      // (a damaged log). Reported, never served as an empty file.
      spdlog::warn("open of inode {}: no content was ever committed (a damaged log?)", ino);
      return EIO;
    }
    {
      std::unique_ptr<FileReader> reader;
      s = store_->OpenReader(ino, &reader);
      if (!s.ok()) {
        spdlog::warn("open of inode {}: {}", ino, s.ToString());
        return ToErrno(s);
      }
      h->reader = std::move(reader);
    }
    *keep_cache = true;  // committed content never changes in place
    lock.lock();
  }
  TrackOpen(h->inode);
  *fh = reinterpret_cast<uint64_t>(h.release());
  return 0;
}

int Filesystem::Read(uint64_t fh, uint64_t offset, size_t size, char* out, size_t* read_bytes) {
  Handle* h = reinterpret_cast<Handle*>(fh);
  *read_bytes = 0;
  if (!h->spooled) return ReadCommitted(h, offset, size, out, read_bytes);
  SpoolFile file;
  {
    std::lock_guard<std::mutex> lock(mu_);
    file = spooled_.at(h->ino)->newest();
  }
  if (!file) {  // a failed rewrite was dropped: the committed version is the newest
    std::unique_ptr<FileReader> reader;
    Status s = store_->OpenReader(h->ino, &reader);
    if (s.IsNotFound()) return 0;
    if (!s.ok()) return ToErrno(s);
    if (reader->manifest().file_bytes == 0) return 0;
    Handle committed;
    committed.ino = h->ino;
    committed.reader = std::move(reader);
    return ReadCommitted(&committed, offset, size, out, read_bytes);
  }
  while (*read_bytes < size) {
    ssize_t n = ::pread(file->get(), out + *read_bytes, size - *read_bytes, static_cast<off_t>(offset + *read_bytes));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) break;
    *read_bytes += static_cast<size_t>(n);
  }
  return 0;
}

ChunkCache::Chunk Filesystem::GetChunk(const std::shared_ptr<FileReader>& reader, uint32_t chunk, int* err) {
  const uint64_t object = reader->manifest().object_id;
  ChunkCache::Chunk data = cache_.GetOrLoad(object, chunk, [&]() -> ChunkCache::Chunk {
    thread_local ChunkScratch scratch;
    auto buf = std::make_shared<ChunkBuffer>(reader->manifest().chunks[chunk].content_bytes());
    Status s = reader->ReadChunk(chunk, buf->data(), &scratch);
    if (!s.ok()) {
      spdlog::warn("read of object {} chunk {}: {}", object, chunk, s.ToString());
      return nullptr;  // corrupt data is reported, never returned
    }
    chunk_decoded_bytes_ += buf->size();
    return buf;
  });
  if (!data) *err = EIO;
  return data;
}

int Filesystem::ReadCommitted(Handle* h, uint64_t offset, size_t size, char* out, size_t* read_bytes) {
  if (!h->reader) return 0;  // empty file
  const Manifest& m = h->reader->manifest();
  if (offset >= m.file_bytes) return 0;
  size = static_cast<size_t>(std::min<uint64_t>(size, m.file_bytes - offset));
  const bool sequential = offset == h->next_offset;
  uint32_t c = m.ChunkAt(offset);
  uint32_t last = c;
  while (*read_bytes < size) {
    int err = 0;
    ChunkCache::Chunk chunk = GetChunk(h->reader, c, &err);
    if (!chunk) return err;
    const uint64_t begin = m.chunk_file_offset(c);
    const uint64_t from = offset + *read_bytes - begin;
    const size_t n = static_cast<size_t>(std::min<uint64_t>(chunk->size() - from, size - *read_bytes));
    std::memcpy(out + *read_bytes, chunk->data() + from, n);
    *read_bytes += n;
    last = c++;
  }
  h->next_offset = offset + *read_bytes;
  if (sequential && options_.readahead_chunks > 0) {
    // The window is in bytes (readahead_chunks MiB): a file of many small
    // tensors has many small chunks, and a window counted in chunks would
    // run dry within one read.
    // Only chunks not queued by an earlier read of this handle are queued.
    const uint64_t window = uint64_t{options_.readahead_chunks} << 20;
    const uint32_t n = static_cast<uint32_t>(m.chunks.size());
    uint32_t end = last + 1;
    for (uint64_t ahead = 0; end < n && ahead < window; ++end) ahead += m.chunks[end].content_bytes();
    uint32_t queued = h->readahead_end.load();
    while (queued < end && !h->readahead_end.compare_exchange_weak(queued, end)) {
    }
    const uint32_t begin = std::max(last + 1, queued);
    if (begin < end) {
      std::lock_guard<std::mutex> lock(ra_mu_);
      for (uint32_t k = begin; k < end && ra_queue_.size() < 4096; ++k) {  // a hint: never a backlog
        ra_queue_.push_back({h->reader, k});  // a chunk cached or loading meanwhile costs a lookup
      }
      ra_cv_.notify_all();
    }
  }
  return 0;
}

void Filesystem::ReadaheadLoop() {
  const bool batched = store_->options().chain_decoder != nullptr;
  constexpr size_t kMaxBatchChunks = 64;
  constexpr uint64_t kMaxBatchBytes = 64u << 20;
  std::vector<ReadaheadJob> batch;
  while (true) {
    ReadaheadJob job;
    {
      std::unique_lock<std::mutex> lock(ra_mu_);
      ra_cv_.wait(lock, [&] { return stopping_ || !ra_queue_.empty(); });
      if (stopping_) return;
      job = std::move(ra_queue_.front());
      ra_queue_.pop_front();
      // With a batched decoder (the GPU's), the queued chunks that follow in
      // the same delta-coded file go with it as one batch. Keyframe chunks
      // (the newest version) have no chain to apply: one at a time on the
      // CPU is faster for them.
      if (batched && job.reader->chain_depth() > 0) {
        batch.assign(1, job);
        uint64_t bytes = job.reader->manifest().chunks[job.chunk].content_bytes();
        while (!ra_queue_.empty() && ra_queue_.front().reader == job.reader && batch.size() < kMaxBatchChunks &&
               bytes < kMaxBatchBytes) {
          bytes += job.reader->manifest().chunks[ra_queue_.front().chunk].content_bytes();
          batch.push_back(std::move(ra_queue_.front()));
          ra_queue_.pop_front();
        }
      }
    }
    if (batch.size() > 1) {
      ReadaheadBatch(batch);
      batch.clear();
      continue;
    }
    batch.clear();
    int err = 0;
    GetChunk(job.reader, job.chunk, &err);
  }
}

void Filesystem::ReadaheadBatch(const std::vector<ReadaheadJob>& jobs) {
  const FileReader& reader = *jobs[0].reader;
  const Manifest& m = reader.manifest();
  std::vector<uint32_t> chunks;
  std::vector<std::shared_ptr<ChunkBuffer>> bufs;
  std::vector<uint8_t*> outs;
  for (const ReadaheadJob& j : jobs) {
    if (cache_.Contains(m.object_id, j.chunk)) continue;  // a reader got there first
    chunks.push_back(j.chunk);
    bufs.push_back(std::make_shared<ChunkBuffer>(m.chunks[j.chunk].content_bytes()));
    outs.push_back(bufs.back()->data());
  }
  if (chunks.empty()) return;
  Status s = reader.ReadChunks(chunks.data(), chunks.size(), outs.data(), store_->options().chain_decoder.get(),
                               /*pool=*/nullptr);
  if (!s.ok()) {
    // Read-ahead is a hint: the reader decodes (and reports) the chunk itself.
    spdlog::warn("read-ahead of object {}: {}", m.object_id, s.ToString());
    return;
  }
  uint64_t bytes = 0;
  for (size_t i = 0; i < chunks.size(); ++i) {
    bytes += bufs[i]->size();
    cache_.Insert(m.object_id, chunks[i], std::move(bufs[i]));
  }
  batch_decoded_bytes_ += bytes;
}

int Filesystem::BeginWrite(uint64_t fh, SpoolFile* file) {
  Handle* h = reinterpret_cast<Handle*>(fh);
  if (!h->write) return EBADF;
  std::lock_guard<std::mutex> lock(mu_);
  SpoolState* sp = spooled_.at(h->ino).get();
  if (int err = MakeDraftPrivate(h->ino, sp); err != 0) return err;
  sp->writes_in_flight++;
  *file = sp->draft;
  return 0;
}

void Filesystem::EndWrite(uint64_t fh, int err) {
  Handle* h = reinterpret_cast<Handle*>(fh);
  std::lock_guard<std::mutex> lock(mu_);
  SpoolState* sp = spooled_.at(h->ino).get();
  if (err == 0) {
    sp->dirty = true;
    sp->mtime_ns = NowNs();
  } else if (sp->failed == 0) {
    sp->failed = err;
  }
  if (--sp->writes_in_flight == 0) writes_cv_.notify_all();
}

int Filesystem::Fsync(uint64_t fh) {
  Handle* h = reinterpret_cast<Handle*>(fh);
  // The file's name and attributes become durable with it.
  if (Status s = store_->SyncLog(); !s.ok()) return ToErrno(s);
  if (!h->spooled) return 0;  // committed content is durable
  std::unique_lock<std::mutex> lock(mu_);
  SpoolState* sp = spooled_.at(h->ino).get();
  writes_cv_.wait(lock, [&] { return sp->writes_in_flight == 0; });
  if (sp->draft && sp->failed) return sp->failed;  // what was written is not complete
  if (sp->draft && sp->dirty) {
    // The draft as it is now becomes a complete version; later writes go
    // to a copy of it.
    if (int err = SealDraft(h->ino, sp); err != 0) return err;
  }
  if (!sp->sealed || sp->sealed_committed || sp->sealed_durable) return 0;
  const SpoolFile file = sp->sealed;
  const uint64_t seq = sp->sealed_seq;
  lock.unlock();
  Status s = spool_.MakeDurable(h->ino, seq, file->get());  // no lock held while the disk syncs
  lock.lock();
  if (!s.ok()) {
    spdlog::warn("inode {}: fsync of version {}: {}", h->ino, seq, s.ToString());
    return ToErrno(s);
  }
  if (sp->sealed_seq == seq) {
    sp->sealed_durable = true;
    if (sp->durable_seq) RemoveVersion(h->ino, sp, *sp->durable_seq);
  }
  return 0;
}

int Filesystem::Flush(uint64_t fh) {
  Handle* h = reinterpret_cast<Handle*>(fh);
  if (!h->write) return 0;
  std::unique_lock<std::mutex> lock(mu_);
  SpoolState* sp = spooled_.at(h->ino).get();
  writes_cv_.wait(lock, [&] { return sp->writes_in_flight == 0; });
  if (sp->draft && sp->failed) return sp->failed;  // close(2) reports it; Release discards the version
  if (sp->writers > 1 || !sp->draft || !sp->dirty) return 0;
  // The last writer's close(2): from here the version is complete, whatever
  // happens to the daemon before the kernel releases the handle.
  if (int err = SealDraft(h->ino, sp); err != 0) return err;
  Enqueue(h->ino);
  return 0;
}

int Filesystem::FsyncDir() { return ToErrno(store_->SyncLog()); }

int Filesystem::Release(uint64_t fh) {
  std::unique_ptr<Handle> h(reinterpret_cast<Handle*>(fh));
  int err = 0;
  {
    std::lock_guard<std::mutex> lock(mu_);
    TrackClose(h->ino);
    if (!h->spooled) return 0;
    auto it = spooled_.find(h->ino);
    if (it == spooled_.end()) return 0;
    SpoolState* sp = it->second.get();
    sp->handles--;
    if (h->write && --sp->writers == 0 && sp->draft) {
      if (sp->unlinked) {
        if (!sp->shares_sealed()) spool_.RemoveDraft(h->ino, sp->draft_new_file);
        sp->draft.reset();
      } else {
        err = CloseDraft(h->ino, sp);
      }
    }
    MaybeDropSpool(h->ino);
  }
  FlushInvalidations();
  return err;
}

void Filesystem::FlushInvalidations() {
  std::vector<Invalidation> pending;
  {
    std::lock_guard<std::mutex> lock(mu_);
    pending.swap(pending_invalidations_);
  }
  for (const auto& i : pending) invalidate_(i);
}

void Filesystem::SetCacheInvalidator(std::function<void(const Invalidation&)> invalidate) {
  std::lock_guard<std::mutex> lock(mu_);
  invalidate_ = std::move(invalidate);
}

uint64_t Filesystem::Generation(uint64_t ino) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = generations_.find(ino);
  return it == generations_.end() ? 0 : it->second;
}

void Filesystem::Enqueue(uint64_t ino, bool delay) {
  SpoolState* sp = spooled_.at(ino).get();
  // Queued already, or running: the worker queues it again when it is done
  // if a newer version is due then.
  if (sp->ingest_pending()) return;
  sp->ingest = SpoolState::Ingest::kQueued;
  const auto wait = std::chrono::milliseconds(delay ? options_.ingest_delay_ms : 0);
  ingest_queue_.push_back({ino, std::chrono::steady_clock::now() + wait});
  ingest_cv_.notify_one();
}

void Filesystem::MaybeDropSpool(uint64_t ino) {
  auto it = spooled_.find(ino);
  if (it == spooled_.end()) return;
  SpoolState* sp = it->second.get();
  if (sp->handles > 0 || sp->ingest_pending()) return;
  if (!sp->unlinked && (sp->draft || (sp->sealed && !sp->sealed_committed))) return;
  // Unlinked, or everything committed: nothing in the spool is needed.
  if (sp->sealed) RemoveVersion(ino, sp, sp->sealed_seq);
  if (sp->durable_seq) RemoveVersion(ino, sp, *sp->durable_seq);
  if (sp->draft && !sp->shares_sealed()) spool_.RemoveDraft(ino, sp->draft_new_file);
  spooled_.erase(it);
  idle_cv_.notify_all();
}

void Filesystem::IngestLoop() {
  std::unique_lock<std::mutex> lock(mu_);
  while (true) {
    ingest_cv_.wait(lock, [&] { return stopping_ || !ingest_queue_.empty(); });
    if (stopping_) return;
    if (auto ready = ingest_queue_.front().not_before; std::chrono::steady_clock::now() < ready) {
      ingest_cv_.wait_until(lock, ready, [&] { return stopping_; });
      continue;
    }
    const uint64_t ino = ingest_queue_.front().ino;
    ingest_queue_.pop_front();
    auto it = spooled_.find(ino);
    if (it == spooled_.end()) {  // dropped while queued (unlinked)
      idle_cv_.notify_all();
      continue;
    }
    SpoolState* sp = it->second.get();
    if (sp->ingest != SpoolState::Ingest::kQueued) {  // an entry left by a state since dropped
      idle_cv_.notify_all();
      continue;
    }
    if (!sp->ingest_due()) {
      sp->ingest = SpoolState::Ingest::kIdle;
      MaybeDropSpool(ino);
      idle_cv_.notify_all();
      continue;
    }
    const uint64_t seq = sp->sealed_seq;
    const int64_t mtime = sp->sealed_mtime_ns;
    sp->ingest = SpoolState::Ingest::kRunning;
    sp->ingesting_seq = seq;
    lock.unlock();

    IngestResult r;
    Status s = store_->HasRoomForIngest()
                   ? store_->IngestInode(ino, spool_.SealedPath(ino, seq), mtime, &r)
                   : Status::NoSpace("the store's disk is full: waiting for space to be freed");

    lock.lock();
    sp = spooled_.at(ino).get();
    sp->ingest = SpoolState::Ingest::kIdle;
    if (s.ok()) {
      ++ingests_done_;
      sp->committed_seq = std::max(sp->committed_seq, seq);
      if (r.demotion_queued) {  // a keyframe waits to become a delta
        gc_needed_ = true;
        gc_cv_.notify_all();
      }
      // Committed versions are durable: older spool copies are not needed.
      if (sp->durable_seq && *sp->durable_seq <= seq) RemoveVersion(ino, sp, *sp->durable_seq);
      if (sp->sealed && sp->sealed_seq == seq) {
        sp->sealed_committed = true;
        if (sp->mtime_ns != mtime && !sp->draft) {  // utimens after close (rsync -a, cp -p) raced with the ingest
          Store::AttrChanges fix;
          fix.mtime_ns = sp->mtime_ns;
          Status ms = store_->SetAttributes(ino, fix);
          if (!ms.ok()) spdlog::warn("inode {}: restoring mtime: {}", ino, ms.ToString());
        }
      } else {
        RemoveVersion(ino, sp, seq);  // superseded while it was ingested
      }
    } else if (s.IsNotFound()) {
      sp->unlinked = true;  // removed while we ingested
      RemoveVersion(ino, sp, seq);
    } else {
      ++ingest_errors_;
      if (sp->sealed_seq == seq) {
        sp->ingest = s.IsNoSpace() ? SpoolState::Ingest::kWaitingForSpace : SpoolState::Ingest::kFailed;
      } else if (sp->durable_seq != seq) {
        RemoveVersion(ino, sp, seq);  // superseded while it was ingested
      }
      spdlog::warn("ingest of inode {} failed, kept in the spool: {}", ino, s.ToString());
    }
    if (sp->sealed && sp->sealed_seq != seq && sp->ingest_due()) Enqueue(ino, /*delay=*/false);
    MaybeDropSpool(ino);
    idle_cv_.notify_all();
  }
}

void Filesystem::RequestGc() {
  std::lock_guard<std::mutex> lock(mu_);
  gc_needed_ = true;
  gc_cv_.notify_all();
}

void Filesystem::GcLoop() {
  // Re-encoding and reclaim run on this thread and the store's background
  // pool, both below the priority of the threads that serve writes and reads.
  (void)::setpriority(PRIO_PROCESS, static_cast<id_t>(::gettid()), 10);
  std::unique_lock<std::mutex> lock(mu_);
  bool writes_stopped = false;
  // A collection that failed (most often a compaction on a full disk) is
  // tried again after 1, 2, 4 ... 32 ticks, without another deletion to
  // start it, so the space of deleted files comes back by itself.
  bool collect_again = false;
  int ticks_to_retry = 0, retry_interval = 1;
  while (true) {
    // Every few seconds regardless: a store stopped by a full disk resumes,
    // and ingests that failed for lack of space are retried, once space is
    // back (rm on the mount, or anything else freeing the disk).
    gc_cv_.wait_for(lock, std::chrono::seconds(2), [&] { return stopping_ || gc_needed_; });
    if (stopping_) return;
    if (gc_needed_) {
      // Let a burst of deletions (rm -rf of a checkpoint) finish first.
      gc_cv_.wait_for(lock, std::chrono::milliseconds(500), [&] { return stopping_; });
      if (stopping_) return;
    }
    const bool collect = gc_needed_ || (collect_again && --ticks_to_retry <= 0);
    gc_needed_ = false;
    lock.unlock();
    Status w = store_->CheckWrites();
    if (!w.ok() && !writes_stopped) spdlog::warn("the store takes no writes until space is freed: {}", w.ToString());
    if (w.ok() && writes_stopped) spdlog::info("the store takes writes again");
    writes_stopped = !w.ok();
    if (collect && w.ok()) {
      Status s = store_->CollectGarbage();
      if (!s.ok() && !collect_again) spdlog::warn("garbage collection: {}; retried by itself", s.ToString());
      if (s.ok() && collect_again) spdlog::info("garbage collection went through");
      retry_interval = s.ok() ? 1 : (collect_again ? std::min(2 * retry_interval, 32) : 1);
      collect_again = !s.ok();
      ticks_to_retry = retry_interval;
    } else if (collect) {
      collect_again = true;  // once the store resumes
      ticks_to_retry = 1;
    }
    lock.lock();
    for (auto it = doomed_.begin(); w.ok() && it != doomed_.end();) {
      Status r = store_->RemoveFileInode(*it);
      if (!r.ok() && !r.IsNotFound()) break;
      spool_.RemoveDraft(*it, true);
      it = doomed_.erase(it);
    }
    if (w.ok() && store_->HasRoomForIngest()) {
      for (auto& [ino, sp] : spooled_) {
        if (sp->ingest != SpoolState::Ingest::kWaitingForSpace) continue;
        sp->ingest = SpoolState::Ingest::kIdle;
        Enqueue(ino, /*delay=*/false);
      }
    }
  }
}

Status Filesystem::FlushAll() {
  std::unique_lock<std::mutex> lock(mu_);
  // What is complete now: versions closed or fsynced before this call. Files
  // closed later are not waited for, so a busy writer cannot hold it forever.
  std::vector<std::pair<uint64_t, uint64_t>> waiting;  // inode, sealed version
  for (const auto& [ino, sp] : spooled_) {
    if (!sp->sealed || sp->sealed_committed || sp->unlinked) continue;
    waiting.emplace_back(ino, sp->sealed_seq);
    if (sp->ingest_due()) Enqueue(ino, /*delay=*/false);
  }
  uint64_t failed = 0;
  idle_cv_.wait(lock, [&] {
    if (stopping_ || stop_waiters_) return true;
    failed = 0;
    for (const auto& [ino, seq] : waiting) {
      auto it = spooled_.find(ino);
      if (it == spooled_.end()) continue;  // committed (or removed) and dropped
      const SpoolState& sp = *it->second;
      // A state created after the call means the one it waited on was
      // settled (states go only when everything in them is committed).
      if (sp.unlinked || sp.committed_seq >= seq || sp.born > seq) continue;
      if (sp.ingest_failed()) {
        ++failed;
        continue;
      }
      return false;
    }
    return true;
  });
  if (stopping_ || stop_waiters_) return Status::IOError("the daemon is stopping");
  return failed == 0 ? Status::OK()
                     : Status::IOError(fmt::format("{} files failed to ingest; see the daemon log", failed));
}

bool Filesystem::IsSpooled(uint64_t ino) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = spooled_.find(ino);
  return it != spooled_.end() && (it->second->draft || it->second->sealed);
}

void Filesystem::StopWaiters() {
  std::lock_guard<std::mutex> lock(mu_);
  stop_waiters_ = true;
  idle_cv_.notify_all();
}

Filesystem::Counters Filesystem::counters() {
  Counters c;
  {
    std::lock_guard<std::mutex> lock(mu_);
    c.spooled_files = spooled_.size();
    c.ingests_done = ingests_done_;
    c.ingest_errors = ingest_errors_;
  }
  c.cache_bytes = cache_.size_bytes();
  c.cache_hits = cache_.hits();
  c.cache_misses = cache_.misses();
  c.chunk_decoded_bytes = chunk_decoded_bytes_.load();
  c.batch_decoded_bytes = batch_decoded_bytes_.load();
  return c;
}

// ---- Extended attributes ----------------------------------------------------

namespace {
const char* kXattrNames[] = {"user.tpde.stored_bytes", "user.tpde.chain_depth", "user.tpde.reference",
                             "user.tpde.state"};
}

int Filesystem::ListXattr(uint64_t ino, std::vector<std::string>* names) {
  Inode n;
  Status s = store_->GetInode(ino, &n);
  if (!s.ok()) return ToErrno(s);
  names->clear();
  if (n.type == InodeType::kFile) names->assign(std::begin(kXattrNames), std::end(kXattrNames));
  return 0;
}

int Filesystem::GetXattr(uint64_t ino, const std::string& name, std::string* value) {
  Inode n;
  Status s = store_->GetInode(ino, &n);
  if (!s.ok()) return ToErrno(s);
  if (n.type != InodeType::kFile || std::find(std::begin(kXattrNames), std::end(kXattrNames), name) ==
                                        std::end(kXattrNames)) {
    return ENODATA;
  }
  if (name == "user.tpde.state") {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = spooled_.find(ino);
    if (it == spooled_.end() || !it->second->has_uncommitted()) {
      *value = "committed";
    } else {
      *value = it->second->ingest == SpoolState::Ingest::kRunning ? "ingesting" : "spooled";
    }
    return 0;
  }
  FileStats f;
  s = store_->GetFileStats(ino, &f);
  if (!s.ok()) return ToErrno(s);
  if (name == "user.tpde.stored_bytes") *value = std::to_string(f.stored_bytes);
  if (name == "user.tpde.chain_depth") *value = std::to_string(f.chain_depth);
  if (name == "user.tpde.reference") *value = f.reference_path;
  return 0;
}

}  // namespace tpde
