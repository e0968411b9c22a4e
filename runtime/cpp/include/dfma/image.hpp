// Image side of the DFMA contract (docs/contract.md section 3): decode JPEG/PNG or take an RGB buffer,
// resize like Pillow's Image.resize(BILINEAR), center-crop, normalise to float32 3 x S x S.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "dfma/limits.hpp"

namespace dfma {

/// An image to preprocess: a file path, encoded JPEG/PNG bytes, or an 8-bit RGB buffer.
/// Cheap to copy (the bytes are shared). Decoding happens when the image is preprocessed.
class Image {
public:
    enum class Kind { File, Encoded, Rgb };

    /// A JPEG or PNG file (the format is taken from the content, not the name).
    static Image from_file(std::string path);
    /// Encoded JPEG or PNG bytes.
    static Image from_encoded(std::vector<std::uint8_t> bytes);
    /// Interleaved 8-bit RGB, row-major, `width * height * 3` bytes. Throws ImageError on a size mismatch.
    static Image from_rgb(int width, int height, std::vector<std::uint8_t> rgb);

    Kind kind() const { return kind_; }
    /// The path (Kind::File) or a short description ("encoded bytes", "RGB buffer WxH").
    std::string describe() const;
    const std::string& path() const { return path_; }
    /// Encoded bytes (Kind::Encoded) or RGB pixels (Kind::Rgb).
    const std::vector<std::uint8_t>& bytes() const { return *bytes_; }
    int width() const { return width_; }
    int height() const { return height_; }

private:
    Kind kind_ = Kind::Rgb;
    std::string path_;
    std::shared_ptr<const std::vector<std::uint8_t>> bytes_;
    int width_ = 0, height_ = 0;
};

/// Decoded 8-bit RGB pixels (interleaved, row-major).
struct RgbImage {
    int width = 0, height = 0;
    std::vector<std::uint8_t> pixels;
};

/// Preprocessing constants; a bundle's manifest `preprocess` section fills them in.
struct ImageConfig {
    int image_size = 224;                  ///< S, the center crop
    int resize_size = 256;                 ///< shorter side after resizing
    std::array<float, 3> mean{0.485f, 0.456f, 0.406f};
    std::array<float, 3> std{0.229f, 0.224f, 0.225f};
    std::int64_t max_image_pixels = 50000000;  ///< larger images are refused before decoding (with Limits'; the smaller)
};

/// Turns images into normalised float32 planes. Immutable; safe to use from many threads.
class ImagePreprocessor {
public:
    /// Throws InputError when the sizes are not positive or resize_size < image_size. `limits` bound the
    /// work per image (dfma/limits.hpp): file type and size, PNG text / ICC chunks, header sizes.
    explicit ImagePreprocessor(const ImageConfig& config, const Limits& limits = {});

    /// Decodes (if needed) and converts to 8-bit RGB; throws ImageError naming the image.
    RgbImage decode(const Image& image) const;
    /// 3 x S x S float32 values, channel-major. Throws ImageError.
    std::vector<float> load(const Image& image) const;
    /// Same, written to `out` (3 * S * S floats).
    void load_into(const Image& image, float* out) const;
    /// Resize + crop + normalise an already decoded image into `out` (3 * S * S floats).
    void preprocess_into(const RgbImage& rgb, float* out) const;
    const ImageConfig& config() const { return config_; }
    const Limits& limits() const { return limits_; }

private:
    ImageConfig config_;
    Limits limits_;
};

/// Pillow's `Image.resize((width, height), Image.BILINEAR)` on 8-bit RGB, bit-exact.
RgbImage resize_bilinear(const RgbImage& in, int width, int height);

}  // namespace dfma
