// Reading an image file with bounded work: regular files only, at most Limits::max_image_bytes
// (as dfma/contract/image_files.py).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dfma/limits.hpp"

namespace dfma::detail {

/// The bytes of a regular file of at most limits.max_image_bytes. The file is opened without blocking
/// and checked with fstat before a byte is read: a folder, a FIFO, a device or a socket is refused.
/// Throws ImageError naming the file (missing, not a regular file, too large, unreadable).
std::vector<std::uint8_t> read_image_file(const std::string& path, const Limits& limits);

/// What a non-regular st_mode is, in words ("a folder", "a character device", ...).
std::string file_kind(unsigned mode);

}  // namespace dfma::detail
