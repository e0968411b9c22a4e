// Bounding what a PNG's text (tEXt, zTXt, iTXt) and ICC (iCCP) chunks inflate to, before libpng sees
// them (as dfma/contract/png_chunks.py: chunks split as Pillow splits them, each inflated into a capped
// buffer, a corrupt stream counting as nothing).
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "dfma/limits.hpp"

namespace dfma::detail {

/// Throws ImageError when a compressed chunk inflates to max_chunk_bytes or more, or the chunks together
/// to more than max_ancillary_bytes. Bytes that are not a PNG pass untouched.
void check_png_ancillary(const std::uint8_t* data, std::size_t size, const std::string& name, const Limits& limits);

/// Bytes a zlib stream inflates to, at most `cap` (0 when the stream is corrupt before `cap`).
std::int64_t inflated_size(const std::uint8_t* data, std::size_t size, std::int64_t cap);

}  // namespace dfma::detail
