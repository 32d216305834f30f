// Helpers shared by tests: temporary directories, file I/O, and a plain
// writer of the safetensors format (independent of tpde's reader).
#pragma once

#include <cstdint>
#include <filesystem>
#include <random>
#include <string>
#include <vector>

namespace tpde::test {

// A fresh directory under the system temp dir, removed on destruction.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::filesystem::path& path() const { return path_; }
  std::string str() const { return path_.string(); }

 private:
  std::filesystem::path path_;
};

std::string ReadFile(const std::filesystem::path& p);
void WriteFile(const std::filesystem::path& p, const std::string& bytes);

struct TestTensor {
  std::string name;
  std::string dtype;  // safetensors name: "F32", "BF16", ...
  std::vector<uint64_t> shape;
  std::string data;   // raw little-endian bytes
};

// Serialises tensors the way safetensors does: 8-byte header size, JSON
// header padded with spaces to a multiple of 8, data in the given order.
std::string MakeSafetensors(const std::vector<TestTensor>& tensors, const std::string& metadata_json = "");

// `n` random bytes.
std::string RandomBytes(std::mt19937_64& rng, size_t n);

// Changes about `fraction` of the `width`-byte elements of `data` by small
// integer steps of their bit patterns (as a training step would).
void Perturb(std::mt19937_64& rng, std::string* data, int width, double fraction);

// Bytes per element of a safetensors dtype name.
int WidthOf(const std::string& dtype);

}  // namespace tpde::test
