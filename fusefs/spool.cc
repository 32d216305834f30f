#include "fusefs/spool.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <linux/fs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <optional>
#include <set>

namespace tpde {

namespace {

Status Errno(std::string_view what, const std::string& path) {
  const std::string msg = fmt::format("{} '{}': {}", what, path, std::strerror(errno));
  if (errno == ENOSPC || errno == EDQUOT) return Status::NoSpace(msg);
  return Status::IOError(msg);
}

Status SyncDir(const std::string& dir) {
  int fd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return Errno("open", dir);
  int rc = ::fsync(fd);
  ::close(fd);
  return rc == 0 ? Status::OK() : Errno("fsync", dir);
}

Status Unlink(const std::string& path) {
  return ::unlink(path.c_str()) == 0 || errno == ENOENT ? Status::OK() : Errno("unlink", path);
}

// Creates the empty file `path` and makes its name durable.
Status CreateMarker(const std::string& path, const std::string& dir) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return Errno("create", path);
  ::close(fd);
  return SyncDir(dir);
}

std::string ReadSmallFile(const std::string& path) {
  std::ifstream in(path);
  std::string s;
  std::getline(in, s);
  return s;
}

std::string CurrentBootId() { return ReadSmallFile("/proc/sys/kernel/random/boot_id"); }

// "N.draft", "N.<seq>.sealed", "N.<seq>.synced", "N.<seq>.tmp", and the
// earlier format's "N.data" / "N.keep".
struct Name {
  uint64_t ino = 0;
  uint64_t seq = 0;
  std::string kind;
};
bool ParseName(const std::string& name, Name* out) {
  char* end = nullptr;
  out->ino = std::strtoull(name.c_str(), &end, 10);
  if (end == name.c_str() || *end != '.') return false;
  std::string rest(end + 1);
  if (rest == "draft" || rest == "new" || rest == "data" || rest == "keep") {
    out->kind = rest;
    return true;
  }
  const char* p = rest.c_str();
  out->seq = std::strtoull(p, &end, 10);
  if (end == p || *end != '.') return false;
  out->kind = end + 1;
  return out->kind == "sealed" || out->kind == "synced" || out->kind == "tmp";
}

}  // namespace

SpoolFd::~SpoolFd() {
  if (fd_ >= 0) ::close(fd_);
}

Status Spool::Open(const std::string& dir, Spool* out) {
  std::error_code ec;
  // Spooled files are other users' file contents: owner only.
  if (std::filesystem::create_directories(dir, ec) && ::chmod(dir.c_str(), 0700) != 0) return Errno("chmod", dir);
  if (ec) return Status::IOError(fmt::format("create spool '{}': {}", dir, ec.message()));
  out->dir_ = dir;
  return Status::OK();
}

std::string Spool::SealedPath(uint64_t ino, uint64_t seq) const { return fmt::format("{}/{}.{}.sealed", dir_, ino, seq); }

std::string Spool::SyncedPath(uint64_t ino, uint64_t seq) const { return fmt::format("{}/{}.{}.synced", dir_, ino, seq); }

std::string Spool::DraftPath(uint64_t ino, bool new_file) const {
  return fmt::format("{}/{}.{}", dir_, ino, new_file ? "new" : "draft");
}

Status Spool::Recover(RecoveryReport* report) {
  *report = RecoveryReport();
  const std::string boot_path = dir_ + "/boot_id";
  const std::string clean_path = dir_ + "/clean_stop";
  const std::string boot_id = CurrentBootId();
  const bool trust_unsynced =
      std::filesystem::exists(clean_path) || (!boot_id.empty() && ReadSmallFile(boot_path) == boot_id) ||
      !std::filesystem::exists(boot_path);  // a spool older than boot ids: as before
  struct Versions {
    std::set<uint64_t> sealed, synced;
    bool legacy_data = false, legacy_keep = false, new_file = false;
  };
  std::map<uint64_t, Versions> inodes;
  std::vector<std::string> junk;
  std::error_code ec;
  for (const auto& e : std::filesystem::directory_iterator(dir_, ec)) {
    const std::string name = e.path().filename().string();
    Name n;
    if (!ParseName(name, &n)) continue;  // boot_id, clean_stop, foreign files
    Versions& v = inodes[n.ino];
    if (n.kind == "sealed") v.sealed.insert(n.seq);
    if (n.kind == "synced") v.synced.insert(n.seq);
    if (n.kind == "data") v.legacy_data = true;
    if (n.kind == "keep") v.legacy_keep = true;
    if (n.kind == "new") v.new_file = true;
    if (n.kind == "draft" || n.kind == "new" || n.kind == "tmp") junk.push_back(e.path().string());
  }
  if (ec) return Status::IOError(fmt::format("list spool '{}': {}", dir_, ec.message()));
  for (const auto& path : junk) TPDE_RETURN_IF_ERROR(Unlink(path));

  for (auto& [ino, v] : inodes) {
    if (v.legacy_data) {
      const std::string data = fmt::format("{}/{}.data", dir_, ino);
      if (v.legacy_keep && v.sealed.empty()) {
        if (::rename(data.c_str(), SealedPath(ino, 1).c_str()) != 0) return Errno("rename", data);
        v.sealed.insert(1);
      } else {
        TPDE_RETURN_IF_ERROR(Unlink(data));
        v.new_file = true;  // that format removed such a file if it had no content yet
      }
      TPDE_RETURN_IF_ERROR(Unlink(fmt::format("{}/{}.keep", dir_, ino)));
    }
    std::optional<uint64_t> pick;
    for (auto it = v.sealed.rbegin(); it != v.sealed.rend(); ++it) {
      if (v.synced.count(*it) || trust_unsynced) {
        pick = *it;
        break;
      }
    }
    if (!v.sealed.empty() && (!pick || *pick != *v.sealed.rbegin())) {
      report->log.push_back(fmt::format("inode {}: version {} was closed but never fsynced before the machine restarted",
                                       ino, *v.sealed.rbegin()));
    }
    for (uint64_t seq : v.sealed) {
      if (!pick || seq != *pick) TPDE_RETURN_IF_ERROR(RemoveSealed(ino, seq));
    }
    for (uint64_t seq : v.synced) {
      if (!v.sealed.count(seq)) TPDE_RETURN_IF_ERROR(Unlink(SyncedPath(ino, seq)));
    }
    if (pick) report->versions.push_back({ino, *pick, v.synced.count(*pick) > 0});
    if (!pick && v.new_file) report->unfinished_new.push_back(ino);
  }

  // From now on, sealed versions not marked durable are trusted only by a
  // start within this boot.
  TPDE_RETURN_IF_ERROR(Unlink(clean_path));
  const std::string tmp = boot_path + ".tmp";
  {
    std::ofstream f(tmp, std::ios::trunc);
    f << boot_id << "\n";
    if (!f) return Status::IOError(fmt::format("write '{}'", tmp));
  }
  if (::rename(tmp.c_str(), boot_path.c_str()) != 0) return Errno("rename", tmp);
  return SyncDir(dir_);
}

Status Spool::MarkCleanStop() { return CreateMarker(dir_ + "/clean_stop", dir_); }

Status Spool::CreateDraft(uint64_t ino, bool new_file, int* fd) const {
  const std::string path = DraftPath(ino, new_file);
  *fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  return *fd < 0 ? Errno("create", path) : Status::OK();
}

Status Spool::CopyToDraft(uint64_t ino, int src_fd, int* fd) const {
  TPDE_RETURN_IF_ERROR(CreateDraft(ino, false, fd));
  const std::string path = DraftPath(ino, false);
  if (::ioctl(*fd, FICLONE, src_fd) == 0) return Status::OK();
  struct stat st {};
  if (::fstat(src_fd, &st) != 0) return Errno("stat source of", path);
  loff_t in = 0, out = 0;
  uint64_t left = static_cast<uint64_t>(st.st_size);
  while (left > 0) {
    ssize_t n = ::copy_file_range(src_fd, &in, *fd, &out, left, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) {
      Status s = n < 0 ? Errno("copy into", path) : Status::IOError(fmt::format("copy into '{}': short source", path));
      ::close(*fd);
      *fd = -1;
      Unlink(path);
      return s;
    }
    left -= static_cast<uint64_t>(n);
  }
  return Status::OK();
}

Status Spool::SealDraft(uint64_t ino, bool new_file, uint64_t seq) const {
  const std::string draft = DraftPath(ino, new_file);
  const std::string sealed = SealedPath(ino, seq);
  return ::rename(draft.c_str(), sealed.c_str()) == 0 ? Status::OK() : Errno("rename", draft);
}

Status Spool::MakeDurable(uint64_t ino, uint64_t seq, int sealed_fd) const {
  const std::string data = SealedPath(ino, seq);
  if (::fsync(sealed_fd) != 0) return Errno("fsync", data);
  return CreateMarker(SyncedPath(ino, seq), dir_);
}

Status Spool::OpenSealed(uint64_t ino, uint64_t seq, int* fd) const {
  const std::string path = SealedPath(ino, seq);
  *fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  return *fd < 0 ? Errno("open", path) : Status::OK();
}

Status Spool::RemoveDraft(uint64_t ino, bool new_file) const { return Unlink(DraftPath(ino, new_file)); }

Status Spool::RemoveSealed(uint64_t ino, uint64_t seq) const {
  TPDE_RETURN_IF_ERROR(Unlink(SyncedPath(ino, seq)));
  return Unlink(SealedPath(ino, seq));
}

Status Spool::FreeBytes(uint64_t* free, uint64_t* total) const {
  struct statvfs sv {};
  if (::statvfs(dir_.c_str(), &sv) != 0) return Errno("statvfs", dir_);
  *free = uint64_t{sv.f_bavail} * sv.f_frsize;
  *total = uint64_t{sv.f_blocks} * sv.f_frsize;
  return Status::OK();
}

}  // namespace tpde
