// ImagePreprocessor: decode -> RGB -> resize shorter side (Pillow bilinear) -> center crop -> normalise.
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <memory>

#include "dfma/errors.hpp"
#include "dfma/image.hpp"
#include "image_decode.hpp"

namespace dfma {
namespace {

std::vector<std::uint8_t> read_image_file(const std::string& path) {
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
    if (!f) {
        if (errno == ENOENT || errno == ENOTDIR) throw ImageError(path + ": no such image file");
        throw ImageError(path + ": cannot open (" + std::strerror(errno) + ")");
    }
    std::vector<std::uint8_t> data;
    std::uint8_t buf[1 << 16];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f.get())) > 0) data.insert(data.end(), buf, buf + n);
    if (std::ferror(f.get())) throw ImageError(path + ": read error (is it a directory?)");
    return data;
}

}  // namespace

ImagePreprocessor::ImagePreprocessor(const ImageConfig& config) : config_(config) {
    if (config.image_size <= 0 || config.resize_size <= 0 || config.max_image_pixels <= 0)
        throw InputError("image config: image_size, resize_size and max_image_pixels must be positive");
    if (config.resize_size < config.image_size)
        throw InputError("image config: resize_size " + std::to_string(config.resize_size) +
                         " must be >= image_size " + std::to_string(config.image_size));
    for (float s : config.std)
        if (s == 0.f) throw InputError("image config: std must be non-zero");
}

RgbImage ImagePreprocessor::decode(const Image& image) const {
    switch (image.kind()) {
        case Image::Kind::File: {
            const auto data = read_image_file(image.path());
            return detail::decode_image(data.data(), data.size(), config_.max_image_pixels, image.path());
        }
        case Image::Kind::Encoded:
            return detail::decode_image(image.bytes().data(), image.bytes().size(), config_.max_image_pixels,
                                        image.describe());
        case Image::Kind::Rgb: {
            const long long pixels = static_cast<long long>(image.width()) * image.height();
            if (pixels > config_.max_image_pixels)
                throw ImageError("array: " + std::to_string(image.width()) + "x" + std::to_string(image.height()) +
                                 " = " + std::to_string(pixels) + " pixels exceeds the limit of " +
                                 std::to_string(config_.max_image_pixels));
            return RgbImage{image.width(), image.height(), image.bytes()};
        }
    }
    throw ImageError("image: unknown kind");
}

void ImagePreprocessor::preprocess_into(const RgbImage& rgb, float* out) const {
    const int r = config_.resize_size, s = config_.image_size;
    int w, h;  // Python: int(r * long / short), truncated
    if (rgb.width <= rgb.height) {
        w = r;
        h = static_cast<int>(static_cast<double>(static_cast<long long>(r) * rgb.height) / rgb.width);
    } else {
        w = static_cast<int>(static_cast<double>(static_cast<long long>(r) * rgb.width) / rgb.height);
        h = r;
    }
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
