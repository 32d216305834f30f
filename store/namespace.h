// Namespace: the store's inodes and directory entries (dirents), two column
// families of its RocksDB (keys and values: store/keys.h, store/inode.h,
// docs/format.md).
//
// Reads run on any thread, at the latest state or at a RocksDB snapshot.
// Mutations only add to a WriteBatch: the Store commits the batch under its
// commit lock together with the object changes of the same operation, so a
// name and the content it names change atomically (store/store.h).
//
// Errors: NotFound for a missing inode or name, Corruption for a malformed
// record (naming it), IOError from RocksDB.
// Thread-safety: const methods only; the handles must outlive it.
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "codec/status.h"
#include "store/inode.h"
#include "store/store.h"

namespace tpde {

class Namespace {
 public:
  Namespace() = default;
  Namespace(rocksdb::DB* db, rocksdb::ColumnFamilyHandle* inodes, rocksdb::ColumnFamilyHandle* dirents)
      : db_(db), inodes_(inodes), dirents_(dirents) {}

  // ---- Reads (snap == nullptr: the latest state) ----
  Status GetInode(uint64_t ino, Inode* out, const rocksdb::Snapshot* snap = nullptr) const;
  // The inode `name` in directory `parent` names.
  Status Lookup(uint64_t parent, std::string_view name, Inode* out, const rocksdb::Snapshot* snap = nullptr) const;
  // The entries of directory `ino`, in key order (bytewise by name).
  Status ReadDir(uint64_t ino, std::vector<DirEntry>* out, const rocksdb::Snapshot* snap = nullptr) const;
  // The name of `n` in its parent directory ("" if it has none: a scan of
  // the parent's entries).
  std::string NameOf(const Inode& n, const rocksdb::Snapshot* snap = nullptr) const;
  // Calls fn for every inode record in inode order until fn returns false;
  // `parsed` is the record's parse status (the inode is only valid if OK).
  Status ForEachInode(const std::function<bool(const Status& parsed, const Inode& n)>& fn,
                      const rocksdb::Snapshot* snap = nullptr) const;
  // The largest inode number in use (0 in an empty store).
  uint64_t LastInode() const;

  // ---- Mutations, into a batch the Store commits ----
  void PutInode(rocksdb::WriteBatch* b, const Inode& n) const;
  void DeleteInode(rocksdb::WriteBatch* b, uint64_t ino) const;
  void PutDirent(rocksdb::WriteBatch* b, uint64_t parent, std::string_view name, uint64_t ino, InodeType type) const;
  void DeleteDirent(rocksdb::WriteBatch* b, uint64_t parent, std::string_view name) const;

 private:
  rocksdb::DB* db_ = nullptr;
  rocksdb::ColumnFamilyHandle* inodes_ = nullptr;
  rocksdb::ColumnFamilyHandle* dirents_ = nullptr;
};

}  // namespace tpde
