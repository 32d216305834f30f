// Elias-delta coding of positive integers (internal to the codec).
//
// Source: P. Elias, "Universal codeword sets and representations of the
// integers", IEEE Trans. Information Theory 21(2), 1975. A value n >= 1 with
// L = floor(log2 n) + 1 significant bits and N = floor(log2 L) is written as
// N zero bits, then L in N + 1 bits, then the low L - 1 bits of n. Bits are
// packed most significant first into bytes; the last byte is zero-padded.
//
// TPDE uses it for gaps between the positions of changed elements in a
// chunk: gap_0 = pos_0 + 1, gap_k = pos_k - pos_{k-1}.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "codec/status.h"

namespace tpde::internal {

// Appends the codes of positions[0..count) as gaps (positions strictly
// increasing) to *out.
void EliasDeltaEncodeGaps(const uint32_t* positions, size_t count, std::string* out);

// Decodes `count` gaps from `bits` into strictly increasing positions, each
// < `limit`. Corruption if the stream ends early, a code is malformed, or a
// position reaches `limit`.
Status EliasDeltaDecodeGaps(std::string_view bits, size_t count, uint32_t limit, uint32_t* positions);

}  // namespace tpde::internal
