#include "store/store.h"

#include <fmt/format.h>
#include <rocksdb/options.h>
#include <rocksdb/utilities/options_util.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <filesystem>
#include <functional>
#include <set>
#include <unordered_set>

#include "store/blob_salvage.h"
#include "store/catalog.h"
#include "store/coding.h"
#include "store/keys.h"
#include "store/rocks_log.h"
#include "store/rocks_status.h"
#include "store/store_impl.h"

namespace tpde {

namespace {

constexpr std::string_view kStoreFormatVersion = "2";

int64_t NowNs() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Status CheckName(std::string_view name) {
  if (name.size() > 255) {
    return Status::InvalidArgument(fmt::format("file name of {} bytes (at most 255)", name.size()))
        .WithPosixCode(ENAMETOOLONG);
  }
  if (name.empty() || name == "." || name == ".." || name.find('/') != std::string_view::npos ||
      name.find('\0') != std::string_view::npos) {
    return Status::InvalidArgument(fmt::format("invalid file name '{}'", name));
  }
  return Status::OK();
}

Status NotADirectory(std::string_view what) {
  return Status::InvalidArgument(fmt::format("'{}' is not a directory", what)).WithPosixCode(ENOTDIR);
}

Status IsADirectory(std::string_view what) {
  return Status::InvalidArgument(fmt::format("'{}' is a directory", what)).WithPosixCode(EISDIR);
}

Status NotEmpty(std::string_view what) {
  return Status::InvalidArgument(fmt::format("directory '{}' is not empty", what)).WithPosixCode(ENOTEMPTY);
}

// A chunk lane: payloads are already entropy-coded, so they live out of the
// LSM tree in blob files, uncompressed. Each large object's payloads are
// flushed alone into their lane's blob files (store/manifest.h), so a freed
// generation's blob files hold nothing else: once compaction drops the
// freed keys RocksDB deletes those files whole, and no blob ever needs to be
// relocated (blob garbage collection stays off, except on the shared lane 0,
// where small objects mix).
rocksdb::ColumnFamilyOptions LaneOptions(int lane) {
  rocksdb::ColumnFamilyOptions o;
  o.enable_blob_files = true;
  o.min_blob_size = 4096;
  o.blob_file_size = 1ull << 30;  // one blob file per flush
  o.blob_compression_type = rocksdb::kNoCompression;
  o.compression = rocksdb::kNoCompression;
  o.enable_blob_garbage_collection = lane == 0;
  o.blob_garbage_collection_age_cutoff = 0.5;
  o.write_buffer_size = 256ull << 20;
  return o;
}

// Metadata column families first, then the chunk lanes.
std::vector<rocksdb::ColumnFamilyDescriptor> ColumnFamilies() {
  rocksdb::ColumnFamilyOptions meta;
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs = {
      {rocksdb::kDefaultColumnFamilyName, meta}, {keys::kInodes, meta},  {keys::kDirents, meta},
      {keys::kObjects, meta},                    {keys::kDeps, meta},    {keys::kDetached, meta},
      {keys::kPending, meta},
  };
  for (int i = 0; i < kChunkLanes; ++i) cfs.push_back({keys::ChunkLane(i), LaneOptions(i)});
  return cfs;
}

// The catalogue's column families among the handles opened in the order of
// ColumnFamilies().
CatalogFamilies FamiliesOfCatalog(const std::vector<rocksdb::ColumnFamilyHandle*>& handles) {
  CatalogFamilies families;
  families.objects = handles[3];
  families.deps = handles[4];
  families.detached = handles[5];
  families.pending = handles[6];
  const size_t first_lane = handles.size() - kChunkLanes;
  for (int i = 0; i < kChunkLanes; ++i) families.lanes[i] = handles[first_lane + i];
  return families;
}

// A store of another format version has other column families: RocksDB
// would refuse it with "column families not opened". Read its version
// (read-only, changing nothing) and say which it is.
Status RefuseOtherFormat(const rocksdb::DBOptions& dbo, const std::string& dir,
                         const std::vector<rocksdb::ColumnFamilyDescriptor>& ours) {
  std::vector<std::string> existing;
  if (!rocksdb::DB::ListColumnFamilies(dbo, dir, &existing).ok()) return Status::OK();  // a new store
  std::set<std::string> known;
  for (const auto& d : ours) known.insert(d.name);
  if (std::all_of(existing.begin(), existing.end(), [&](const std::string& n) { return known.count(n) > 0; })) {
    return Status::OK();
  }
  std::vector<rocksdb::ColumnFamilyDescriptor> theirs;
  for (const auto& n : existing) theirs.push_back({n, rocksdb::ColumnFamilyOptions()});
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* db = nullptr;
  std::string version = "unknown";
  if (rocksdb::DB::OpenForReadOnly(dbo, dir, theirs, &handles, &db).ok()) {
    std::string v;
    if (db->Get(rocksdb::ReadOptions(), keys::kFormatVersion, &v).ok()) version = v;
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
    delete db;
  }
  return Status::NotSupported(fmt::format(
      "store '{}' has format version {}; this tpde reads format version {} (see docs/operations.md, "
      "\"Upgrading\")",
      dir, version, kStoreFormatVersion));
}

}  // namespace

Store::Impl::~Impl() {
  if (db) {
    // Everything into table files: a clean store is whole without its WAL,
    // which also lets Repair rebuild it should its MANIFEST be lost.
    if (write_guard == nullptr || write_guard->error().ok()) {
      std::vector<rocksdb::ColumnFamilyHandle*> all(handles.begin(), handles.end());
      rocksdb::FlushOptions fo;
      (void)db->Flush(fo, all);
    }
    for (auto* h : handles) {
      if (h != nullptr && h != db->DefaultColumnFamily()) db->DestroyColumnFamilyHandle(h);
    }
    db->Close();
  }
}

Store::Store(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Store::~Store() = default;
const StoreOptions& Store::options() const { return impl_->options; }

Status Store::Repair(const std::string& dir, RepairReport* report) {
  RepairReport ignored;
  if (report == nullptr) report = &ignored;
  std::error_code ec;
  if (!std::filesystem::exists(std::filesystem::path(dir) / "CURRENT", ec) &&
      !std::filesystem::exists(std::filesystem::path(dir) / "IDENTITY", ec)) {
    return Status::NotFound(fmt::format("'{}' is not a tpde store", dir));
  }
  {
    // Nothing is moved out of a store that a daemon or a tool has open.
    rocksdb::Env* env = rocksdb::Env::Default();
    rocksdb::FileLock* lock = nullptr;
    if (!env->LockFile((std::filesystem::path(dir) / "LOCK").string(), &lock).ok()) {
      return Status::Busy(fmt::format("store '{}' is in use by another process (is tpded running?)", dir));
    }
    (void)env->UnlockFile(lock);
  }
  // The repaired store would delete the blob files it does not know at its
  // first open: set them aside first (a repair run again finds them there).
  const std::string aside = (std::filesystem::path(dir) / "salvage-blobs").string();
  TPDE_RETURN_IF_ERROR(SetAsideBlobFiles(dir, aside));
  rocksdb::DBOptions dbo;
  dbo.info_log = std::make_shared<RocksLog>(rocksdb::InfoLogLevel::WARN_LEVEL);
  rocksdb::ColumnFamilyOptions unknown;  // a column family of another version, kept as it is
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs = ColumnFamilies();
  TPDE_RETURN_IF_ERROR(FromRocks(rocksdb::RepairDB(dir, dbo, cfs, unknown), fmt::format("repairing '{}'", dir)));

  // Column families with no table file left are created again, empty. No
  // compaction runs while the lanes still hold references to blob files the
  // repaired MANIFEST does not know: it would fail, and stop the writes.
  dbo.create_missing_column_families = true;
  for (auto& d : cfs) d.options.disable_auto_compactions = true;
  std::vector<rocksdb::ColumnFamilyHandle*> handles;
  rocksdb::DB* raw = nullptr;
  TPDE_RETURN_IF_ERROR(FromRocks(rocksdb::DB::Open(dbo, dir, cfs, &handles, &raw), "opening the repaired store"));
  std::unique_ptr<rocksdb::DB> db(raw);
  const size_t first_lane = cfs.size() - kChunkLanes;
  auto close = [&](Status s) {
    for (auto* h : handles) db->DestroyColumnFamilyHandle(h);
    const rocksdb::Status closed = db->Close();
    TPDE_RETURN_IF_ERROR(s);
    return FromRocks(closed, "closing the repaired store");
  };

  BlobSalvage blobs;
  if (Status s = blobs.Scan(aside); !s.ok()) return close(s);
  report->blob_files = blobs.files();
  report->notes = blobs.notes();

  // Every payload a manifest names, by lane; then the payloads of the blob
  // files that no readable manifest names but a lane still references (an
  // object whose manifest is damaged keeps them, as Store::Open does).
  std::array<std::vector<std::string>, kChunkLanes> wanted;
  bool catalog_damaged = false;
  {
    std::mutex commit_mu;
    Catalog catalog(raw, FamiliesOfCatalog(handles), &commit_mu);
    Status s = catalog.ForEachObject([&](uint64_t object) {
      std::shared_ptr<const Manifest> m;
      Status g = catalog.GetManifest(object, &m);
      if (!g.ok()) {
        report->notes.push_back(fmt::format("object {}: {}", object, g.ToString()));
        catalog_damaged = true;
        return true;
      }
      for (uint32_t c = 0; c < m->chunks.size(); ++c) wanted[m->lane].push_back(keys::Chunk(object, m->generation, c));
      return true;
    });
    if (!s.ok()) {
      report->notes.push_back(s.ToString());
      catalog_damaged = true;
    }
  }
  {
    std::unordered_set<std::string> named;
    for (const auto& lane_keys : wanted) named.insert(lane_keys.begin(), lane_keys.end());
    blobs.ForEachKey([&](const std::string& key) {
      if (named.count(key) > 0) return;
      for (int lane = 0; lane < kChunkLanes; ++lane) {
        std::string ignored_value;
        const rocksdb::Status g = db->Get(rocksdb::ReadOptions(), handles[first_lane + lane], key, &ignored_value);
        if (!g.ok() && !g.IsNotFound()) {  // a reference to a blob file the MANIFEST does not know
          wanted[lane].push_back(key);
          break;
        }
      }
    });
  }

  // Each lane is built anew: the payloads stored in its tables (below
  // min_blob_size) read from the old lane, the others from the blob files.
  // A payload found in neither is left out: Verify names its file.
  for (int lane = 0; lane < kChunkLanes; ++lane) {
    rocksdb::ColumnFamilyHandle*& h = handles[first_lane + lane];
    std::vector<std::pair<std::string, std::string>> in_tables;
    std::vector<std::string> from_blobs;
    for (const std::string& key : wanted[lane]) {
      std::string value;
      rocksdb::Status g = db->Get(rocksdb::ReadOptions(), h, key, &value);
      if (g.ok()) {
        in_tables.emplace_back(key, std::move(value));
      } else {
        from_blobs.push_back(key);  // a reference to a blob file the MANIFEST does not know, or lost
      }
    }
    // From the drop to the flush below, the lane's small payloads are in
    // this process and in the WAL only: a repair cut short there needs a
    // fresh copy of the store (docs/operations.md, "Salvage").
    Status s = FromRocks(db->DropColumnFamily(h), "dropping a chunk lane to rebuild it");
    if (!s.ok()) return close(s);
    s = FromRocks(db->DestroyColumnFamilyHandle(h), "dropping a chunk lane");
    h = nullptr;
    rocksdb::ColumnFamilyOptions lane_options = LaneOptions(lane);
    lane_options.disable_auto_compactions = true;
    if (s.ok()) s = FromRocks(db->CreateColumnFamily(lane_options, keys::ChunkLane(lane), &h), "rebuilding a lane");
    if (!s.ok()) {
      handles.erase(std::remove(handles.begin(), handles.end(), nullptr), handles.end());
      return close(s);
    }
    const rocksdb::WriteOptions wo;
    for (const auto& [key, value] : in_tables) {
      if (s.ok()) s = FromRocks(db->Put(wo, h, key, value), "restoring a chunk payload");
    }
    std::string value;
    for (const std::string& key : from_blobs) {
      if (!s.ok()) break;
      Status g = blobs.Get(key, &value);
      if (g.IsNotFound()) continue;
      s = g.ok() ? FromRocks(db->Put(wo, h, key, value), "restoring a chunk payload") : g;
      if (s.ok()) {
        ++report->payloads_restored;
        report->payload_bytes_restored += value.size();
      }
    }
    if (s.ok()) s = FromRocks(db->Flush(rocksdb::FlushOptions(), h), "flushing a rebuilt lane");
    if (!s.ok()) return close(s);
  }
  // Every lane is whole without the blob files set aside, unless some could
  // not be read or a manifest was damaged: then they stay for a closer look.
  if (blobs.notes().empty() && !catalog_damaged) {
    std::filesystem::remove_all(aside, ec);
  } else {
    report->notes.push_back(fmt::format("the blob files stay in '{}': delete it once verify is OK", aside));
  }
  return close(Status::OK());
}

Status Store::Open(const std::string& dir, const StoreOptions& options, std::unique_ptr<Store>* store) {
  if (options.max_chain_depth < 0 || options.max_chain_depth > 62) {
    return Status::InvalidArgument("max_chain_depth must be in [0, 62]");
  }
  auto impl = std::make_unique<Impl>();
  impl->dir = dir;
  impl->options = options;
  std::error_code ec;
  if (!std::filesystem::exists(dir, ec)) {
    if (!options.create_if_missing) return Status::NotFound(fmt::format("store '{}' does not exist", dir));
    std::filesystem::create_directories(dir, ec);
    if (ec) return Status::IOError(fmt::format("cannot create store '{}': {}", dir, ec.message()));
  } else if (!std::filesystem::exists(std::filesystem::path(dir) / "CURRENT", ec) && !options.create_if_missing) {
    return Status::NotFound(fmt::format("'{}' is not a tpde store", dir));
  }

  impl->write_guard = std::make_shared<WriteGuard>(dir, options.reserve_bytes);
  rocksdb::DBOptions dbo;
  if (options.file_system) {
    impl->env = rocksdb::NewCompositeEnv(options.file_system);
    dbo.env = impl->env.get();
  }
  dbo.listeners.push_back(impl->write_guard);
  dbo.create_if_missing = options.create_if_missing;
  dbo.create_missing_column_families = options.create_if_missing;
  dbo.max_background_jobs = 4;
  dbo.info_log_level =
      options.rocksdb_warnings ? rocksdb::InfoLogLevel::WARN_LEVEL : rocksdb::InfoLogLevel::FATAL_LEVEL;
  dbo.info_log = std::make_shared<RocksLog>(dbo.info_log_level);  // not a LOG file on the (maybe full) store disk
  dbo.keep_log_file_num = 4;
  // A damaged log tail is dropped, leaving a consistent prefix of commits
  // (not every record that happens to parse). A file whose content commit
  // was in the lost tail names no object: Verify and reads report it.
  dbo.wal_recovery_mode = rocksdb::WALRecoveryMode::kPointInTimeRecovery;
  dbo.db_write_buffer_size = 1ull << 30;  // all memtables together
  const std::vector<rocksdb::ColumnFamilyDescriptor> cfs = ColumnFamilies();

  TPDE_RETURN_IF_ERROR(RefuseOtherFormat(dbo, dir, cfs));

  rocksdb::DB* raw = nullptr;
  rocksdb::Status s = rocksdb::DB::Open(dbo, dir, cfs, &impl->handles, &raw);
  if (!s.ok()) {
    if (s.IsIOError() && s.ToString().find("lock") != std::string::npos) {
      return Status::Busy(fmt::format("store '{}' is in use by another process (is tpded running?)", dir));
    }
    return FromRocks(s, fmt::format("cannot open store '{}'", dir));
  }
  impl->db.reset(raw);
  raw->GetEnv()->LowerThreadPoolCPUPriority(rocksdb::Env::LOW);  // compactions yield to saves
  impl->default_cf = impl->handles[0];
  impl->write_guard->Attach(raw, impl->default_cf);
  impl->ns = Namespace(raw, impl->handles[1], impl->handles[2]);
  impl->catalog = std::make_unique<Catalog>(raw, FamiliesOfCatalog(impl->handles), &impl->commit_mu);
  impl->collector = std::make_unique<Collector>(impl.get());
  impl->write_guard->MaybeRestoreReserve();
  impl->pool = std::make_unique<ThreadPool>(options.threads);
  impl->ingest_pool = std::make_unique<ThreadPool>(options.threads, options.ingest_nice);
  impl->background_pool = std::make_unique<ThreadPool>(options.threads, /*nice=*/10);

  // Format version, root directory, counters.
  std::string value;
  s = raw->Get(rocksdb::ReadOptions(), impl->default_cf, keys::kFormatVersion, &value);
  if (s.IsNotFound()) {
    rocksdb::WriteBatch b;
    b.Put(impl->default_cf, keys::kFormatVersion, kStoreFormatVersion);
    Inode root;
    root.ino = kRootInode;
    root.type = InodeType::kDirectory;
    root.mode = 0755;
    root.nlink = 2;
    root.parent = kRootInode;
    root.mtime_ns = root.ctime_ns = NowNs();
    impl->ns.PutInode(&b, root);
    TPDE_RETURN_IF_ERROR(impl->Commit(&b));
  } else if (!s.ok()) {
    return FromRocks(s, "reading format version");
  } else if (value != kStoreFormatVersion) {
    return Status::NotSupported(fmt::format("store '{}' has format version {}, this tpde reads {}", dir, value,
                                            kStoreFormatVersion));
  }
  s = raw->Get(rocksdb::ReadOptions(), impl->default_cf, keys::kNextCommitSeq, &value);
  if (s.ok() && value.size() == 8) impl->next_commit_seq = GetBigEndian64(value);

  // Counters come from the largest keys in use, so a crash between staging
  // and committing never hands out an id twice.
  impl->next_inode = std::max<uint64_t>(kRootInode + 1, impl->ns.LastInode() + 1);
  impl->next_object = impl->catalog->LastObject() + 1;

  // Delete chunk payloads staged by ingests or re-bases that never committed.
  rocksdb::WriteBatch orphans;
  int dropped = 0;
  TPDE_RETURN_IF_ERROR(impl->catalog->DropOrphanGenerations(&orphans, &dropped));
  if (dropped > 0) TPDE_RETURN_IF_ERROR(impl->Commit(&orphans));
  store->reset(new Store(std::move(impl)));
  return Status::OK();
}

// ---- Impl --------------------------------------------------------------------

Status Store::Impl::OpenObjectReader(uint64_t object, std::unique_ptr<FileReader>* reader) {
  const rocksdb::Snapshot* snap = db->GetSnapshot();
  std::vector<std::shared_ptr<const Manifest>> chain;
  Status s = catalog->GetChain(object, &chain, snap);
  if (!s.ok()) {
    db->ReleaseSnapshot(snap);
    return s;
  }
  reader->reset(new FileReader(db.get(), &catalog->lanes(), snap, std::move(chain), pool.get(), options.chain_decoder.get()));
  return Status::OK();
}

Status Store::Impl::Commit(rocksdb::WriteBatch* b, bool sync) {
  // After a background error RocksDB takes no writes until it resumes; on a
  // full disk the guard's reserve makes room for this one (a deletion, most
  // often: what frees space).
  if (Status e = write_guard->error(); !e.ok()) TPDE_RETURN_IF_ERROR(write_guard->Resume());
  rocksdb::WriteOptions wo;
  wo.sync = sync;
  TPDE_RETURN_IF_ERROR(write_guard->Run("commit", [&] { return db->Write(wo, b); }));
  if (catalog) catalog->Committed(*b);
  return Status::OK();
}

Status Store::Impl::DropStaged(uint8_t lane, uint64_t object, uint32_t generation) {
  rocksdb::WriteBatch drop;
  catalog->DropGeneration(&drop, lane, object, generation);
  return Commit(&drop);
}

// ---- Namespace --------------------------------------------------------------

Status Store::GetInode(uint64_t ino, Inode* out) { return impl_->ns.GetInode(ino, out); }

Status Store::Lookup(uint64_t parent, std::string_view name, Inode* out) { return impl_->ns.Lookup(parent, name, out); }

Status Store::Resolve(std::string_view path, Inode* out) {
  TPDE_RETURN_IF_ERROR(impl_->ns.GetInode(kRootInode, out));
  size_t pos = 0;
  while (pos < path.size()) {
    size_t end = path.find('/', pos);
    if (end == std::string_view::npos) end = path.size();
    std::string_view part = path.substr(pos, end - pos);
    pos = end + 1;
    if (part.empty() || part == ".") continue;
    if (out->type != InodeType::kDirectory) {
      return Status::NotFound(fmt::format("'{}': a path component is not a directory", path)).WithPosixCode(ENOTDIR);
    }
    Status s = impl_->ns.Lookup(out->ino, part, out);
    if (s.IsNotFound()) return Status::NotFound(fmt::format("'{}' not found in the store", path));
    TPDE_RETURN_IF_ERROR(s);
  }
  return Status::OK();
}

Status Store::ReadDir(uint64_t ino, std::vector<DirEntry>* out) { return impl_->ns.ReadDir(ino, out); }

Status Store::AddEntry(uint64_t parent, std::string_view name, Inode node, Inode* out) {
  TPDE_RETURN_IF_ERROR(CheckName(name));
  std::lock_guard<std::mutex> lock(impl_->commit_mu);
  Inode p;
  TPDE_RETURN_IF_ERROR(impl_->ns.GetInode(parent, &p));
  if (p.type != InodeType::kDirectory) return NotADirectory(fmt::format("parent of {}", name));
  Inode existing;
  if (impl_->ns.Lookup(parent, name, &existing).ok()) {
    *out = existing;
    return Status::AlreadyExists(fmt::format("'{}' exists", name));
  }
  node.ino = impl_->next_inode++;
  node.parent = parent;
  node.mode &= 07777;
  node.mtime_ns = node.ctime_ns = NowNs();
  p.mtime_ns = p.ctime_ns = node.mtime_ns;
  rocksdb::WriteBatch b;
  impl_->ns.PutInode(&b, node);
  impl_->ns.PutInode(&b, p);
  impl_->ns.PutDirent(&b, parent, name, node.ino, node.type);
  TPDE_RETURN_IF_ERROR(impl_->Commit(&b, /*sync=*/false));
  *out = node;
  return Status::OK();
}

Status Store::MakeDirectory(uint64_t parent, std::string_view name, uint32_t mode, uint32_t uid, uint32_t gid,
                            Inode* out) {
  Inode d;
  d.type = InodeType::kDirectory;
  d.mode = mode;
  d.uid = uid;
  d.gid = gid;
  d.nlink = 2;
  return AddEntry(parent, name, d, out);
}

Status Store::MakeDirectories(std::string_view path, Inode* out) {
  TPDE_RETURN_IF_ERROR(impl_->ns.GetInode(kRootInode, out));
  size_t pos = 0;
  while (pos < path.size()) {
    size_t end = path.find('/', pos);
    if (end == std::string_view::npos) end = path.size();
    std::string_view part = path.substr(pos, end - pos);
    pos = end + 1;
    if (part.empty() || part == ".") continue;
    Inode next;
    Status s = MakeDirectory(out->ino, part, 0755, 0, 0, &next);
    if (!s.ok() && !s.IsAlreadyExists()) return s;
    if (next.type != InodeType::kDirectory) return NotADirectory(part);
    *out = next;
  }
  return Status::OK();
}

Status Store::Symlink(uint64_t parent, std::string_view name, std::string_view target, uint32_t uid,
                      uint32_t gid, Inode* out) {
  Inode n;
  n.type = InodeType::kSymlink;
  n.mode = 0777;
  n.uid = uid;
  n.gid = gid;
  n.size = target.size();
  n.target = std::string(target);
  return AddEntry(parent, name, n, out);
}

Status Store::Unlink(uint64_t parent, std::string_view name, Inode* removed) {
  std::lock_guard<std::mutex> lock(impl_->commit_mu);
  Inode n;
  TPDE_RETURN_IF_ERROR(impl_->ns.Lookup(parent, name, &n));
  if (n.type == InodeType::kDirectory) return IsADirectory(name);
  if (removed != nullptr) *removed = n;
  rocksdb::WriteBatch b;
  impl_->ns.DeleteDirent(&b, parent, name);
  if (n.nlink > 1) {
    --n.nlink;
    impl_->ns.PutInode(&b, n);
  } else {
    impl_->ns.DeleteInode(&b, n.ino);
    if (n.object != 0) TPDE_RETURN_IF_ERROR(impl_->catalog->ReleaseObject(&b, n.object));
  }
  // Synced when content is freed or detached; a plain name removal is not.
  return impl_->Commit(&b, /*sync=*/n.nlink <= 1 && n.object != 0);
}

Status Store::RemoveDirectory(uint64_t parent, std::string_view name) {
  std::lock_guard<std::mutex> lock(impl_->commit_mu);
  Inode n;
  TPDE_RETURN_IF_ERROR(impl_->ns.Lookup(parent, name, &n));
  if (n.type != InodeType::kDirectory) return NotADirectory(name);
  std::vector<DirEntry> entries;
  TPDE_RETURN_IF_ERROR(ReadDir(n.ino, &entries));
  if (!entries.empty()) return NotEmpty(name);
  rocksdb::WriteBatch b;
  impl_->ns.DeleteDirent(&b, parent, name);
  impl_->ns.DeleteInode(&b, n.ino);
  return impl_->Commit(&b, /*sync=*/false);
}

Status Store::RemoveTree(std::string_view path) {
  Inode n;
  TPDE_RETURN_IF_ERROR(Resolve(path, &n));
  if (n.ino == kRootInode) return Status::InvalidArgument("refusing to remove the root directory");
  std::string_view name = path;
  while (!name.empty() && name.back() == '/') name.remove_suffix(1);
  const size_t slash = name.rfind('/');
  const std::string_view leaf = slash == std::string_view::npos ? name : name.substr(slash + 1);
  Inode parent;
  TPDE_RETURN_IF_ERROR(Resolve(slash == std::string_view::npos ? "" : name.substr(0, slash), &parent));

  std::function<Status(uint64_t, std::string_view, const Inode&)> remove =
      [&](uint64_t dir, std::string_view entry, const Inode& node) -> Status {
    if (node.type != InodeType::kDirectory) return Unlink(dir, entry);
    std::vector<DirEntry> children;
    TPDE_RETURN_IF_ERROR(ReadDir(node.ino, &children));
    for (const auto& c : children) {
      Inode child;
      TPDE_RETURN_IF_ERROR(impl_->ns.GetInode(c.ino, &child));
      TPDE_RETURN_IF_ERROR(remove(node.ino, c.name, child));
    }
    return RemoveDirectory(dir, entry);
  };
  return remove(parent.ino, leaf, n);
}

Status Store::SetAttributes(uint64_t ino, const AttrChanges& changes, Inode* out) {
  std::lock_guard<std::mutex> lock(impl_->commit_mu);
  Inode n;
  TPDE_RETURN_IF_ERROR(impl_->ns.GetInode(ino, &n));
  if (changes.mode) n.mode = *changes.mode & 07777;
  if (changes.uid) n.uid = *changes.uid;
  if (changes.gid) n.gid = *changes.gid;
  if (changes.mtime_ns) n.mtime_ns = *changes.mtime_ns;
  n.ctime_ns = NowNs();
  rocksdb::WriteBatch b;
  impl_->ns.PutInode(&b, n);
  TPDE_RETURN_IF_ERROR(impl_->Commit(&b, /*sync=*/false));
  if (out != nullptr) *out = n;
  return Status::OK();
}

Status Store::CreateFile(uint64_t parent, std::string_view name, uint32_t mode, uint32_t uid, uint32_t gid,
                         Inode* out) {
  Inode n;
  n.type = InodeType::kFile;
  n.mode = mode;
  n.uid = uid;
  n.gid = gid;
  return AddEntry(parent, name, n, out);
}

Status Store::Rename(uint64_t parent, std::string_view name, uint64_t new_parent, std::string_view new_name,
                     unsigned flags, Inode* replaced) {
  if (replaced != nullptr) *replaced = Inode();
  TPDE_RETURN_IF_ERROR(CheckName(new_name));
  if ((flags & kRenameNoReplace) && (flags & kRenameExchange)) return Status::InvalidArgument("bad rename flags");
  std::lock_guard<std::mutex> lock(impl_->commit_mu);
  Inode src, dst_dir;
  TPDE_RETURN_IF_ERROR(impl_->ns.Lookup(parent, name, &src));
  TPDE_RETURN_IF_ERROR(impl_->ns.GetInode(new_parent, &dst_dir));
  if (dst_dir.type != InodeType::kDirectory) return NotADirectory(fmt::format("parent of {}", new_name));
  if (src.type == InodeType::kDirectory) {
    // A directory must not move into itself or a descendant.
    for (uint64_t d = new_parent;; ) {
      if (d == src.ino) return Status::InvalidArgument("cannot move a directory into itself");
      if (d == kRootInode) break;
      Inode di;
      TPDE_RETURN_IF_ERROR(impl_->ns.GetInode(d, &di));
      d = di.parent;
    }
  }
  Inode dst;
  Status ds = impl_->ns.Lookup(new_parent, new_name, &dst);
  if (!ds.ok() && !ds.IsNotFound()) return ds;
  const bool exists = ds.ok();
  if ((flags & kRenameNoReplace) && exists) return Status::AlreadyExists(fmt::format("'{}' exists", new_name));
  if (exists && dst.ino == src.ino) return Status::OK();  // two names of one inode: nothing to do (POSIX)
  if ((flags & kRenameExchange) && !exists) return Status::NotFound(fmt::format("'{}' not found", new_name));

  const Inode target_before = dst;
  rocksdb::WriteBatch b;
  const int64_t now = NowNs();
  if (flags & kRenameExchange) {
    impl_->ns.PutDirent(&b, parent, name, dst.ino, dst.type);
    dst.parent = parent;
    dst.ctime_ns = now;
    impl_->ns.PutInode(&b, dst);
  } else {
    impl_->ns.DeleteDirent(&b, parent, name);
    if (exists) {
      if (dst.type == InodeType::kDirectory) {
        if (src.type != InodeType::kDirectory) return IsADirectory(new_name);
        std::vector<DirEntry> children;
        TPDE_RETURN_IF_ERROR(ReadDir(dst.ino, &children));
        if (!children.empty()) return NotEmpty(new_name);
        impl_->ns.DeleteInode(&b, dst.ino);
      } else {
        if (src.type == InodeType::kDirectory) return NotADirectory(new_name);
        if (dst.nlink > 1) {
          --dst.nlink;
          impl_->ns.PutInode(&b, dst);
        } else {
          impl_->ns.DeleteInode(&b, dst.ino);
          if (dst.object != 0) TPDE_RETURN_IF_ERROR(impl_->catalog->ReleaseObject(&b, dst.object));
        }
      }
    }
  }
  impl_->ns.PutDirent(&b, new_parent, new_name, src.ino, src.type);
  src.parent = new_parent;
  src.ctime_ns = now;
  impl_->ns.PutInode(&b, src);
  TPDE_RETURN_IF_ERROR(impl_->Commit(&b, /*sync=*/false));
  if (replaced != nullptr && exists && !(flags & kRenameExchange)) *replaced = target_before;
  return Status::OK();
}

Status Store::SyncLog() {
  return impl_->write_guard->Run("syncing the log", [&] { return impl_->db->SyncWAL(); });
}

bool Store::HasRoomForIngest() { return impl_->write_guard->HasRoom(); }

Status Store::CheckWrites() {
  Impl& im = *impl_;
  TPDE_RETURN_IF_ERROR(im.write_guard->Resume());
  im.write_guard->MaybeRestoreReserve();
  return Status::OK();
}

Status Store::CountInodes(uint64_t* count) {
  *count = 0;
  return impl_->ns.ForEachInode([&](const Status&, const Inode&) {
    ++*count;
    return true;
  });
}

Status Store::CollectGarbage() { return impl_->collector->Collect(); }

Status Store::OpenReader(uint64_t ino, std::unique_ptr<FileReader>* reader) {
  Inode n;
  TPDE_RETURN_IF_ERROR(impl_->ns.GetInode(ino, &n));
  if (n.type != InodeType::kFile) {
    return Status::InvalidArgument(fmt::format("inode {} is not a file", ino)).WithPosixCode(EISDIR);
  }
  if (n.object == 0) return Status::NotFound(fmt::format("inode {} has no content", ino));
  return impl_->OpenObjectReader(n.object, reader);
}

// ---- Stats and verification -------------------------------------------------

Status Store::Impl::FillFileStats(const Inode& n, FileStats* f, const rocksdb::Snapshot* snap) {
  f->ino = n.ino;
  f->object = n.object;
  f->file_bytes = n.size;
  if (n.object == 0) return Status::OK();
  std::vector<std::shared_ptr<const Manifest>> chain;
  TPDE_RETURN_IF_ERROR(catalog->GetChain(n.object, &chain, snap));
  const Manifest& m = *chain[0];
  f->reference = m.reference;
  f->kind = m.kind;
  f->chain_depth = static_cast<int>(chain.size()) - 1;
  f->stored_bytes = m.payload_bytes() + m.stored_bytes;
  for (const auto& c : m.chunks) {
    f->chunks_by_mode[static_cast<int>(c.mode)]++;
    f->stored_bytes_by_mode[static_cast<int>(c.mode)] += c.payload_bytes();
  }
  return Status::OK();
}

Status Store::GetFileStats(uint64_t ino, FileStats* out) {
  *out = FileStats();
  // One snapshot: a commit or reclaim running meanwhile cannot make the
  // inode name an object that is gone by the time its manifest is read.
  rocksdb::ManagedSnapshot snapshot(impl_->db.get());
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot.snapshot();
  Inode n;
  TPDE_RETURN_IF_ERROR(impl_->ns.GetInode(ino, &n, ro.snapshot));
  TPDE_RETURN_IF_ERROR(impl_->FillFileStats(n, out, ro.snapshot));
  if (out->reference == 0) return Status::OK();
  // The path of the file whose object is the reference (a scan; for xattrs).
  bool found = false;
  Status scan = impl_->ns.ForEachInode(
      [&](const Status& parsed, const Inode& r) {
        if (!parsed.ok() || r.object != out->reference) return true;
        std::vector<std::string> parts;
        std::string name = r.type == InodeType::kFile ? impl_->ns.NameOf(r, ro.snapshot) : "";
        for (Inode d = r; !name.empty();) {
          parts.push_back(name);
          if (d.parent == kRootInode || d.parent == 0) break;
          Inode up;
          if (!impl_->ns.GetInode(d.parent, &up, ro.snapshot).ok()) break;
          name = impl_->ns.NameOf(up, ro.snapshot);
          d = up;
        }
        for (auto p = parts.rbegin(); p != parts.rend(); ++p) out->reference_path += "/" + *p;
        found = true;
        return false;
      },
      ro.snapshot);
  if (!found) out->reference_path = fmt::format("(deleted file, object {})", out->reference);
  return scan;
}

std::string Store::NameOf(const Inode& n) { return impl_->ns.NameOf(n); }

Status Store::RemoveFileInode(uint64_t ino) {
  Inode n;
  TPDE_RETURN_IF_ERROR(impl_->ns.GetInode(ino, &n));
  const std::string name = NameOf(n);
  if (name.empty()) return Status::NotFound(fmt::format("inode {} has no name in its parent", ino));
  return Unlink(n.parent, name);
}

Status Store::Stats(std::string_view path_prefix, StoreStats* out) {
  *out = StoreStats();
  Inode top;
  TPDE_RETURN_IF_ERROR(Resolve(path_prefix, &top));
  // Every read below sees one snapshot: files committed, overwritten or
  // reclaimed during the walk neither fail it nor count twice.
  rocksdb::ManagedSnapshot snapshot(impl_->db.get());
  rocksdb::ReadOptions ro;
  ro.snapshot = snapshot.snapshot();
  TPDE_RETURN_IF_ERROR(impl_->ns.GetInode(top.ino, &top, ro.snapshot));
  std::string base(path_prefix);
  while (!base.empty() && base.back() == '/') base.pop_back();
  while (!base.empty() && base.front() == '/') base.erase(0, 1);

  std::function<Status(const Inode&, const std::string&)> walk = [&](const Inode& n,
                                                                      const std::string& path) -> Status {
    if (n.type == InodeType::kDirectory) {
      ++out->directories;
      std::vector<DirEntry> entries;
      TPDE_RETURN_IF_ERROR(impl_->ns.ReadDir(n.ino, &entries, ro.snapshot));
      for (const auto& e : entries) {
        Inode child;
        TPDE_RETURN_IF_ERROR(impl_->ns.GetInode(e.ino, &child, ro.snapshot));
        TPDE_RETURN_IF_ERROR(walk(child, path.empty() ? e.name : path + "/" + e.name));
      }
      return Status::OK();
    }
    if (n.type != InodeType::kFile) return Status::OK();
    ++out->files;
    out->logical_bytes += n.size;
    FileStats f;
    TPDE_RETURN_IF_ERROR(impl_->FillFileStats(n, &f, ro.snapshot));
    f.path = path;
    out->per_file.push_back(std::move(f));
    return Status::OK();
  };
  TPDE_RETURN_IF_ERROR(walk(top, base));

  // Stored bytes count every object once, detached ones included, but only
  // for the whole store; a sub-path counts its files' own objects.
  if (top.ino == kRootInode) {
    CatalogTotals totals;  // a scan of every manifest
    TPDE_RETURN_IF_ERROR(impl_->catalog->Totals(ro.snapshot, &totals));
    out->pending_demotions = totals.pending_demotions;
    out->stored_bytes = totals.stored_bytes;
    out->detached_objects = totals.detached_objects;
    out->detached_bytes = totals.detached_bytes;
  } else {
    TPDE_RETURN_IF_ERROR(impl_->catalog->CountPendingDemotions(ro.snapshot, &out->pending_demotions));
    for (const auto& f : out->per_file) out->stored_bytes += f.stored_bytes;
  }
  for (auto* cf : impl_->handles) {
    uint64_t v = 0;
    if (impl_->db->GetIntProperty(cf, "rocksdb.total-sst-files-size", &v)) out->disk_bytes += v;
    if (impl_->db->GetIntProperty(cf, "rocksdb.total-blob-file-size", &v)) out->disk_bytes += v;
    if (impl_->db->GetIntProperty(cf, "rocksdb.live-blob-file-garbage-size", &v)) out->garbage_bytes += v;
  }
  return Status::OK();
}

Status Store::Verify(VerifyReport* report, const std::function<bool(uint64_t ino)>& is_spooled) {
  // The collector waits meanwhile. Ingests and deletions go on, so a pass can
  // see an inode and then find its object replaced: an error is reported only
  // if a second pass finds it too (damage persists, races do not).
  auto paused = impl_->collector->Pause();
  TPDE_RETURN_IF_ERROR(VerifyPass(report, is_spooled));
  if (report->errors.empty()) return Status::OK();
  VerifyReport again;
  TPDE_RETURN_IF_ERROR(VerifyPass(&again, is_spooled));
  std::set<std::string> persistent(again.errors.begin(), again.errors.end());
  std::erase_if(report->errors, [&](const std::string& e) { return !persistent.count(e); });
  return Status::OK();
}

Status Store::VerifyPass(VerifyReport* report, const std::function<bool(uint64_t ino)>& is_spooled) {
  *report = VerifyReport();
  Impl& im = *impl_;
  std::set<uint64_t> named;  // objects named by an inode
  TPDE_RETURN_IF_ERROR(im.ns.ForEachInode([&](const Status& parsed, const Inode& n) {
    if (!parsed.ok()) {
      report->errors.push_back(parsed.ToString());
      return true;
    }
    if (n.type != InodeType::kFile) return true;
    ++report->files;
    if (n.object == 0) {
      if (!is_spooled || !is_spooled(n.ino)) {
        report->errors.push_back(fmt::format("inode {} ('{}'): no content was ever committed (its content "
                                             "record is missing: a damaged log?)", n.ino, NameOf(n)));
      }
      return true;
    }
    named.insert(n.object);
    std::shared_ptr<const Manifest> m;
    if (Status s = im.catalog->GetManifest(n.object, &m); !s.ok()) {
      report->errors.push_back(fmt::format("inode {}: {}", n.ino, s.ToString()));
    } else if (m->file_bytes != n.size) {
      report->errors.push_back(fmt::format("inode {}: size {} but object {} holds {} bytes", n.ino, n.size,
                                           n.object, m->file_bytes));
    }
    return true;
  }));
  Status scanned = im.catalog->ForEachObject([&](uint64_t object) {
    ++report->objects;
    std::unique_ptr<FileReader> reader;
    Status s = im.OpenObjectReader(object, &reader);
    if (s.ok()) {
      report->chunks += reader->manifest().chunks.size();
      s = reader->DecodeAll(im.options.batch_bytes, [&](const uint8_t*, size_t n) {
        report->bytes += n;
        return Status::OK();
      });
    }
    if (!s.ok()) report->errors.push_back(fmt::format("object {}: {}", object, s.ToString()));
    if (!named.count(object) && !im.catalog->IsDetached(object)) {
      report->errors.push_back(fmt::format("object {} is neither named by an inode nor detached", object));
    }
    const uint64_t reference = reader ? reader->manifest().reference : 0;
    if (reference != 0 && !im.catalog->HasReferenceEdge(reference, object)) {
      report->errors.push_back(fmt::format("object {}: reference edge from {} missing", object, reference));
    }
    return true;
  });
  if (scanned.IsCorruption()) {  // damage to report, not a failed verification
    report->errors.push_back(scanned.ToString());
    return Status::OK();
  }
  return scanned;
}

}  // namespace tpde
