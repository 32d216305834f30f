#include "store/blob_salvage.h"

#include <fcntl.h>
#include <fmt/format.h>
#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <system_error>

#include "store/file_io.h"

namespace tpde {

namespace {

namespace fs = std::filesystem;

constexpr uint32_t kBlobMagic = 0x00248f37;
constexpr uint32_t kBlobVersion = 1;
constexpr size_t kHeaderBytes = 30;
constexpr size_t kRecordHeaderBytes = 32;
constexpr size_t kFooterBytes = 32;
constexpr uint8_t kNoCompression = 0;

// RocksDB's fixed-width integers are little-endian, as on this host.
uint32_t Fixed32(const uint8_t* p) {
  uint32_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
uint64_t Fixed64(const uint8_t* p) {
  uint64_t v;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

}  // namespace

Status SetAsideBlobFiles(const std::string& dir, const std::string& aside_dir) {
  std::error_code ec;
  fs::create_directories(aside_dir, ec);
  if (ec) return Status::IOError(fmt::format("cannot create '{}': {}", aside_dir, ec.message()));
  for (const auto& e : fs::directory_iterator(dir, ec)) {
    if (!e.is_regular_file() || e.path().extension() != ".blob") continue;
    fs::path to = fs::path(aside_dir) / e.path().filename();
    for (int n = 1; fs::exists(to); ++n) {
      to = fs::path(aside_dir) / fmt::format("{}.{}.blob", e.path().stem().string(), n);
    }
    fs::rename(e.path(), to, ec);
    if (ec) return Status::IOError(fmt::format("cannot move '{}' aside: {}", e.path().string(), ec.message()));
  }
  if (ec) return Status::IOError(fmt::format("cannot list '{}': {}", dir, ec.message()));
  return Status::OK();
}

Status BlobSalvage::Scan(const std::string& aside_dir) {
  std::vector<fs::path> files;
  std::error_code ec;
  for (const auto& e : fs::directory_iterator(aside_dir, ec)) {
    if (e.is_regular_file() && e.path().extension() == ".blob") files.push_back(e.path());
  }
  if (ec) return Status::IOError(fmt::format("cannot list '{}': {}", aside_dir, ec.message()));
  std::sort(files.begin(), files.end(), [](const fs::path& a, const fs::path& b) {
    return std::strtoull(a.stem().c_str(), nullptr, 10) < std::strtoull(b.stem().c_str(), nullptr, 10);
  });
  for (const fs::path& p : files) {
    FileDescriptor fd(::open(p.c_str(), O_RDONLY | O_CLOEXEC));
    if (fd.get() < 0) return Status::IOError(fmt::format("cannot open '{}': {}", p.string(), std::strerror(errno)));
    paths_.push_back(p.string());
    TPDE_RETURN_IF_ERROR(ScanFile(static_cast<uint32_t>(paths_.size() - 1), fd.get()));
  }
  return Status::OK();
}

Status BlobSalvage::ScanFile(uint32_t file, int fd) {
  const std::string& path = paths_[file];
  const std::string name = fs::path(path).filename().string();
  struct stat st {};
  if (::fstat(fd, &st) != 0) return Status::IOError(fmt::format("cannot stat '{}'", path));
  const uint64_t size = static_cast<uint64_t>(st.st_size);
  // magic, version, column family id (u32 each), flags (bit 0: TTL),
  // compression type, expiration range (2 x u64).
  uint8_t header[kHeaderBytes];
  if (size >= kHeaderBytes) TPDE_RETURN_IF_ERROR(PreadFull(fd, 0, sizeof(header), header, path));
  if (size < kHeaderBytes || Fixed32(header) != kBlobMagic || Fixed32(header + 4) != kBlobVersion) {
    notes_.push_back(fmt::format("{}: not a blob file of version {}, not used", name, kBlobVersion));
    return Status::OK();
  }
  if (header[13] != kNoCompression) {
    notes_.push_back(fmt::format("{}: compressed blobs (type {}), not used", name, static_cast<int>(header[13])));
    return Status::OK();
  }
  std::string key;
  uint64_t offset = kHeaderBytes;
  while (offset + kRecordHeaderBytes <= size) {
    uint8_t rh[kRecordHeaderBytes];
    TPDE_RETURN_IF_ERROR(PreadFull(fd, offset, sizeof(rh), rh, path));
    if (size - offset == kFooterBytes && Fixed32(rh) == kBlobMagic) return Status::OK();  // every record read
    const uint64_t key_size = Fixed64(rh), value_size = Fixed64(rh + 8);
    const uint64_t left = size - offset - kRecordHeaderBytes;
    if (key_size == 0 || key_size > left || value_size > left - key_size) break;
    key.resize(key_size);
    TPDE_RETURN_IF_ERROR(
        PreadFull(fd, offset + kRecordHeaderBytes, key_size, reinterpret_cast<uint8_t*>(key.data()), path));
    index_[key] = Location{file, offset + kRecordHeaderBytes + key_size, value_size};
    ++records_;
    offset += kRecordHeaderBytes + key_size + value_size;
  }
  if (offset != size) {  // a torn tail: the file was being written when the store stopped
    notes_.push_back(fmt::format("{}: the last {} bytes hold no whole record", name, size - offset));
  }
  return Status::OK();
}

Status BlobSalvage::Get(std::string_view key, std::string* value) {
  const auto it = index_.find(std::string(key));
  if (it == index_.end()) return Status::NotFound("in no blob file");
  const Location& loc = it->second;
  const std::string& path = paths_[loc.file];
  if (open_.get() < 0 || open_file_ != loc.file) {
    open_.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    open_file_ = loc.file;
    if (open_.get() < 0) return Status::IOError(fmt::format("cannot open '{}': {}", path, std::strerror(errno)));
  }
  value->resize(loc.size);
  return PreadFull(open_.get(), loc.offset, loc.size, reinterpret_cast<uint8_t*>(value->data()), path);
}

}  // namespace tpde
