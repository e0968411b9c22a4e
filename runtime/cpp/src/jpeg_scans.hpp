// Bounding a JPEG's number of scans before libjpeg sees it (as dfma/contract/jpeg_scans.py): each scan
// of a progressive JPEG walks every 8x8 block again however few bytes it has, so a small file with
// thousands of scans would keep the decoder busy for minutes.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "dfma/limits.hpp"

namespace dfma::detail {

/// The number of SOS (start of scan) markers of JPEG bytes before EOI, counting stopped at `cap`: markers
/// found as libjpeg's next_marker finds them (other bytes, fill 0xFF bytes, stuffed 0xFF 0x00 and RSTn
/// skipped), segments skipped by their length. 0 for bytes that are not a JPEG.
std::int64_t count_jpeg_scans(const std::uint8_t* data, std::size_t size, std::int64_t cap);

/// Throws ImageError (naming max_jpeg_scans) for JPEG bytes of more than limits.max_jpeg_scans scans;
/// other bytes pass untouched.
void check_jpeg_scans(const std::uint8_t* data, std::size_t size, const std::string& name, const Limits& limits);

}  // namespace dfma::detail
