#include "store/store.h"

#include <gtest/gtest.h>

#include <map>
#include <fmt/format.h>
#include <rocksdb/db.h>

#include <cerrno>
#include <chrono>
#include <random>
#include <thread>

#include "store/file_reader.h"
#include "store/keys.h"
#include "tests/test_util.h"

namespace tpde {
namespace {

namespace fs = std::filesystem;
using test::MakeSafetensors;
using test::TempDir;
using test::TestTensor;

const char* kDtypes[] = {"F64", "F32", "F16", "BF16", "F8_E4M3", "F8_E5M2", "I64", "I32",
                         "I16", "I8",  "U64", "U32", "U16", "U8",      "BOOL"};

class StoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    options_.layout.chunk_bytes = 4096;  // many chunks from small tensors
    options_.threads = 2;
    Reopen();
  }

  void Reopen() {
    store_.reset();
    ASSERT_TRUE(Store::Open((dir_.path() / "store").string(), options_, &store_).ok());
  }

  // Writes `bytes` to a source file and ingests it as `path`.
  IngestResult Put(const std::string& path, const std::string& bytes) {
    const fs::path src = dir_.path() / "src" / path;
    test::WriteFile(src, bytes);
    Inode parent;
    Status s = store_->MakeDirectories(fs::path(path).parent_path().string(), &parent);
    EXPECT_TRUE(s.ok()) << s.ToString();
    IngestResult r;
    s = store_->IngestFile(parent.ino, fs::path(path).filename().string(), src.string(), &r);
    EXPECT_TRUE(s.ok()) << path << ": " << s.ToString();
    return r;
  }

  // Reads `path` back whole, through the parallel decoder.
  std::string Get(const std::string& path) {
    Inode n;
    Status s = store_->Resolve(path, &n);
    EXPECT_TRUE(s.ok()) << s.ToString();
    std::unique_ptr<FileReader> reader;
    s = store_->OpenReader(n.ino, &reader);
    EXPECT_TRUE(s.ok()) << s.ToString();
    if (!s.ok()) return "";
    std::string out;
    s = reader->DecodeAll(1 << 16, [&](const uint8_t* d, size_t len) {
      out.append(reinterpret_cast<const char*>(d), len);
      return Status::OK();
    });
    EXPECT_TRUE(s.ok()) << s.ToString();
    return out;
  }

  int Depth(const std::string& path) {
    Inode n;
    EXPECT_TRUE(store_->Resolve(path, &n).ok());
    std::unique_ptr<FileReader> reader;
    EXPECT_TRUE(store_->OpenReader(n.ino, &reader).ok());
    return reader ? reader->chain_depth() : -1;
  }

  uint64_t StoredBytes() {
    StoreStats st;
    EXPECT_TRUE(store_->Stats("", &st).ok());
    return st.stored_bytes;
  }

  void ExpectVerifies() {
    VerifyReport r;
    ASSERT_TRUE(store_->Verify(&r).ok());
    for (const auto& e : r.errors) ADD_FAILURE() << e;
  }

  // A model with one tensor per dtype in sizes 0, 1, odd and just above a
  // chunk, deterministic in `seed`.
  std::vector<TestTensor> Model(uint64_t seed) {
    std::mt19937_64 rng(seed);
    std::vector<TestTensor> t;
    for (const char* d : kDtypes) {
      const int w = test::WidthOf(d);
      for (uint64_t n : {uint64_t{0}, uint64_t{1}, uint64_t{333}, uint64_t(4096 / w + 1)}) {
        t.push_back({fmt::format("{}.{}", d, n), d, {n}, test::RandomBytes(rng, n * w)});
      }
    }
    return t;
  }

  TempDir dir_;
  StoreOptions options_;
  std::unique_ptr<Store> store_;
};

TEST_F(StoreTest, EveryDtypeAndSizeRoundTripsThroughKeyframeSparseDenseAndSame) {
  std::mt19937_64 rng(3);
  std::vector<TestTensor> model = Model(1);
  std::vector<std::string> files;
  for (int step = 0; step < 4; ++step) {
    if (step == 1) {
      for (auto& t : model) test::Perturb(rng, &t.data, test::WidthOf(t.dtype), 0.01);  // sparse
    } else if (step == 2) {
      for (auto& t : model) test::Perturb(rng, &t.data, test::WidthOf(t.dtype), 1.0);  // dense
    }  // step 3: identical
    files.push_back(MakeSafetensors(model, R"({"format":"pt"})"));
    IngestResult r = Put(fmt::format("run/checkpoint-{}/model.safetensors", step), files.back());
    EXPECT_EQ(r.kind, FileKind::kSafetensors);
    EXPECT_EQ(r.predecessor != 0, step > 0);
    // Before the collector runs, the previous version is still a keyframe.
    for (int k = 0; k <= step; ++k) {
      EXPECT_TRUE(Get(fmt::format("run/checkpoint-{}/model.safetensors", k)) == files[k]) << k;
    }
    ASSERT_TRUE(store_->CollectGarbage().ok());
  }
  for (int step = 0; step < 4; ++step) {
    EXPECT_TRUE(Get(fmt::format("run/checkpoint-{}/model.safetensors", step)) == files[step]) << step;
    EXPECT_EQ(Depth(fmt::format("run/checkpoint-{}/model.safetensors", step)), 3 - step);
  }
  // Reverse deltas: each version against the next newer one.
  StoreStats st;
  ASSERT_TRUE(store_->Stats("run", &st).ok());
  ASSERT_EQ(st.per_file.size(), 4u);
  EXPECT_EQ(st.pending_demotions, 0u);
  EXPECT_GT(st.per_file[0].chunks_by_mode[static_cast<int>(ChunkMode::kDeltaSparse)], 0u);
  EXPECT_GT(st.per_file[1].chunks_by_mode[static_cast<int>(ChunkMode::kDeltaDense)], 0u);
  auto all = [](const FileStats& f) {
    return f.chunks_by_mode[0] + f.chunks_by_mode[1] + f.chunks_by_mode[2] + f.chunks_by_mode[3];
  };
  EXPECT_EQ(st.per_file[2].chunks_by_mode[static_cast<int>(ChunkMode::kSame)], all(st.per_file[2]));
  EXPECT_EQ(st.per_file[3].chunks_by_mode[static_cast<int>(ChunkMode::kKey)], all(st.per_file[3]));
  ExpectVerifies();
}

TEST_F(StoreTest, RandomRangeReadsMatch) {
  std::vector<TestTensor> model = Model(2);
  const std::string file = MakeSafetensors(model);
  Put("a/b/model.safetensors", file);
  Inode n;
  ASSERT_TRUE(store_->Resolve("a/b/model.safetensors", &n).ok());
  std::unique_ptr<FileReader> reader;
  ASSERT_TRUE(store_->OpenReader(n.ino, &reader).ok());
  ChunkScratch scratch;
  std::mt19937_64 rng(5);
  for (int i = 0; i < 200; ++i) {
    const uint64_t off = rng() % (file.size() + 10);
    const uint64_t len = rng() % 20000;
    std::string buf(len, '\0');
    uint64_t got = 0;
    ASSERT_TRUE(reader->Read(off, len, reinterpret_cast<uint8_t*>(buf.data()), &got, &scratch).ok());
    const std::string expect = off < file.size() ? file.substr(off, len) : "";
    ASSERT_EQ(got, expect.size());
    EXPECT_TRUE(buf.substr(0, got) == expect) << off << "+" << len;
  }
}

TEST_F(StoreTest, ChainsStopAtTheDepthLimit) {
  options_.max_chain_depth = 3;
  Reopen();
  std::mt19937_64 rng(4);
  std::vector<TestTensor> model = Model(3);
  std::vector<std::string> files;
  for (int step = 0; step < 9; ++step) {
    for (auto& t : model) test::Perturb(rng, &t.data, test::WidthOf(t.dtype), 0.05);
    files.push_back(MakeSafetensors(model));
    Put(fmt::format("run/checkpoint-{}/model.safetensors", step), files.back());
    ASSERT_TRUE(store_->CollectGarbage().ok());
  }
  // A keyframe every max_chain_depth + 1 versions; the newest is one too.
  const int expect[9] = {3, 2, 1, 0, 3, 2, 1, 0, 0};
  for (int step = 0; step < 9; ++step) {
    const std::string p = fmt::format("run/checkpoint-{}/model.safetensors", step);
    EXPECT_EQ(Depth(p), expect[step]) << p;
    EXPECT_TRUE(Get(p) == files[step]) << p;
  }
  ExpectVerifies();
}

TEST_F(StoreTest, DeletingTheOldestAMiddleAndTheNewestVersionKeepsEverySurvivor) {
  std::mt19937_64 rng(6);
  std::vector<TestTensor> model = Model(4);
  std::vector<std::string> files;
  for (int step = 0; step < 6; ++step) {
    for (auto& t : model) test::Perturb(rng, &t.data, test::WidthOf(t.dtype), 0.3);
    files.push_back(MakeSafetensors(model));
    Put(fmt::format("run/ckpt-{}/model.safetensors", step), files.back());
    ASSERT_TRUE(store_->CollectGarbage().ok());
  }
  auto path = [](int step) { return fmt::format("run/ckpt-{}/model.safetensors", step); };
  auto expect_survivors = [&](std::initializer_list<int> steps) {
    for (int step : steps) EXPECT_TRUE(Get(path(step)) == files[step]) << step;
    ExpectVerifies();
  };
  EXPECT_EQ(Depth(path(0)), 5);
  EXPECT_EQ(Depth(path(5)), 0);
  StoreStats st;

  // Oldest: nothing depends on it, so it is freed at once, nothing re-encoded.
  uint64_t before = StoredBytes();
  ASSERT_TRUE(store_->RemoveTree("run/ckpt-0").ok());
  ASSERT_TRUE(store_->Stats("", &st).ok());
  EXPECT_EQ(st.detached_objects, 0u);
  EXPECT_LT(st.stored_bytes, before);
  expect_survivors({1, 2, 3, 4, 5});

  // Middle: ckpt-2 is the reference of ckpt-1, which is re-based onto ckpt-3.
  ASSERT_TRUE(store_->RemoveTree("run/ckpt-2").ok());
  ASSERT_TRUE(store_->Stats("", &st).ok());
  EXPECT_EQ(st.detached_objects, 1u);
  expect_survivors({1, 3, 4, 5});  // readable before the collector runs
  ASSERT_TRUE(store_->CollectGarbage().ok());
  ASSERT_TRUE(store_->Stats("", &st).ok());
  EXPECT_EQ(st.detached_objects, 0u);
  EXPECT_EQ(Depth(path(1)), 3);  // 1 -> 3 -> 4 -> 5
  expect_survivors({1, 3, 4, 5});

  // Newest: ckpt-4 depended on it and becomes the keyframe.
  ASSERT_TRUE(store_->RemoveTree("run/ckpt-5").ok());
  expect_survivors({1, 3, 4});
  ASSERT_TRUE(store_->CollectGarbage().ok());
  EXPECT_EQ(Depth(path(4)), 0);
  EXPECT_EQ(Depth(path(1)), 2);
  expect_survivors({1, 3, 4});

  Reopen();  // and it all survives a restart
  expect_survivors({1, 3, 4});
}

TEST_F(StoreTest, KeepingTheLastTwoCheckpointsKeepsTheStoreBounded) {
  std::mt19937_64 rng(7);
  std::vector<TestTensor> model = Model(5);
  uint64_t peak_after_warmup = 0, first_peak = 0;
  std::vector<std::string> live;
  for (int step = 0; step < 20; ++step) {
    for (auto& t : model) test::Perturb(rng, &t.data, test::WidthOf(t.dtype), 0.5);
    const std::string file = MakeSafetensors(model);
    Put(fmt::format("run/checkpoint-{}/model.safetensors", step), file);
    live.push_back(file);
    if (step >= 2) {
      ASSERT_TRUE(store_->RemoveTree(fmt::format("run/checkpoint-{}", step - 2)).ok());
    }
    ASSERT_TRUE(store_->CollectGarbage().ok());
    const uint64_t stored = StoredBytes();
    if (step == 3) first_peak = stored;
    if (step > 3) peak_after_warmup = std::max(peak_after_warmup, stored);
  }
  EXPECT_LE(peak_after_warmup, first_peak * 3 / 2);
  EXPECT_TRUE(Get("run/checkpoint-18/model.safetensors") == live[18]);
  EXPECT_TRUE(Get("run/checkpoint-19/model.safetensors") == live[19]);
  ExpectVerifies();
}

// Rotation as HF Trainer's save_total_limit does it, with objects large
// enough for their own lanes and blob files: with no manual gc, the bytes
// RocksDB holds on disk stay within 25% of what the live versions store.
class RotationTest : public StoreTest, public ::testing::WithParamInterface<int> {
 protected:
  void SetUp() override {
    options_.threads = 2;  // 1 MiB chunks (the default)
    Reopen();
  }
};

TEST_P(RotationTest, KeepsOnDiskBytesBoundedWithoutManualGc) {
  const int keep = GetParam();
  std::mt19937_64 rng(11);
  std::vector<TestTensor> model = {{"w", "F32", {3u << 20}, test::RandomBytes(rng, 12u << 20)}};
  std::vector<std::string> live;
  for (int step = 0; step < 20; ++step) {
    for (auto& t : model) test::Perturb(rng, &t.data, 4, 0.2);
    live.push_back(MakeSafetensors(model));
    Put(fmt::format("run/checkpoint-{}/model.safetensors", step), live.back());
    if (step >= keep) {
      ASSERT_TRUE(store_->RemoveTree(fmt::format("run/checkpoint-{}", step - keep)).ok());
    }
    ASSERT_TRUE(store_->CollectGarbage().ok());  // what tpded's collector does after each change
    // RocksDB deletes the files of the replaced LSM version on its own thread
    // just after the compaction returns: give it a few seconds, as a user
    // watching `tpdectl stats` would.
    StoreStats st;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(10);
    do {
      ASSERT_TRUE(store_->Stats("", &st).ok());
      if (st.disk_bytes <= st.stored_bytes * 5 / 4) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    } while (std::chrono::steady_clock::now() < deadline);
    EXPECT_EQ(st.pending_demotions, 0u);
    EXPECT_EQ(st.detached_objects, 0u);
    EXPECT_LE(st.disk_bytes, st.stored_bytes * 5 / 4) << "step " << step;
    if (step >= keep) {
      EXPECT_LT(st.stored_bytes, st.logical_bytes) << "step " << step;
    }
  }
  for (int step = 20 - keep; step < 20; ++step) {
    EXPECT_TRUE(Get(fmt::format("run/checkpoint-{}/model.safetensors", step)) == live[step]) << step;
  }
  ExpectVerifies();
}

INSTANTIATE_TEST_SUITE_P(Keep, RotationTest, ::testing::Values(2, 3));

TEST_F(StoreTest, MalformedSafetensorsAreStoredAsBytes) {
  std::vector<TestTensor> model = Model(6);
  const std::string good = MakeSafetensors(model);
  const std::string truncated = good.substr(0, good.size() - 3);
  IngestResult r = Put("x/bad/model.safetensors", truncated);
  EXPECT_NE(r.kind, FileKind::kSafetensors);
  EXPECT_NE(r.note.find("data buffer holds"), std::string::npos) << r.note;
  EXPECT_TRUE(Get("x/bad/model.safetensors") == truncated);
  r = Put("x/garbage/model.safetensors", "not a safetensors file at all");
  EXPECT_FALSE(r.note.empty());
  EXPECT_EQ(Get("x/garbage/model.safetensors"), "not a safetensors file at all");
  ExpectVerifies();
}

TEST_F(StoreTest, OtherFilesDeltaAgainstTheSameNameWhenSizesMatch) {
  std::mt19937_64 rng(8);
  std::string opt = std::string(8, '\0') + test::RandomBytes(rng, 300003);  // binary, with a 3-byte tail
  IngestResult r0 = Put("run/c1/optimizer.pt", opt);
  EXPECT_EQ(r0.kind, FileKind::kBinary);
  std::string opt2 = opt;
  test::Perturb(rng, &opt2, 4, 0.02);
  IngestResult r1 = Put("run/c2/optimizer.pt", opt2);
  EXPECT_EQ(r1.predecessor, r0.object);
  ASSERT_TRUE(store_->CollectGarbage().ok());
  FileStats f0;
  ASSERT_TRUE(store_->GetFileStats(r0.ino, &f0).ok());
  EXPECT_EQ(f0.reference, r1.object);
  EXPECT_LT(f0.stored_bytes, r1.stored_bytes / 5);
  const std::string json = R"({"global_step": 100, "log_history": []})";
  EXPECT_EQ(Put("run/c1/trainer_state.json", json).kind, FileKind::kText);
  Put("run/c2/trainer_state.json", "{}");
  Put("run/c2/empty", "");
  EXPECT_TRUE(Get("run/c2/optimizer.pt") == opt2);
  EXPECT_EQ(Get("run/c1/trainer_state.json"), json);
  EXPECT_EQ(Get("run/c2/trainer_state.json"), "{}");
  Inode n;
  ASSERT_TRUE(store_->Resolve("run/c2/empty", &n).ok());
  EXPECT_EQ(n.size, 0u);
  ExpectVerifies();
}

TEST_F(StoreTest, OverwritingAFileReplacesItsContent) {
  Put("d/f", "first version");
  Put("d/f", "second");
  EXPECT_EQ(Get("d/f"), "second");
  ExpectVerifies();
}

TEST_F(StoreTest, ASecondOpenOfTheSameStoreIsBusy) {
  std::unique_ptr<Store> other;
  Status s = Store::Open((dir_.path() / "store").string(), options_, &other);
  EXPECT_TRUE(s.IsBusy()) << s.ToString();
  EXPECT_NE(s.message().find("in use"), std::string::npos);
}

TEST_F(StoreTest, OpeningAMissingStoreWithoutCreateFails) {
  StoreOptions o = options_;
  o.create_if_missing = false;
  std::unique_ptr<Store> other;
  EXPECT_TRUE(Store::Open((dir_.path() / "nowhere").string(), o, &other).IsNotFound());
}

TEST_F(StoreTest, CreateIngestInodeAndRenameBehaveLikeAFileSystem) {
  Inode dir, a, b;
  ASSERT_TRUE(store_->MakeDirectories("run/ckpt-1", &dir).ok());
  ASSERT_TRUE(store_->CreateFile(dir.ino, "a", 0640, 1000, 100, &a).ok());
  EXPECT_TRUE(store_->CreateFile(dir.ino, "a", 0640, 0, 0, &b).IsAlreadyExists());
  Inode got;
  ASSERT_TRUE(store_->GetInode(a.ino, &got).ok());
  EXPECT_EQ(got.size, 0u);
  EXPECT_EQ(got.uid, 1000u);
  EXPECT_EQ(got.mode, 0640u);

  test::WriteFile(dir_.path() / "spool-a", "content of a");
  IngestResult r;
  ASSERT_TRUE(store_->IngestInode(a.ino, (dir_.path() / "spool-a").string(), 12345, &r).ok());
  EXPECT_EQ(Get("run/ckpt-1/a"), "content of a");
  ASSERT_TRUE(store_->GetInode(a.ino, &got).ok());
  EXPECT_EQ(got.mtime_ns, 12345);
  EXPECT_EQ(got.mode, 0640u);

  // Plain rename, then replace an existing file, then exchange.
  ASSERT_TRUE(store_->Rename(dir.ino, "a", dir.ino, "b", 0).ok());
  EXPECT_TRUE(store_->Lookup(dir.ino, "a", &got).IsNotFound());
  EXPECT_EQ(Get("run/ckpt-1/b"), "content of a");
  Put("run/ckpt-1/c", "content of c");
  EXPECT_TRUE(store_->Rename(dir.ino, "c", dir.ino, "b", Store::kRenameNoReplace).IsAlreadyExists());
  ASSERT_TRUE(store_->Rename(dir.ino, "c", dir.ino, "b", Store::kRenameExchange).ok());
  EXPECT_EQ(Get("run/ckpt-1/b"), "content of c");
  EXPECT_EQ(Get("run/ckpt-1/c"), "content of a");
  ASSERT_TRUE(store_->Rename(dir.ino, "c", dir.ino, "b", 0).ok());  // replaces: c's old object is freed
  EXPECT_EQ(Get("run/ckpt-1/b"), "content of a");
  // Directories: into another directory, never into themselves.
  Inode other;
  ASSERT_TRUE(store_->MakeDirectories("run/ckpt-2", &other).ok());
  Inode run;
  ASSERT_TRUE(store_->Resolve("run", &run).ok());
  EXPECT_TRUE(store_->Rename(run.ino, "ckpt-2", other.ino, "x", 0).IsInvalidArgument());
  ASSERT_TRUE(store_->Rename(run.ino, "ckpt-1", other.ino, "moved", 0).ok());
  EXPECT_EQ(Get("run/ckpt-2/moved/b"), "content of a");
  store_->Rename(dir.ino, "b", dir.ino, "b2", 0);
  ExpectVerifies();

  // An ingest into an inode removed meanwhile commits nothing.
  ASSERT_TRUE(store_->Unlink(dir.ino, "b2").ok());
  EXPECT_TRUE(store_->IngestInode(a.ino, (dir_.path() / "spool-a").string(), 1, &r).IsNotFound());
  ExpectVerifies();
}

TEST_F(StoreTest, NamespaceErrorsCarryTheirErrno) {
  // Decided by the store under its commit lock, so a file system never
  // re-checks the condition (racily) to pick the errno.
  Inode dir, sub, file, got;
  ASSERT_TRUE(store_->MakeDirectories("d/sub", &sub).ok());
  ASSERT_TRUE(store_->Resolve("d", &dir).ok());
  ASSERT_TRUE(store_->CreateFile(dir.ino, "f", 0644, 0, 0, &file).ok());
  Inode empty;
  ASSERT_TRUE(store_->MakeDirectory(dir.ino, "empty", 0755, 0, 0, &empty).ok());

  EXPECT_EQ(store_->RemoveDirectory(kRootInode, "d").posix_code(), ENOTEMPTY);
  EXPECT_EQ(store_->RemoveDirectory(dir.ino, "f").posix_code(), ENOTDIR);
  EXPECT_EQ(store_->Unlink(dir.ino, "sub").posix_code(), EISDIR);
  EXPECT_EQ(store_->Rename(dir.ino, "f", dir.ino, "sub", 0).posix_code(), EISDIR);
  EXPECT_EQ(store_->Rename(dir.ino, "empty", dir.ino, "f", 0).posix_code(), ENOTDIR);
  Inode inner;
  ASSERT_TRUE(store_->CreateFile(sub.ino, "x", 0644, 0, 0, &inner).ok());
  EXPECT_EQ(store_->Rename(dir.ino, "empty", dir.ino, "sub", 0).posix_code(), ENOTEMPTY);
  EXPECT_EQ(store_->CreateFile(file.ino, "y", 0644, 0, 0, &got).posix_code(), ENOTDIR);
  EXPECT_EQ(store_->CreateFile(dir.ino, std::string(256, 'n'), 0644, 0, 0, &got).posix_code(), ENAMETOOLONG);
  EXPECT_EQ(store_->CreateFile(dir.ino, std::string(255, 'n'), 0644, 0, 0, &got).posix_code(), 0);
  // Errors without a sub-code keep 0: the code's usual errno applies.
  EXPECT_EQ(store_->Rename(dir.ino, "missing", dir.ino, "z", 0).posix_code(), 0);
  // The sub-code survives added context.
  EXPECT_EQ(store_->Unlink(dir.ino, "sub").WithContext("rm").posix_code(), EISDIR);

  // What the call removed or replaced, read under the same lock.
  Inode removed;
  ASSERT_TRUE(store_->Unlink(dir.ino, "f", &removed).ok());
  EXPECT_EQ(removed.ino, file.ino);
  Inode a, b, replaced;
  ASSERT_TRUE(store_->CreateFile(dir.ino, "a", 0644, 0, 0, &a).ok());
  ASSERT_TRUE(store_->CreateFile(dir.ino, "b", 0644, 0, 0, &b).ok());
  ASSERT_TRUE(store_->Rename(dir.ino, "a", dir.ino, "b", 0, &replaced).ok());
  EXPECT_EQ(replaced.ino, b.ino);
  ASSERT_TRUE(store_->Rename(dir.ino, "b", dir.ino, "c", 0, &replaced).ok());
  EXPECT_EQ(replaced.ino, 0u);
}

// Opens the store's RocksDB directly, for tests that tamper with it.
std::unique_ptr<rocksdb::DB> OpenRaw(const std::string& dir, std::vector<rocksdb::ColumnFamilyHandle*>* handles) {
  std::vector<std::string> names;
  EXPECT_TRUE(rocksdb::DB::ListColumnFamilies(rocksdb::DBOptions(), dir, &names).ok());
  std::vector<rocksdb::ColumnFamilyDescriptor> cfs;
  for (const auto& n : names) {
    rocksdb::ColumnFamilyOptions o;
    if (n.starts_with("chunks")) o.enable_blob_files = true;
    cfs.emplace_back(n, o);
  }
  rocksdb::DB* db = nullptr;
  EXPECT_TRUE(rocksdb::DB::Open(rocksdb::DBOptions(), dir, cfs, handles, &db).ok());
  for (size_t i = 0; i < names.size(); ++i) {
    if (names[i] == keys::ChunkLane(0)) std::swap((*handles)[0], (*handles)[i]);  // lane 0 first
  }
  return std::unique_ptr<rocksdb::DB>(db);
}

TEST_F(StoreTest, CorruptChunkIsReportedAndNeverReturned) {
  std::mt19937_64 rng(9);
  Put("run/c/model.safetensors", MakeSafetensors(Model(7)));
  store_.reset();
  {
    std::vector<rocksdb::ColumnFamilyHandle*> h;
    auto db = OpenRaw((dir_.path() / "store").string(), &h);
    std::unique_ptr<rocksdb::Iterator> it(db->NewIterator(rocksdb::ReadOptions(), h[0]));
    it->SeekToFirst();
    ASSERT_TRUE(it->Valid());
    std::string key = it->key().ToString(), value = it->value().ToString();
    value[value.size() / 2] ^= 0x10;
    it.reset();
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), h[0], key, value).ok());
    for (auto* cf : h) db->DestroyColumnFamilyHandle(cf);
  }
  Reopen();
  VerifyReport r;
  ASSERT_TRUE(store_->Verify(&r).ok());
  ASSERT_FALSE(r.errors.empty());
  EXPECT_NE(r.errors[0].find("checksum"), std::string::npos) << r.errors[0];
  Inode n;
  ASSERT_TRUE(store_->Resolve("run/c/model.safetensors", &n).ok());
  std::unique_ptr<FileReader> reader;
  ASSERT_TRUE(store_->OpenReader(n.ino, &reader).ok());
  Status s = reader->DecodeAll(1 << 20, [](const uint8_t*, size_t) { return Status::OK(); });
  EXPECT_TRUE(s.IsCorruption()) << s.ToString();
}

TEST_F(StoreTest, PayloadsStagedByAnIngestThatNeverCommittedAreDeletedOnOpen) {
  Put("run/c/file", "committed");
  store_.reset();
  {
    std::vector<rocksdb::ColumnFamilyHandle*> h;
    auto db = OpenRaw((dir_.path() / "store").string(), &h);
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), h[0], keys::Chunk(999, 1, 0), "staged").ok());
    for (auto* cf : h) db->DestroyColumnFamilyHandle(cf);
  }
  Reopen();
  store_.reset();
  {
    std::vector<rocksdb::ColumnFamilyHandle*> h;
    auto db = OpenRaw((dir_.path() / "store").string(), &h);
    std::string v;
    EXPECT_TRUE(db->Get(rocksdb::ReadOptions(), h[0], keys::Chunk(999, 1, 0), &v).IsNotFound());
    for (auto* cf : h) db->DestroyColumnFamilyHandle(cf);
  }
  Reopen();
  EXPECT_EQ(Get("run/c/file"), "committed");
  ExpectVerifies();
}

// Concurrent ingests may commit out of order: the chain follows creation
// order (training order), so the newest file stays the keyframe.
TEST_F(StoreTest, VersionsCommittedOutOfOrderChainInCreationOrder) {
  std::mt19937_64 rng(13);
  std::vector<TestTensor> model = Model(9);
  std::vector<std::string> files;
  std::vector<Inode> inodes;
  for (int step = 0; step < 3; ++step) {
    for (auto& t : model) test::Perturb(rng, &t.data, test::WidthOf(t.dtype), 0.1);
    files.push_back(MakeSafetensors(model));
    Inode dir, f;
    ASSERT_TRUE(store_->MakeDirectories(fmt::format("run/ckpt-{}", step), &dir).ok());
    ASSERT_TRUE(store_->CreateFile(dir.ino, "model.safetensors", 0644, 0, 0, &f).ok());
    inodes.push_back(f);
  }
  for (int step : {0, 2, 1}) {
    const auto src = dir_.path() / fmt::format("spool-{}", step);
    test::WriteFile(src, files[step]);
    IngestResult r;
    ASSERT_TRUE(store_->IngestInode(inodes[step].ino, src.string(), 1, &r).ok());
  }
  ASSERT_TRUE(store_->CollectGarbage().ok());
  for (int step = 0; step < 3; ++step) {
    const std::string p = fmt::format("run/ckpt-{}/model.safetensors", step);
    EXPECT_EQ(Depth(p), 2 - step) << p;
    EXPECT_TRUE(Get(p) == files[step]) << p;
  }
  ExpectVerifies();
}

TEST_F(StoreTest, AStoreOfFormatVersion1IsRefusedWithTheVersions) {
  const std::string dir = (dir_.path() / "v1").string();
  {
    rocksdb::Options o;
    o.create_if_missing = true;
    rocksdb::DB* db = nullptr;
    ASSERT_TRUE(rocksdb::DB::Open(o, dir, &db).ok());
    rocksdb::ColumnFamilyHandle* chunks = nullptr;
    ASSERT_TRUE(db->CreateColumnFamily(rocksdb::ColumnFamilyOptions(), "chunks", &chunks).ok());
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), "format_version", "1").ok());
    db->DestroyColumnFamilyHandle(chunks);
    delete db;
  }
  std::unique_ptr<Store> old;
  Status s = Store::Open(dir, options_, &old);
  EXPECT_EQ(s.code(), Status::Code::kNotSupported) << s.ToString();
  EXPECT_NE(s.message().find("format version 1"), std::string::npos) << s.ToString();
  EXPECT_NE(s.message().find("reads format version 2"), std::string::npos) << s.ToString();
}

// A crash during a demotion leaves the new generation staged but not
// committed and the demotion still queued: after a restart the staged
// payloads are deleted and the demotion is done again.
TEST_F(StoreTest, ADemotionInterruptedByACrashIsRedoneAfterRestart) {
  std::mt19937_64 rng(12);
  std::vector<TestTensor> model = Model(8);
  const std::string v0 = MakeSafetensors(model);
  for (auto& t : model) test::Perturb(rng, &t.data, test::WidthOf(t.dtype), 0.1);
  const std::string v1 = MakeSafetensors(model);
  IngestResult r0 = Put("run/c0/model.safetensors", v0);
  IngestResult r1 = Put("run/c1/model.safetensors", v1);
  ASSERT_EQ(r1.predecessor, r0.object);
  store_.reset();  // "crash" before the collector ran, with a half-written generation 2
  {
    std::vector<rocksdb::ColumnFamilyHandle*> h;
    auto db = OpenRaw((dir_.path() / "store").string(), &h);
    ASSERT_TRUE(db->Put(rocksdb::WriteOptions(), h[0], keys::Chunk(r0.object, 2, 0), "half").ok());
    for (auto* cf : h) db->DestroyColumnFamilyHandle(cf);
  }
  Reopen();
  StoreStats st;
  ASSERT_TRUE(store_->Stats("", &st).ok());
  EXPECT_EQ(st.pending_demotions, 1u);
  EXPECT_TRUE(Get("run/c0/model.safetensors") == v0);
  ExpectVerifies();
  ASSERT_TRUE(store_->CollectGarbage().ok());
  EXPECT_EQ(Depth("run/c0/model.safetensors"), 1);
  EXPECT_TRUE(Get("run/c0/model.safetensors") == v0);
  EXPECT_TRUE(Get("run/c1/model.safetensors") == v1);
  ASSERT_TRUE(store_->Stats("", &st).ok());
  EXPECT_EQ(st.pending_demotions, 0u);
  ExpectVerifies();
}

// RocksDB 7.8's RepairDB registers no blob file: Repair sets them aside and
// rebuilds the chunk lanes from the manifests (store/blob_salvage.h).
TEST_F(StoreTest, RepairWithoutTheManifestRestoresEveryPayloadAndReportsATornBlobFile) {
  std::mt19937_64 rng(31);
  std::map<std::string, std::string> files;
  for (uint64_t size : {uint64_t{100}, uint64_t{5000}, uint64_t{3} << 20, uint64_t{12} << 20}) {  // WAL and staged
    const std::string name = fmt::format("f{}.bin", size);
    files[name] = test::RandomBytes(rng, size);
    Put(name, files[name]);
  }
  files["g.bin"] = test::RandomBytes(rng, 12 << 20);
  Put("g.bin", files["g.bin"]);
  store_.reset();
  const fs::path dir = dir_.path() / "store";
  fs::path newest;
  for (const auto& e : fs::directory_iterator(dir)) {
    if (e.path().filename().string().rfind("MANIFEST-", 0) == 0) fs::remove(e.path());
    if (e.path().extension() == ".blob" && (newest.empty() || e.path().filename() > newest.filename())) newest = e.path();
  }
  ASSERT_FALSE(newest.empty());
  fs::resize_file(newest, fs::file_size(newest) - 1000);  // a torn tail: its last record is gone
  Store::RepairReport report;
  Status s = Store::Repair(dir.string(), &report);
  ASSERT_TRUE(s.ok()) << s.ToString();
  EXPECT_GT(report.blob_files, 0);
  EXPECT_GT(report.payloads_restored, 0u);
  ASSERT_FALSE(report.notes.empty());  // the torn file, and that the blob files are kept
  EXPECT_TRUE(fs::exists(dir / "salvage-blobs"));
  Reopen();
  // The file whose last payload was in the torn tail reads as an error,
  // never as other bytes; every other file is whole.
  int damaged = 0;
  for (const auto& [name, bytes] : files) {
    Inode n;
    ASSERT_TRUE(store_->Resolve(name, &n).ok()) << name;
    std::unique_ptr<FileReader> reader;
    ASSERT_TRUE(store_->OpenReader(n.ino, &reader).ok()) << name;
    std::string out;
    s = reader->DecodeAll(1 << 16, [&](const uint8_t* d, size_t len) {
      out.append(reinterpret_cast<const char*>(d), len);
      return Status::OK();
    });
    if (!s.ok()) {
      ++damaged;
      continue;
    }
    EXPECT_TRUE(out == bytes) << name;
  }
  EXPECT_EQ(damaged, 1);
  VerifyReport v;
  ASSERT_TRUE(store_->Verify(&v).ok());
  EXPECT_EQ(v.errors.size(), 1u);
  // The repaired store takes writes and compacts.
  Put("after.bin", test::RandomBytes(rng, 12 << 20));
  ASSERT_TRUE(store_->Unlink(kRootInode, "f100.bin").ok());
  ASSERT_TRUE(store_->CollectGarbage().ok());
  ASSERT_TRUE(store_->CheckWrites().ok());
}

}  // namespace
}  // namespace tpde
