// Little-endian fixed-width encoding helpers for store records and keys
// (internal to the store). Keys use big-endian so that RocksDB's bytewise
// order is numeric order.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

namespace tpde {

inline void PutFixedN(std::string* out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>(v >> (8 * i)));
}
inline void PutFixed8(std::string* out, uint8_t v) { PutFixedN(out, v, 1); }
inline void PutFixed16(std::string* out, uint16_t v) { PutFixedN(out, v, 2); }
inline void PutFixed32(std::string* out, uint32_t v) { PutFixedN(out, v, 4); }
inline void PutFixed64(std::string* out, uint64_t v) { PutFixedN(out, v, 8); }
inline void PutLengthPrefixed(std::string* out, std::string_view s) {
  PutFixed32(out, static_cast<uint32_t>(s.size()));
  out->append(s);
}
inline void PutBigEndian64(std::string* out, uint64_t v) {
  for (int i = 7; i >= 0; --i) out->push_back(static_cast<char>(v >> (8 * i)));
}
inline void PutBigEndian32(std::string* out, uint32_t v) {
  for (int i = 3; i >= 0; --i) out->push_back(static_cast<char>(v >> (8 * i)));
}
inline uint64_t GetBigEndian64(std::string_view s) {
  uint64_t v = 0;
  for (int i = 0; i < 8 && i < static_cast<int>(s.size()); ++i) v = (v << 8) | static_cast<unsigned char>(s[i]);
  return v;
}

// Bounds-checked sequential reader; every getter returns false when the
// input is exhausted and leaves the output unchanged.
class Reader {
 public:
  explicit Reader(std::string_view in) : in_(in) {}

  template <typename T>
  bool Fixed(T* v) {
    if (in_.size() < sizeof(T)) return false;
    uint64_t x = 0;
    for (size_t i = 0; i < sizeof(T); ++i) x |= uint64_t{static_cast<unsigned char>(in_[i])} << (8 * i);
    *v = static_cast<T>(x);
    in_.remove_prefix(sizeof(T));
    return true;
  }
  bool Fixed8(uint8_t* v) { return Fixed(v); }
  bool Fixed16(uint16_t* v) { return Fixed(v); }
  bool Fixed32(uint32_t* v) { return Fixed(v); }
  bool Fixed64(uint64_t* v) { return Fixed(v); }
  bool FixedI64(int64_t* v) { return Fixed(v); }
  bool LengthPrefixed(std::string* s) {
    uint32_t n = 0;
    if (!Fixed32(&n) || in_.size() < n) return false;
    s->assign(in_.substr(0, n));
    in_.remove_prefix(n);
    return true;
  }
  // Takes up to n bytes (fewer if the input is shorter).
  std::string_view Take(size_t n) {
    std::string_view s = in_.substr(0, n);
    in_.remove_prefix(s.size());
    return s;
  }
  size_t remaining() const { return in_.size(); }

 private:
  std::string_view in_;
};

}  // namespace tpde
