// dfma::Image: the three ways to hand an image to the runtime.
#include "dfma/errors.hpp"
#include "dfma/image.hpp"

namespace dfma {

Image Image::from_file(std::string path) {
    Image im;
    im.kind_ = Kind::File;
    im.path_ = std::move(path);
    return im;
}

Image Image::from_encoded(std::vector<std::uint8_t> bytes) {
    Image im;
    im.kind_ = Kind::Encoded;
    im.bytes_ = std::make_shared<const std::vector<std::uint8_t>>(std::move(bytes));
    return im;
}

Image Image::from_rgb(int width, int height, std::vector<std::uint8_t> rgb) {
    if (width <= 0 || height <= 0)
        throw ImageError("image: RGB buffer size must be positive, got " + std::to_string(width) + "x" +
                         std::to_string(height));
    const auto expected = static_cast<std::size_t>(width) * static_cast<std::size_t>(height) * 3;
    if (rgb.size() != expected)
        throw ImageError("image: RGB buffer of " + std::to_string(width) + "x" + std::to_string(height) +
                         " needs " + std::to_string(expected) + " bytes (width * height * 3), got " +
                         std::to_string(rgb.size()));
    Image im;
    im.kind_ = Kind::Rgb;
    im.width_ = width;
    im.height_ = height;
    im.bytes_ = std::make_shared<const std::vector<std::uint8_t>>(std::move(rgb));
    return im;
}

std::string Image::describe() const {
    switch (kind_) {
        case Kind::File: return path_;
        case Kind::Encoded: return "<" + std::to_string(bytes_->size()) + " bytes>";
        case Kind::Rgb: return "<RGB buffer " + std::to_string(width_) + "x" + std::to_string(height_) + ">";
    }
    return "<image>";
}

}  // namespace dfma
