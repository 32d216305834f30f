#include "codec/elias_delta.h"

#include <bit>

namespace tpde::internal {

namespace {

class BitWriter {
 public:
  explicit BitWriter(std::string* out) : out_(out) {}
  // Writes the low `n` bits of v (n <= 57), most significant first.
  void Put(uint64_t v, int n) {
    acc_ = (acc_ << n) | (v & ((uint64_t{1} << n) - 1));
    fill_ += n;
    while (fill_ >= 8) {
      fill_ -= 8;
      out_->push_back(static_cast<char>(acc_ >> fill_));
    }
  }
  void Finish() {
    if (fill_ > 0) out_->push_back(static_cast<char>(acc_ << (8 - fill_)));
    fill_ = 0;
  }

 private:
  std::string* out_;
  uint64_t acc_ = 0;
  int fill_ = 0;
};

class BitReader {
 public:
  explicit BitReader(std::string_view in) : p_(reinterpret_cast<const uint8_t*>(in.data())), end_(p_ + in.size()) {}

  // Keeps at least 57 bits in the window when input remains.
  void Refill() {
    while (fill_ <= 56) {
      uint64_t byte = 0;
      if (p_ < end_) byte = *p_++;  // past the end: zero padding, see Overrun()
      win_ |= byte << (56 - fill_);
      fill_ += 8;
    }
  }
  // Leading zeros of the window (up to 64).
  int LeadingZeros() const { return win_ == 0 ? 64 : std::countl_zero(win_); }
  uint64_t Take(int n) {
    if (n == 0) return 0;
    uint64_t v = win_ >> (64 - n);
    win_ <<= n;
    fill_ -= n;
    consumed_ += n;
    return v;
  }
  // True if more bits were consumed than the stream holds.
  bool Overrun(size_t total_bits) const { return consumed_ > total_bits; }

 private:
  const uint8_t* p_;
  const uint8_t* end_;
  uint64_t win_ = 0;
  int fill_ = 0;
  size_t consumed_ = 0;
};

}  // namespace

void EliasDeltaEncodeGaps(const uint32_t* positions, size_t count, std::string* out) {
  BitWriter w(out);
  uint64_t prev = 0;  // position + 1 of the previous element
  for (size_t k = 0; k < count; ++k) {
    uint64_t n = uint64_t{positions[k]} + 1 - prev;
    prev = uint64_t{positions[k]} + 1;
    int len = std::bit_width(n);                              // L
    int len_bits = std::bit_width(static_cast<uint64_t>(len));  // N + 1
    w.Put(0, len_bits - 1);
    w.Put(static_cast<uint64_t>(len), len_bits);
    w.Put(n, len - 1);
  }
  w.Finish();
}

Status EliasDeltaDecodeGaps(std::string_view bits, size_t count, uint32_t limit, uint32_t* positions) {
  BitReader r(bits);
  const size_t total_bits = bits.size() * 8;
  uint64_t pos1 = 0;  // position + 1
  for (size_t k = 0; k < count; ++k) {
    r.Refill();
    int zeros = r.LeadingZeros();
    if (zeros > 5) return Status::Corruption("gap stream: malformed Elias-delta code");
    r.Take(zeros);
    uint64_t len = r.Take(zeros + 1);  // L, 1..63
    if (len == 0 || len > 33) return Status::Corruption("gap stream: gap length out of range");
    r.Refill();
    uint64_t n = (uint64_t{1} << (len - 1)) | r.Take(static_cast<int>(len - 1));
    pos1 += n;
    if (pos1 > limit) return Status::Corruption("gap stream: position past the end of the chunk");
    positions[k] = static_cast<uint32_t>(pos1 - 1);
  }
  if (r.Overrun(total_bits)) return Status::Corruption("gap stream: truncated");
  return Status::OK();
}

}  // namespace tpde::internal
