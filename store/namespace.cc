#include "store/namespace.h"

#include <fmt/format.h>

#include <memory>

#include "store/coding.h"
#include "store/keys.h"
#include "store/rocks_status.h"

namespace tpde {
namespace {

rocksdb::ReadOptions At(const rocksdb::Snapshot* snap) {
  rocksdb::ReadOptions ro;
  ro.snapshot = snap;
  return ro;
}

// A dirent's value: the inode number (8 bytes, big-endian) and its type.
constexpr size_t kDirentValueBytes = 9;

}  // namespace

Status Namespace::GetInode(uint64_t ino, Inode* out, const rocksdb::Snapshot* snap) const {
  std::string v;
  rocksdb::Status s = db_->Get(At(snap), inodes_, keys::U64(ino), &v);
  if (s.IsNotFound()) return Status::NotFound(fmt::format("inode {}", ino));
  TPDE_RETURN_IF_ERROR(FromRocks(s, "reading inode"));
  return ParseInode(v, out).WithContext(fmt::format("inode {}", ino));
}

Status Namespace::Lookup(uint64_t parent, std::string_view name, Inode* out, const rocksdb::Snapshot* snap) const {
  std::string v;
  rocksdb::Status s = db_->Get(At(snap), dirents_, keys::Dirent(parent, name), &v);
  if (s.IsNotFound()) return Status::NotFound(fmt::format("'{}' not found", name));
  TPDE_RETURN_IF_ERROR(FromRocks(s, "reading directory entry"));
  if (v.size() != kDirentValueBytes) return Status::Corruption(fmt::format("directory entry '{}' is malformed", name));
  return GetInode(GetBigEndian64(v), out, snap);
}

Status Namespace::ReadDir(uint64_t ino, std::vector<DirEntry>* out, const rocksdb::Snapshot* snap) const {
  out->clear();
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(At(snap), dirents_));
  const std::string prefix = keys::U64(ino);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    std::string_view v = it->value().ToStringView();
    if (v.size() != kDirentValueBytes) return Status::Corruption("directory entry is malformed");
    DirEntry e;
    e.name = std::string(it->key().ToStringView().substr(8));
    e.ino = GetBigEndian64(v);
    e.type = static_cast<InodeType>(v[8]);
    out->push_back(std::move(e));
  }
  return FromRocks(it->status(), "reading directory");
}

std::string Namespace::NameOf(const Inode& n, const rocksdb::Snapshot* snap) const {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(At(snap), dirents_));
  const std::string prefix = keys::U64(n.parent);
  for (it->Seek(prefix); it->Valid() && it->key().starts_with(prefix); it->Next()) {
    std::string_view v = it->value().ToStringView();
    if (v.size() == kDirentValueBytes && GetBigEndian64(v) == n.ino) {
      return std::string(it->key().ToStringView().substr(8));
    }
  }
  return "";
}

Status Namespace::ForEachInode(const std::function<bool(const Status& parsed, const Inode& n)>& fn,
                               const rocksdb::Snapshot* snap) const {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(At(snap), inodes_));
  for (it->SeekToFirst(); it->Valid(); it->Next()) {
    Inode n;
    const Status parsed = ParseInode(it->value().ToStringView(), &n);
    if (!fn(parsed, n)) break;
  }
  return FromRocks(it->status(), "scanning inodes");
}

uint64_t Namespace::LastInode() const {
  std::unique_ptr<rocksdb::Iterator> it(db_->NewIterator(rocksdb::ReadOptions(), inodes_));
  it->SeekToLast();
  return it->Valid() && it->key().size() >= 8 ? GetBigEndian64(it->key().ToStringView()) : 0;
}

void Namespace::PutInode(rocksdb::WriteBatch* b, const Inode& n) const {
  std::string v;
  SerializeInode(n, &v);
  b->Put(inodes_, keys::U64(n.ino), v);
}

void Namespace::DeleteInode(rocksdb::WriteBatch* b, uint64_t ino) const { b->Delete(inodes_, keys::U64(ino)); }

void Namespace::PutDirent(rocksdb::WriteBatch* b, uint64_t parent, std::string_view name, uint64_t ino,
                          InodeType type) const {
  std::string v = keys::U64(ino);
  v.push_back(static_cast<char>(type));
  b->Put(dirents_, keys::Dirent(parent, name), v);
}

void Namespace::DeleteDirent(rocksdb::WriteBatch* b, uint64_t parent, std::string_view name) const {
  b->Delete(dirents_, keys::Dirent(parent, name));
}

}  // namespace tpde
