// JPEG (libjpeg) and PNG (libpng) decoding to 8-bit RGB with the same colour handling as Pillow's
// Image.open(...).convert("RGB"): grey replicated, alpha dropped, palette expanded, CMYK JPEG via
// Pillow's CMYK -> RGB formula, 16-bit grey clipped like Pillow's I;16 -> RGB. No EXIF rotation.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

#include "dfma/image.hpp"

namespace dfma::detail {

/// Decodes encoded bytes; `name` is used in error messages. Images with more than `max_pixels`
/// pixels are refused from their header, before the pixels are decoded. Throws ImageError.
RgbImage decode_image(const std::uint8_t* data, std::size_t size, std::int64_t max_pixels, const std::string& name);

}  // namespace dfma::detail
