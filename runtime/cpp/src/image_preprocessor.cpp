// ImagePreprocessor: decode -> RGB -> resize shorter side (Pillow bilinear) -> center crop -> normalise.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "dfma/errors.hpp"
#include "dfma/image.hpp"
#include "image_decode.hpp"
#include "image_file.hpp"
#include "jpeg_scans.hpp"
#include "png_chunks.hpp"
#include "request_limits.hpp"

namespace dfma {

namespace detail {

void resized_size(long long w, long long h, int r, long long& out_w, long long& out_h) {
    if (w <= h) {  // Python: int(r * long / short), truncated
        out_w = r;
        out_h = static_cast<long long>(static_cast<double>(static_cast<long long>(r) * h) / static_cast<double>(w));
    } else {
        out_w = static_cast<long long>(static_cast<double>(static_cast<long long>(r) * w) / static_cast<double>(h));
        out_h = r;
    }
}

void HeaderCheck::operator()(long long width, long long height, const std::string& name) const {
    check_image_size(width, height, name, limits, max_pixels);
    long long w = 0, h = 0;
    resized_size(width, height, resize_size, w, h);
    check_resized_size(w, h, name, limits);
}

}  // namespace detail

ImagePreprocessor::ImagePreprocessor(const ImageConfig& config, const Limits& limits) : config_(config), limits_(limits) {
    if (config.image_size <= 0 || config.resize_size <= 0 || config.max_image_pixels <= 0)
        throw InputError("image config: image_size, resize_size and max_image_pixels must be positive");
    if (config.resize_size < config.image_size)
        throw InputError("image config: resize_size " + std::to_string(config.resize_size) +
                         " must be >= image_size " + std::to_string(config.image_size));
    for (float s : config.std)
        if (s == 0.f) throw InputError("image config: std must be non-zero");
}

RgbImage ImagePreprocessor::decode(const Image& image) const {
    const detail::HeaderCheck check{limits_, config_.max_image_pixels, config_.resize_size};
    switch (image.kind()) {
        case Image::Kind::File: {
            const auto data = detail::read_image_file(image.path(), limits_);
            detail::check_png_ancillary(data.data(), data.size(), image.path(), limits_);
            detail::check_jpeg_scans(data.data(), data.size(), image.path(), limits_);
            return detail::decode_image(data.data(), data.size(), check, image.path());
        }
        case Image::Kind::Encoded: {
            const auto& data = image.bytes();
            detail::check_image_bytes(static_cast<long long>(data.size()), image.describe(), limits_);
            detail::check_png_ancillary(data.data(), data.size(), image.describe(), limits_);
            detail::check_jpeg_scans(data.data(), data.size(), image.describe(), limits_);
            return detail::decode_image(data.data(), data.size(), check, image.describe());
        }
        case Image::Kind::Rgb:
            check(image.width(), image.height(), "array");
            return RgbImage{image.width(), image.height(), image.bytes()};
    }
    throw ImageError("image: unknown kind");
}

void ImagePreprocessor::preprocess_into(const RgbImage& rgb, float* out) const {
    const int s = config_.image_size;
    if (rgb.width <= 0 || rgb.height <= 0 || rgb.pixels.size() != static_cast<std::size_t>(rgb.width) * rgb.height * 3)
        throw ImageError("image: an RGB image of " + std::to_string(rgb.width) + "x" + std::to_string(rgb.height) +
                         " needs width * height * 3 bytes, got " + std::to_string(rgb.pixels.size()));
    long long rw = 0, rh = 0;
    detail::resized_size(rgb.width, rgb.height, config_.resize_size, rw, rh);
    detail::check_resized_size(rw, rh, "image", limits_);
    const int w = static_cast<int>(rw), h = static_cast<int>(rh);
    const RgbImage resized = (w == rgb.width && h == rgb.height) ? rgb : resize_bilinear(rgb, w, h);
    const int top = (h - s) / 2, left = (w - s) / 2;
    const std::size_t plane = static_cast<std::size_t>(s) * s;
    for (int y = 0; y < s; ++y) {
        const std::uint8_t* row = resized.pixels.data() + (static_cast<std::size_t>(top + y) * w + left) * 3;
        for (int x = 0; x < s; ++x) {
            for (int c = 0; c < 3; ++c) {
                // float32 throughout, in numpy's order: (pixel / 255 - mean) / std
                const float v = static_cast<float>(row[3 * x + c]) / 255.0f;
                out[c * plane + static_cast<std::size_t>(y) * s + x] = (v - config_.mean[c]) / config_.std[c];
            }
        }
    }
}

void ImagePreprocessor::load_into(const Image& image, float* out) const { preprocess_into(decode(image), out); }

std::vector<float> ImagePreprocessor::load(const Image& image) const {
    std::vector<float> out(3 * static_cast<std::size_t>(config_.image_size) * config_.image_size);
    load_into(image, out.data());
    return out;
}

}  // namespace dfma
