// The checks of dfma/limits.hpp, as dfma/contract/limits.py words them (same order, same messages).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dfma/limits.hpp"

namespace dfma::detail {

/// Header checks of an image: empty, a side, the aspect ratio, then the pixel count (the smaller of
/// limits.max_image_pixels and `max_pixels`). Throws ImageError naming the limit.
void check_image_size(long long width, long long height, const std::string& name, const Limits& limits,
                      std::int64_t max_pixels);
/// The size after the resize step (max_resized_pixels). Throws ImageError.
void check_resized_size(long long width, long long height, const std::string& name, const Limits& limits);
/// An encoded image's size (max_image_bytes). Throws ImageError.
void check_image_bytes(long long size, const std::string& name, const Limits& limits);
/// Code points of UTF-8 text (bytes that do not continue a sequence).
std::int64_t code_points(const std::string& text);
/// The text of a request (max_text_chars). Throws InputError (field "text").
void check_text(const std::string& text, const Limits& limits);
/// A word list (max_words, then max_text_chars over all words). Throws InputError (field `field`).
void check_words(const std::vector<std::string>& words, const Limits& limits, const std::string& field = "words");
/// A batch (max_batch_requests). Throws InputError (field "samples").
void check_batch(std::size_t count, const Limits& limits);
/// Deepest nesting of [ and { outside strings, counted left to right as json_depth() in Python.
std::int64_t json_depth(const std::string& line);

}  // namespace dfma::detail
