#include "store/tree_io.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>

#include "store/file_reader.h"

namespace tpde {

namespace fs = std::filesystem;

bool NaturalLess(const std::string& a, const std::string& b) { return ::strverscmp(a.c_str(), b.c_str()) < 0; }

namespace {

Status SortedEntries(const fs::path& dir, std::vector<fs::directory_entry>* out) {
  std::error_code ec;
  out->clear();
  for (const auto& e : fs::directory_iterator(dir, ec)) out->push_back(e);
  if (ec) return Status::IOError(fmt::format("reading '{}': {}", dir.string(), ec.message()));
  std::sort(out->begin(), out->end(), [](const auto& x, const auto& y) {
    return NaturalLess(x.path().filename().string(), y.path().filename().string());
  });
  return Status::OK();
}

Status WriteAll(int fd, const uint8_t* data, size_t n, const std::string& path) {
  while (n > 0) {
    ssize_t w = ::write(fd, data, n);
    if (w < 0 && errno == EINTR) continue;
    if (w < 0) return Status::IOError(fmt::format("write '{}': {}", path, std::strerror(errno)));
    data += w;
    n -= static_cast<size_t>(w);
  }
  return Status::OK();
}

Status ExportFile(Store* store, const Inode& node, const std::string& dest) {
  const std::string tmp = dest + ".tpde-export";
  int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  if (fd < 0) return Status::IOError(fmt::format("create '{}': {}", tmp, std::strerror(errno)));
  Status s;
  if (node.object != 0) {
    std::unique_ptr<FileReader> reader;
    s = store->OpenReader(node.ino, &reader);
    if (s.ok()) {
      s = reader->DecodeAll(store->options().batch_bytes,
                            [&](const uint8_t* data, size_t n) { return WriteAll(fd, data, n, tmp); });
    }
  }
  if (s.ok() && ::fsync(fd) != 0) s = Status::IOError(fmt::format("fsync '{}': {}", tmp, std::strerror(errno)));
  if (s.ok() && ::fchmod(fd, node.mode) != 0) {
    s = Status::IOError(fmt::format("chmod '{}': {}", tmp, std::strerror(errno)));
  }
  const timespec mtime{node.mtime_ns / 1000000000, node.mtime_ns % 1000000000};
  const timespec times[2] = {mtime, mtime};
  if (s.ok() && ::futimens(fd, times) != 0) {
    s = Status::IOError(fmt::format("set mtime of '{}': {}", tmp, std::strerror(errno)));
  }
  ::close(fd);
  if (s.ok() && ::rename(tmp.c_str(), dest.c_str()) != 0) {
    s = Status::IOError(fmt::format("rename to '{}': {}", dest, std::strerror(errno)));
  }
  if (!s.ok()) ::unlink(tmp.c_str());
  return s.WithContext(dest);
}

}  // namespace

Status ImportTree(Store* store, const std::string& src_dir, uint64_t dest_dir, const ImportObserver& on_file,
                  const SkipObserver& on_skip) {
  std::vector<fs::directory_entry> entries;
  TPDE_RETURN_IF_ERROR(SortedEntries(src_dir, &entries));
  for (const auto& e : entries) {
    const std::string name = e.path().filename().string();
    const std::string path = e.path().string();
    std::error_code ec;
    const fs::file_status st = e.symlink_status(ec);
    if (ec) return Status::IOError(fmt::format("stat '{}': {}", path, ec.message()));
    struct stat owner {};
    if (::lstat(path.c_str(), &owner) != 0) return Status::IOError(fmt::format("stat '{}': {}", path, std::strerror(errno)));
    Inode node;
    if (fs::is_symlink(st)) {
      const fs::path target = fs::read_symlink(e.path(), ec);
      if (ec) return Status::IOError(fmt::format("readlink '{}': {}", path, ec.message()));
      Status s = store->Symlink(dest_dir, name, target.string(), owner.st_uid, owner.st_gid, &node);
      if (!s.ok() && !s.IsAlreadyExists()) return s.WithContext(path);
    } else if (fs::is_directory(st)) {
      Status s = store->MakeDirectory(dest_dir, name, static_cast<uint32_t>(st.permissions()), owner.st_uid,
                                      owner.st_gid, &node);
      if (!s.ok() && !s.IsAlreadyExists()) return s.WithContext(path);
      TPDE_RETURN_IF_ERROR(ImportTree(store, path, node.ino, on_file, on_skip));
    } else if (fs::is_regular_file(st)) {
      IngestResult r;
      TPDE_RETURN_IF_ERROR(store->IngestFile(dest_dir, name, path, &r).WithContext(path));
      // Demote the previous version now rather than at the end: the store
      // never holds more than one extra keyframe per file name.
      if (r.demotion_queued) TPDE_RETURN_IF_ERROR(store->CollectGarbage().WithContext(path));
      if (on_file) on_file(path, r);
    } else if (on_skip) {
      on_skip(path);
    }
  }
  return Status::OK();
}

Status ExportTree(Store* store, const Inode& node, const std::string& dest_path, const ExportObserver& on_file) {
  std::error_code ec;
  switch (node.type) {
    case InodeType::kFile:
      TPDE_RETURN_IF_ERROR(ExportFile(store, node, dest_path));
      if (on_file) on_file(dest_path, node.size);
      return Status::OK();
    case InodeType::kSymlink:
      fs::remove(dest_path, ec);
      fs::create_symlink(node.target, dest_path, ec);
      if (ec) return Status::IOError(fmt::format("symlink '{}': {}", dest_path, ec.message()));
      return Status::OK();
    case InodeType::kDirectory: {
      fs::create_directories(dest_path, ec);
      if (ec) return Status::IOError(fmt::format("mkdir '{}': {}", dest_path, ec.message()));
      std::vector<DirEntry> entries;
      TPDE_RETURN_IF_ERROR(store->ReadDir(node.ino, &entries));
      for (const auto& e : entries) {
        Inode child;
        TPDE_RETURN_IF_ERROR(store->GetInode(e.ino, &child));
        TPDE_RETURN_IF_ERROR(ExportTree(store, child, (fs::path(dest_path) / e.name).string(), on_file));
      }
      if (::chmod(dest_path.c_str(), node.mode) != 0) {
        return Status::IOError(fmt::format("chmod '{}': {}", dest_path, std::strerror(errno)));
      }
      return Status::OK();
    }
  }
  return Status::OK();
}

}  // namespace tpde
