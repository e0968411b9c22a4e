// JPEG (libjpeg) and PNG (libpng) decoding to 8-bit RGB with the same colour handling as Pillow's
// Image.open(...).convert("RGB"): grey replicated, alpha dropped, palette expanded, CMYK JPEG via
// Pillow's CMYK -> RGB formula, 16-bit grey clipped like Pillow's I;16 -> RGB. No EXIF rotation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "dfma/image.hpp"
#include "dfma/limits.hpp"

namespace dfma::detail {

/// What an image header must pass before its pixels are decoded: the limits of dfma/limits.hpp (sides,
/// aspect ratio, pixels: the smaller of limits.max_image_pixels and `max_pixels`) and the size the
/// resize to `resize_size` would make (max_resized_pixels).
struct HeaderCheck {
    const Limits& limits;
    std::int64_t max_pixels;
    int resize_size;
    /// Throws ImageError naming the limit.
    void operator()(long long width, long long height, const std::string& name) const;
};

/// (width, height) after resizing the shorter side to `r` (the longer truncated), as Python's resized_size.
void resized_size(long long width, long long height, int r, long long& out_w, long long& out_h);

/// Decodes encoded bytes; `name` is used in error messages. The header is checked with `check`
/// before the pixels are decoded. Throws ImageError.
RgbImage decode_image(const std::uint8_t* data, std::size_t size, const HeaderCheck& check, const std::string& name);

}  // namespace dfma::detail
