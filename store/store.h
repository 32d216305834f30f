// Store: checkpoints as TPDE keyframes and delta chains in RocksDB.
//
// A store is a directory holding one RocksDB database. It keeps
//   - the namespace: inodes and directory entries (what a mount serves);
//   - objects: one per stored file version, a manifest (store/manifest.h)
//     plus chunk payloads (in RocksDB's integrated BlobDB);
//   - the reference graph: which object is the delta reference of which, and
//     the objects no longer named by any inode but still referenced
//     ("detached").
// The key schema is in docs/format.md.
//
// Durability: every mutation commits in one atomic RocksDB WriteBatch.
// Content commits (ingest, re-base, freeing an object) are synced;
// namespace-only changes (mkdir, create, rename, chmod, ...) are not, and
// become durable with the next synced commit or SyncLog(), as directory
// changes on a journaling file system do (fsync of the directory). An ingest first stages its chunk payloads under a fresh
// (object, generation) that nothing names, then commits manifest, inode,
// dirent and reference edges in one batch; a crash at any point leaves the
// store as it was before the ingest or with the whole ingest, and staged
// payloads of an ingest that never committed are deleted on the next Open.
//
// Reverse-delta chains (store/collector.cc): the newest version of a file is
// always a keyframe. A file ingested as D/name, with D inside P, is encoded
// as a keyframe; the most recently committed file `name` in another
// directory of P (run/checkpoint-100/model.safetensors for run/checkpoint-200/
// model.safetensors), its predecessor, is queued in the same commit to be
// re-encoded as a delta against it (a "demotion"), which CollectGarbage()
// does in the background, as long as no chain grows beyond max_chain_depth
// deltas. Safetensors tensors match by name, dtype and shape; other files
// match as a whole when kind and size match.
//
// Deletion: a deleted file that other objects still use as reference is
// detached; CollectGarbage() re-bases each dependent onto the detached
// object's nearest live reference (or makes it a keyframe) by re-encoding its
// chunks, then frees the detached object. With reverse chains, deleting the
// oldest version frees it at once, deleting a middle one re-bases its one
// older neighbour. Freed payloads are compacted away, and RocksDB deletes
// their blob files, in the same CollectGarbage() call.
//
// Thread-safety: all methods may be called concurrently. Mutations are
// serialised by an internal lock held only while committing; encoding and
// decoding run outside it. Only one process may open a store (RocksDB's
// LOCK file): a second Open returns Busy.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "codec/chunk.h"
#include "codec/layout.h"
#include "codec/status.h"
#include "store/inode.h"
#include "store/manifest.h"

namespace rocksdb {
class FileSystem;
}  // namespace rocksdb

namespace tpde {

class ChainDecoder;
class FileReader;

struct StoreOptions {
  bool create_if_missing = true;
  int max_chain_depth = 8;          // deltas in a chain before a new keyframe
  LayoutOptions layout;             // chunk size, text threshold
  ChunkEncodeOptions encode;        // zstd level
  size_t threads = 0;               // encode/decode pool; 0 = all cores
  int ingest_nice = 0;              // CPU priority of the ingest pool (reads: 0; the collector: 10)
  uint64_t batch_bytes = 64u << 20; // file bytes encoded per parallel batch
  // Space kept free (a reserve file) so that deletions commit on a full disk
  // (store/write_guard.h); at most 1/8 of the file system. 0: none.
  uint64_t reserve_bytes = 64u << 20;
  // RocksDB's warnings to stderr (the daemon's log); command-line tools turn
  // them off and report errors themselves, one line each.
  bool rocksdb_warnings = true;
  // The file system RocksDB writes through (default: the local one). Tests
  // pass a fault-injecting one (tests/fault_fs.h).
  std::shared_ptr<rocksdb::FileSystem> file_system;
  // Decodes batches of chunks (whole-file reads, read-ahead batches, the
  // collector's re-encoding): the GPU's (kernels/gpu_chain_decoder.h) when
  // the daemon has one. nullptr: one chunk per task on the store's pool.
  std::shared_ptr<ChainDecoder> chain_decoder;
};

// What one ingest produced. The new version is always a keyframe.
struct IngestResult {
  uint64_t ino = 0;
  uint64_t object = 0;
  uint64_t predecessor = 0;   // object queued to become a delta against this one; 0 = none
  bool demotion_queued = false;  // CollectGarbage() has a demotion to do (of the predecessor, or of
                                 // this version when a newer one committed first)
  uint64_t file_bytes = 0;
  uint64_t stored_bytes = 0;  // chunk payloads + manifest
  FileKind kind = FileKind::kText;
  std::string note;           // why the file is not coded as safetensors, if so
};

// Per-file statistics (tpdectl stats).
struct FileStats {
  std::string path;
  uint64_t ino = 0;
  uint64_t object = 0;
  uint64_t reference = 0;
  FileKind kind = FileKind::kText;
  uint64_t file_bytes = 0;
  uint64_t stored_bytes = 0;  // payloads + manifest
  int chain_depth = 0;        // deltas between this file and its keyframe
  std::string reference_path; // path of the reference file; "" for a keyframe
  uint64_t chunks_by_mode[4] = {};        // indexed by ChunkMode
  uint64_t stored_bytes_by_mode[4] = {};  // payload bytes by mode
};

struct StoreStats {
  uint64_t files = 0;
  uint64_t directories = 0;
  uint64_t logical_bytes = 0;    // sum of file sizes
  uint64_t stored_bytes = 0;     // payloads + manifests of every object
  uint64_t detached_objects = 0; // deleted files kept as references
  uint64_t detached_bytes = 0;
  uint64_t pending_demotions = 0;  // keyframes still to be re-encoded as deltas
  uint64_t disk_bytes = 0;         // RocksDB SST + blob files
  uint64_t garbage_bytes = 0;      // of disk_bytes: freed payloads not yet reclaimed
  std::vector<FileStats> per_file;
};

struct VerifyReport {
  uint64_t files = 0;
  uint64_t objects = 0;
  uint64_t chunks = 0;
  uint64_t bytes = 0;
  std::vector<std::string> errors;  // one line each; empty when all is well
};

class Store {
 public:
  // Opens (or creates) the store in `dir`. Busy if another process holds it.
  static Status Open(const std::string& dir, const StoreOptions& options, std::unique_ptr<Store>* store);
  // Salvage for a store that no longer opens (a damaged MANIFEST, SST or
  // blob file): rebuilds RocksDB's metadata in place from the files that are
  // still readable (rocksdb::RepairDB; damaged records are dropped), then
  // puts back the chunk payloads of the blob files, which RocksDB 7.8's
  // repair does not register (store/blob_salvage.h). Run it on a copy of
  // the store directory; afterwards Verify names every file that lost
  // content, and the rest reads back intact. Must not be open. `report`
  // (may be null) says what came back from the blob files.
  struct RepairReport {
    int blob_files = 0;                  // blob files found
    uint64_t payloads_restored = 0;      // chunk payloads put back from them
    uint64_t payload_bytes_restored = 0;
    std::vector<std::string> notes;      // what could not be used, and why
  };
  static Status Repair(const std::string& dir, RepairReport* report = nullptr);
  ~Store();
  Store(const Store&) = delete;
  Store& operator=(const Store&) = delete;

  // ---- Namespace ----
  // Errors are decided here, under the commit lock, and carry the POSIX
  // sub-code (Status::posix_code) where the code alone does not name the
  // errno: ENOTDIR, EISDIR, ENOTEMPTY, ENAMETOOLONG.
  Status GetInode(uint64_t ino, Inode* out);
  Status Lookup(uint64_t parent, std::string_view name, Inode* out);
  // Resolves a '/'-separated path relative to the root ("" or "/" = root).
  Status Resolve(std::string_view path, Inode* out);
  Status ReadDir(uint64_t ino, std::vector<DirEntry>* out);
  // Creates directory `name` in `parent` owned by uid:gid (AlreadyExists,
  // with *out set to the existing entry, if the name is taken).
  Status MakeDirectory(uint64_t parent, std::string_view name, uint32_t mode, uint32_t uid, uint32_t gid,
                       Inode* out);
  // mkdir -p of a path; returns the last directory.
  Status MakeDirectories(std::string_view path, Inode* out);
  Status Symlink(uint64_t parent, std::string_view name, std::string_view target, uint32_t uid, uint32_t gid,
                 Inode* out);
  // Removes a file or symlink; the content is freed or detached. *removed
  // (if given) gets the inode as it was just before.
  Status Unlink(uint64_t parent, std::string_view name, Inode* removed = nullptr);
  // Removes an empty directory.
  Status RemoveDirectory(uint64_t parent, std::string_view name);
  // Removes a path recursively (rm -rf).
  Status RemoveTree(std::string_view path);
  // Creates an empty regular file (no content object) owned by uid:gid.
  Status CreateFile(uint64_t parent, std::string_view name, uint32_t mode, uint32_t uid, uint32_t gid, Inode* out);
  // rename(2): flags 0 (replace a file or empty directory target),
  // kRenameNoReplace (AlreadyExists if the target exists) or kRenameExchange
  // (swap two existing entries). One atomic commit.
  static constexpr unsigned kRenameNoReplace = 1;  // RENAME_NOREPLACE
  static constexpr unsigned kRenameExchange = 2;   // RENAME_EXCHANGE
  // *replaced (if given) gets the target it replaced as it was just before
  // (ino 0: none, or an exchange).
  Status Rename(uint64_t parent, std::string_view name, uint64_t new_parent, std::string_view new_name,
                unsigned flags, Inode* replaced = nullptr);
  // Changes attributes of an inode; each member left empty is unchanged.
  struct AttrChanges {
    std::optional<uint32_t> mode;
    std::optional<uint32_t> uid;
    std::optional<uint32_t> gid;
    std::optional<int64_t> mtime_ns;
  };
  Status SetAttributes(uint64_t ino, const AttrChanges& changes, Inode* out = nullptr);
  // Makes every earlier commit durable (fsync of a directory or a file).
  Status SyncLog();
  // OK if the store takes writes. After a background error (a full disk,
  // most often) asks RocksDB to resume, and restores the space reserve once
  // there is room: call it periodically; NoSpace/IOError while it cannot.
  Status CheckWrites();
  // Whether new content should be ingested now (WriteGuard::HasRoom): false
  // after the disk filled, until space is freed.
  bool HasRoomForIngest();
  // Counts inodes (for statfs).
  Status CountInodes(uint64_t* count);

  // ---- Content ----
  // Stores the content of the local file `src_path` as `name` in directory
  // `parent`, replacing a file of that name. Mode and mtime are taken from
  // the source. Reads the source once, in batches: memory is bounded by
  // options.batch_bytes plus a few chunks per thread.
  Status IngestFile(uint64_t parent, std::string_view name, const std::string& src_path, IngestResult* result);

  // Replaces the content of the existing file `ino` with the bytes of the
  // local file `src_path`, giving it `mtime_ns` (mode and owner unchanged).
  // The reference is chosen from the file's current name and directory.
  // NotFound if the inode was removed meanwhile (nothing is committed).
  Status IngestInode(uint64_t ino, const std::string& src_path, int64_t mtime_ns, IngestResult* result);

  // Opens a reader on a file's committed content. The reader sees a snapshot:
  // later deletes or re-bases do not disturb it.
  Status OpenReader(uint64_t ino, std::unique_ptr<FileReader>* reader);

  // The collector's work, in the background in tpded: demotes queued
  // keyframes to deltas against their successors, re-bases the dependents of
  // detached objects and frees those objects, then compacts freed payload
  // ranges so that RocksDB deletes their blob files. Re-encoding runs on a
  // pool of lower CPU priority. One call at a time (callers are serialised).
  Status CollectGarbage();

  Status Stats(std::string_view path_prefix, StoreStats* out);
  // Statistics of one file (path left empty; reference_path resolved).
  Status GetFileStats(uint64_t ino, FileStats* out);
  // Removes a file by inode (from the directory its inode names as parent).
  Status RemoveFileInode(uint64_t ino);
  // The name of `n` in its directory n.parent ("" if it has none).
  std::string NameOf(const Inode& n);
  // Decodes every object (live and detached) and checks every checksum and
  // the reference graph. A file inode that names no content was created and
  // never committed: fine while it is being written (`is_spooled` says so;
  // the daemon passes its spool), an error otherwise (its content record was
  // lost, e.g. with a damaged log): reported, never taken for an empty file.
  Status Verify(VerifyReport* report, const std::function<bool(uint64_t ino)>& is_spooled = nullptr);

  const StoreOptions& options() const;

  struct Impl;

 private:
  explicit Store(std::unique_ptr<Impl> impl);
  Status VerifyPass(VerifyReport* report, const std::function<bool(uint64_t ino)>& is_spooled);
  // Adds `node` (type, mode, owner, payload fields set) as `name` in `parent`:
  // assigns its inode number, parent and times, and commits it with the
  // dirent and the parent's new mtime.
  Status AddEntry(uint64_t parent, std::string_view name, Inode node, Inode* out);
  std::unique_ptr<Impl> impl_;
};

}  // namespace tpde
