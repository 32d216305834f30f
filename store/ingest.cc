// Store::IngestFile: parse, choose a reference, encode, commit.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "codec/safetensors.h"
#include "store/coding.h"
#include "store/file_io.h"
#include "store/keys.h"
#include "store/object_writer.h"
#include "store/rocks_status.h"
#include "store/store_impl.h"

namespace tpde {

namespace {

// Lays out a file: as safetensors when it validates, as bytes otherwise
// (*note says why).
Status PlanLayout(int fd, uint64_t size, const std::string& path, const LayoutOptions& options, FileKind* kind,
                  std::vector<Segment>* segments, std::string* note) {
  std::string prefix(std::min<uint64_t>(size, 64u << 10), '\0');
  TPDE_RETURN_IF_ERROR(PreadFull(fd, 0, prefix.size(), reinterpret_cast<uint8_t*>(prefix.data()), path));
  const bool named_safetensors = path.size() >= 12 && path.ends_with(".safetensors");
  uint64_t header_bytes = 0;
  Status s = ReadSafetensorsHeaderSize(prefix, size, &header_bytes);
  if (s.ok()) {
    if (prefix.size() < 8 + header_bytes) {
      prefix.resize(8 + header_bytes);
      TPDE_RETURN_IF_ERROR(PreadFull(fd, 0, prefix.size(), reinterpret_cast<uint8_t*>(prefix.data()), path));
    }
    SafetensorsHeader header;
    s = ParseSafetensorsHeader(prefix, size, &header);
    if (s.ok()) {
      *kind = FileKind::kSafetensors;
      *segments = PlanSafetensorsLayout(header, options);
      return Status::OK();
    }
  }
  if (named_safetensors) *note = fmt::format("stored as bytes: {}", s.message());
  *kind = ClassifyBytes(prefix, size, options);
  *segments = PlanBytesLayout(size, *kind, options);
  return Status::OK();
}

}  // namespace

namespace {

// Where an ingest lands: an existing inode, or a name in a directory
// (created, or replaced if it is a file).
struct IngestTarget {
  uint64_t parent = 0;
  std::string name;       // for reference choice (and creation when ino == 0)
  uint64_t ino = 0;       // 0: by name
  int64_t mtime_ns = 0;
  uint32_t mode = 0;      // used when creating or replacing by name
  uint32_t uid = 0, gid = 0;
};

Status IngestFd(Store::Impl& im, int fd, const std::string& src_path, uint64_t size, const IngestTarget& target,
                IngestResult* result) {
  Manifest m;
  m.file_bytes = size;
  TPDE_RETURN_IF_ERROR(
      PlanLayout(fd, m.file_bytes, src_path, im.options.layout, &m.kind, &m.segments, &result->note));
  const SourceFn source = [&](uint64_t offset, uint64_t n, uint8_t* dst) {
    return PreadFull(fd, offset, n, dst, src_path);
  };

  // The new version is a keyframe (reverse-delta chains, store/collector.cc):
  // encoding it needs no reference, so a save costs one KEY encode.
  m.object_id = im.next_object++;
  m.generation = 1;
  rocksdb::WriteBatch batch;
  TPDE_RETURN_IF_ERROR(EncodeObject(&im, im.ingest_pool.get(), &m, nullptr, source, &batch));
  auto drop_staged = [&] { return im.DropStaged(m.lane, m.object_id, m.generation); };

  {
    std::lock_guard<std::mutex> lock(im.commit_mu);
    Inode f;
    if (target.ino != 0) {
      Status gs = im.ns.GetInode(target.ino, &f);
      if (gs.IsNotFound()) {
        TPDE_RETURN_IF_ERROR(drop_staged());
        return Status::NotFound(fmt::format("inode {} was removed during ingest", target.ino));
      }
      TPDE_RETURN_IF_ERROR(gs);
      if (f.type != InodeType::kFile) return Status::InvalidArgument("not a file");
      if (f.object != 0) TPDE_RETURN_IF_ERROR(im.catalog->ReleaseObject(&batch, f.object));
    } else {
      Inode dir;
      TPDE_RETURN_IF_ERROR(im.ns.GetInode(target.parent, &dir));  // still there?
      Status ls = im.ns.Lookup(target.parent, target.name, &f);
      if (ls.ok()) {
        if (f.type != InodeType::kFile) {
          return Status::InvalidArgument(fmt::format("'{}' exists and is not a file", target.name))
              .WithPosixCode(EISDIR);
        }
        if (f.object != 0) TPDE_RETURN_IF_ERROR(im.catalog->ReleaseObject(&batch, f.object));
      } else if (ls.IsNotFound()) {
        f = Inode();
        f.ino = im.next_inode++;
        f.type = InodeType::kFile;
        f.parent = target.parent;
        im.ns.PutDirent(&batch, target.parent, target.name, f.ino, f.type);
      } else {
        return ls;
      }
      f.mode = target.mode;
      f.uid = target.uid;
      f.gid = target.gid;
    }
    // The same-named file of a sibling directory created just before this
    // one, the keyframe of its chain until now, becomes a delta against this
    // version in the background; if one created later committed first (a
    // concurrent ingest), this version becomes a delta against that one.
    // Chosen here, under the commit lock, so each version has one successor.
    std::shared_ptr<const Manifest> older, newer;
    if (!target.name.empty() && im.options.max_chain_depth > 0) {
      TPDE_RETURN_IF_ERROR(im.collector->FindNeighbours(target.parent, target.name, f.ino, &older, &newer));
    }
    if (older && older->reference == 0) {
      im.catalog->QueueDemotion(&batch, older->object_id, m.object_id);
      result->predecessor = older->object_id;
      result->demotion_queued = true;
    }
    if (newer) {
      im.catalog->QueueDemotion(&batch, m.object_id, newer->object_id);
      result->demotion_queued = true;
    }
    m.commit_seq = im.next_commit_seq++;
    batch.Put(im.default_cf, keys::kNextCommitSeq, keys::U64(im.next_commit_seq));
    std::string encoded;
    im.catalog->PutManifest(&batch, m, &encoded);
    f.size = m.file_bytes;
    f.object = m.object_id;
    f.mtime_ns = target.mtime_ns;
    f.ctime_ns = target.mtime_ns;
    im.ns.PutInode(&batch, f);
    TPDE_RETURN_IF_ERROR(im.Commit(&batch));

    result->ino = f.ino;
    result->object = m.object_id;
    result->file_bytes = m.file_bytes;
    result->stored_bytes = m.payload_bytes() + encoded.size();
    result->kind = m.kind;
    return Status::OK();
  }
}

// Opens a regular file for ingest.
Status OpenSource(const std::string& src_path, int* fd, struct stat* st) {
  *fd = ::open(src_path.c_str(), O_RDONLY | O_CLOEXEC);
  if (*fd < 0) return Status::IOError(fmt::format("open '{}': {}", src_path, std::strerror(errno)));
  if (::fstat(*fd, st) != 0) return Status::IOError(fmt::format("stat '{}': {}", src_path, std::strerror(errno)));
  if (!S_ISREG(st->st_mode)) return Status::InvalidArgument(fmt::format("'{}' is not a regular file", src_path));
  return Status::OK();
}

}  // namespace

Status Store::IngestFile(uint64_t parent, std::string_view name, const std::string& src_path,
                         IngestResult* result) {
  *result = IngestResult();
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string_view::npos || name.size() > 255) {
    return Status::InvalidArgument(fmt::format("invalid file name '{}'", name));
  }
  int raw_fd = -1;
  struct stat st {};
  Status s = OpenSource(src_path, &raw_fd, &st);
  FileDescriptor fd(raw_fd);
  TPDE_RETURN_IF_ERROR(s);
  Inode dir;
  TPDE_RETURN_IF_ERROR(impl_->ns.GetInode(parent, &dir));
  if (dir.type != InodeType::kDirectory) return Status::InvalidArgument("parent is not a directory");
  IngestTarget target;
  target.parent = parent;
  target.name = std::string(name);
  target.mtime_ns = int64_t{st.st_mtim.tv_sec} * 1000000000 + st.st_mtim.tv_nsec;
  target.mode = st.st_mode & 07777;
  target.uid = st.st_uid;
  target.gid = st.st_gid;
  return IngestFd(*impl_, fd.get(), src_path, static_cast<uint64_t>(st.st_size), target, result);
}

Status Store::IngestInode(uint64_t ino, const std::string& src_path, int64_t mtime_ns, IngestResult* result) {
  *result = IngestResult();
  int raw_fd = -1;
  struct stat st {};
  Status s = OpenSource(src_path, &raw_fd, &st);
  FileDescriptor fd(raw_fd);
  TPDE_RETURN_IF_ERROR(s);
  Inode f;
  TPDE_RETURN_IF_ERROR(impl_->ns.GetInode(ino, &f));
  if (f.type != InodeType::kFile) return Status::InvalidArgument(fmt::format("inode {} is not a file", ino));
  IngestTarget target;
  target.ino = ino;
  target.parent = f.parent;
  target.name = NameOf(f);
  target.mtime_ns = mtime_ns;
  return IngestFd(*impl_, fd.get(), src_path, static_cast<uint64_t>(st.st_size), target, result);
}

}  // namespace tpde
