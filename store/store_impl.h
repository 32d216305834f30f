// Store internals (not public): the composition of the store's parts, shared
// by store.cc (namespace operations, stats, verify), ingest.cc, the object
// writer and the collector. Each part keeps its own state behind its own
// interface:
//   Namespace  inodes and dirents                      store/namespace.h
//   Catalog    manifests, references, lanes, reclaim   store/catalog.h
//   FileReader one object's chunks through the chain decoder  store/file_reader.h
//   Collector  demotion, re-base, reclaim              store/collector.h
//   WriteGuard background errors, full disks           store/write_guard.h
// What stays here is what ties them together: the database, the pools, the
// commit lock and the id counters.
#pragma once

#include <rocksdb/db.h>
#include <rocksdb/write_batch.h>

#include <atomic>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "codec/thread_annotations.h"
#include "codec/thread_pool.h"
#include "store/catalog.h"
#include "store/collector.h"
#include "store/file_reader.h"
#include "store/namespace.h"
#include "store/store.h"
#include "store/write_guard.h"

namespace tpde {

struct Store::Impl {
  std::string dir;
  StoreOptions options;
  std::unique_ptr<rocksdb::Env> env;  // over StoreOptions::file_system, if given (outlives db)
  std::unique_ptr<rocksdb::DB> db;
  rocksdb::ColumnFamilyHandle* default_cf = nullptr;  // format version, commit sequence
  std::vector<rocksdb::ColumnFamilyHandle*> handles;  // every column family, for Flush and stats
  Namespace ns;
  std::unique_ptr<Catalog> catalog;
  std::unique_ptr<Collector> collector;
  std::shared_ptr<WriteGuard> write_guard;
  // Three pools, so that reads never queue behind background work and the
  // OS schedules each at its own priority: reads (default priority), ingest
  // (options.ingest_nice), demotion and re-base (nice 10).
  std::unique_ptr<ThreadPool> pool;             // reads
  std::unique_ptr<ThreadPool> ingest_pool;      // ingest
  std::unique_ptr<ThreadPool> background_pool;  // demotion, re-base

  std::mutex commit_mu;  // serialises every namespace or object mutation
  std::atomic<uint64_t> next_inode{kRootInode + 1};
  std::atomic<uint64_t> next_object{1};
  uint64_t next_commit_seq TPDE_GUARDED_BY(commit_mu) = 1;

  ~Impl();

  // A reader of `object` at a snapshot taken now.
  Status OpenObjectReader(uint64_t object, std::unique_ptr<FileReader>* reader);
  // Fills the content fields of `f` (not its path) for file inode `n`.
  Status FillFileStats(const Inode& n, FileStats* f, const rocksdb::Snapshot* snap);
  // Writes `b` atomically. Content commits (ingest, re-base, free) are
  // synced; namespace-only changes pass sync = false and become durable with
  // the next synced commit or SyncLog() (the WAL is ordered). Needs no lock:
  // callers that read state to build `b` hold commit_mu.
  Status Commit(rocksdb::WriteBatch* b, bool sync = true);
  // Deletes the payloads staged for (object, generation) in `lane` by an
  // ingest or re-base that is not going to commit.
  Status DropStaged(uint8_t lane, uint64_t object, uint32_t generation);
};

}  // namespace tpde
