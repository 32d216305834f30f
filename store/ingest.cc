// Store::IngestFile: parse, choose a reference, encode, commit.
#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "codec/safetensors.h"
#include "store/coding.h"
#include "store/object_writer.h"
#include "store/store_impl.h"

namespace tpde {

namespace {

class FileDescriptor {
 public:
  explicit FileDescriptor(int fd) : fd_(fd) {}
  ~FileDescriptor() {
    if (fd_ >= 0) ::close(fd_);
  }
  FileDescriptor(const FileDescriptor&) = delete;
  FileDescriptor& operator=(const FileDescriptor&) = delete;
  int get() const { return fd_; }

 private:
  int fd_;
};

Status PreadFull(int fd, uint64_t offset, uint64_t size, uint8_t* dst, const std::string& path) {
  while (size > 0) {
    ssize_t n = ::pread(fd, dst, size, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      return Status::IOError(fmt::format("read '{}' at offset {}: {}", path, offset, std::strerror(errno)));
    }
    if (n == 0) return Status::IOError(fmt::format("'{}' shrank while being read (offset {})", path, offset));
    dst += n;
    offset += static_cast<uint64_t>(n);
    size -= static_cast<uint64_t>(n);
  }
  return Status::OK();
}

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

// Picks the most recently committed file `name` in a sibling directory of
// `parent` whose chain leaves room for one more delta.
static Status ChooseReference(Store::Impl* impl, uint64_t parent, std::string_view name,
                              std::shared_ptr<const Manifest>* ref) {
  ref->reset();
  if (impl->options.max_chain_depth == 0 || parent == kRootInode) return Status::OK();
  Inode dir;
  TPDE_RETURN_IF_ERROR(impl->GetInode(parent, &dir));
  std::unique_ptr<rocksdb::Iterator> it(impl->db->NewIterator(rocksdb::ReadOptions(), impl->dirents_cf));
  const std::string prefix = keys::U64(dir.parent);
  uint64_t best_seq = 0;
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    std::string_view v = it->value().ToStringView();
    if (v.size() != 9 || static_cast<InodeType>(v[8]) != InodeType::kDirectory) continue;
    const uint64_t sibling = GetBigEndian64(v);
    if (sibling == parent) continue;
    Inode f;
    if (!impl->Lookup(sibling, name, &f).ok() || f.type != InodeType::kFile || f.object == 0) continue;
    std::shared_ptr<const Manifest> m;
    if (!impl->GetManifest(f.object, &m).ok() || m->commit_seq <= best_seq) continue;
    best_seq = m->commit_seq;
    *ref = m;
  }
  TPDE_RETURN_IF_ERROR(FromRocks(it->status(), "scanning sibling directories"));
  if (*ref) {
    std::vector<std::shared_ptr<const Manifest>> chain;
    if (!impl->GetChain((*ref)->object_id, &chain).ok() ||
        static_cast<int>(chain.size()) > impl->options.max_chain_depth) {
      ref->reset();  // the chain is full (or unreadable): start a new keyframe
    }
  }
  return Status::OK();
}

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

  // Encode against the chosen reference; if that reference is deleted before
  // we commit, encode once more as a keyframe.
  for (int attempt = 0;; ++attempt) {
    std::shared_ptr<const Manifest> ref;
    if (attempt == 0 && !target.name.empty()) {
      TPDE_RETURN_IF_ERROR(ChooseReference(&im, target.parent, target.name, &ref));
    }
    std::unique_ptr<FileReader> ref_reader;
    if (ref && MatchSegments(m.kind, m.file_bytes, &m.segments, *ref) > 0) {
      TPDE_RETURN_IF_ERROR(im.OpenObjectReader(ref->object_id, &ref_reader));
      m.reference = ref->object_id;
    } else {
      for (auto& s : m.segments) s.ref_segment = kNoSegment;
      m.reference = 0;
    }
    m.object_id = im.next_object++;
    m.generation = 1;
    rocksdb::WriteBatch batch;
    TPDE_RETURN_IF_ERROR(EncodeObject(&im, &m, ref_reader.get(), source, &batch));
    ref_reader.reset();
    auto drop_staged = [&] {
      rocksdb::WriteBatch drop;
      drop.DeleteRange(im.chunks_cf, keys::ChunkPrefix(m.object_id, 1), keys::ChunkPrefix(m.object_id, 2));
      return im.Commit(&drop);
    };

    std::lock_guard<std::mutex> lock(im.commit_mu);
    if (m.reference != 0) {
      std::shared_ptr<const Manifest> still;
      Status rs = im.GetManifest(m.reference, &still);
      if (rs.IsNotFound() && attempt == 0) {  // reference freed meanwhile
        TPDE_RETURN_IF_ERROR(drop_staged());
        continue;
      }
      TPDE_RETURN_IF_ERROR(rs);
      batch.Put(im.deps_cf, keys::Dep(m.reference, m.object_id), "");
    }

    Inode f;
    if (target.ino != 0) {
      Status gs = im.GetInode(target.ino, &f);
      if (gs.IsNotFound()) {
        TPDE_RETURN_IF_ERROR(drop_staged());
        return Status::NotFound(fmt::format("inode {} was removed during ingest", target.ino));
      }
      TPDE_RETURN_IF_ERROR(gs);
      if (f.type != InodeType::kFile) return Status::InvalidArgument("not a file");
      if (f.object != 0) TPDE_RETURN_IF_ERROR(im.ReleaseObject(&batch, f.object));
    } else {
      Inode dir;
      TPDE_RETURN_IF_ERROR(im.GetInode(target.parent, &dir));  // still there?
      Status ls = im.Lookup(target.parent, target.name, &f);
      if (ls.ok()) {
        if (f.type != InodeType::kFile) {
          return Status::InvalidArgument(fmt::format("'{}' exists and is not a file", target.name));
        }
        if (f.object != 0) TPDE_RETURN_IF_ERROR(im.ReleaseObject(&batch, f.object));
      } else if (ls.IsNotFound()) {
        f = Inode();
        f.ino = im.next_inode++;
        f.type = InodeType::kFile;
        f.parent = target.parent;
        im.PutDirent(&batch, target.parent, target.name, f.ino, f.type);
      } else {
        return ls;
      }
      f.mode = target.mode;
      f.uid = target.uid;
      f.gid = target.gid;
    }
    m.commit_seq = im.next_commit_seq++;
    batch.Put(im.default_cf, keys::kNextCommitSeq, keys::U64(im.next_commit_seq));
    std::string encoded;
    SerializeManifest(m, &encoded);
    batch.Put(im.objects_cf, keys::U64(m.object_id), encoded);
    f.size = m.file_bytes;
    f.object = m.object_id;
    f.mtime_ns = target.mtime_ns;
    f.ctime_ns = target.mtime_ns;
    im.PutInode(&batch, f);
    TPDE_RETURN_IF_ERROR(im.Commit(&batch));

    result->ino = f.ino;
    result->object = m.object_id;
    result->reference = m.reference;
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
  TPDE_RETURN_IF_ERROR(impl_->GetInode(parent, &dir));
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
  TPDE_RETURN_IF_ERROR(impl_->GetInode(ino, &f));
  if (f.type != InodeType::kFile) return Status::InvalidArgument(fmt::format("inode {} is not a file", ino));
  IngestTarget target;
  target.ino = ino;
  target.parent = f.parent;
  target.name = NameOf(f);
  target.mtime_ns = mtime_ns;
  return IngestFd(*impl_, fd.get(), src_path, static_cast<uint64_t>(st.st_size), target, result);
}

}  // namespace tpde
