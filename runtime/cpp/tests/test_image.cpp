// Image decoding and preprocessing against Pillow / dfma.images results stored in data/expected.json.
#include <cmath>
#include <fstream>
#include <iterator>

#include <nlohmann/json.hpp>

#include "check.hpp"
#include "dfma/errors.hpp"
#include "dfma/image.hpp"

namespace {

nlohmann::json expected() {
    nlohmann::json j;
    std::ifstream(check::data_dir() + "/expected.json") >> j;
    return j;
}

std::vector<std::uint8_t> read_bytes(const std::string& path) {
    std::ifstream f(path, std::ios::binary);
    return {std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>()};
}

dfma::ImageConfig toy_config() {
    dfma::ImageConfig c;
    c.image_size = 8;
    c.resize_size = 10;
    c.max_image_pixels = 5000;
    return c;
}

std::string image_path(const std::string& name) { return check::data_dir() + "/images/" + name; }

float max_abs_diff(const std::vector<float>& a, const std::vector<float>& b) {
    if (a.size() != b.size()) return INFINITY;
    float m = 0.f;
    for (std::size_t i = 0; i < a.size(); ++i) m = std::max(m, std::fabs(a[i] - b[i]));
    return m;
}

}  // namespace

TEST(resize_is_bit_exact_with_pillow) {
    for (const auto& c : expected()["resize"]) {
        dfma::RgbImage in;
        in.width = c["in"][0];
        in.height = c["in"][1];
        for (int y = 0; y < in.height; ++y)
            for (int x = 0; x < in.width; ++x)
                for (int ch = 0; ch < 3; ++ch) in.pixels.push_back(static_cast<std::uint8_t>((x * 37 + y * 101 + ch * 53 + x * y) % 256));
        auto out = dfma::resize_bilinear(in, c["out"][0], c["out"][1]);
        const auto want = c["pixels"].get<std::vector<int>>();
        CHECK_EQ(out.pixels.size(), want.size());
        int diffs = 0;
        for (std::size_t i = 0; i < want.size() && i < out.pixels.size(); ++i) diffs += out.pixels[i] != want[i];
        if (diffs) check::fail(__FILE__, __LINE__, "resize " + c["in"].dump() + " -> " + c["out"].dump() + ": " + std::to_string(diffs) + " bytes differ");
    }
}

TEST(preprocessed_files_match_python) {
    const dfma::ImagePreprocessor pre(toy_config());
    for (const auto& [name, values] : expected()["images"].items()) {
        const auto got = pre.load(dfma::Image::from_file(image_path(name)));
        const float err = max_abs_diff(got, values.get<std::vector<float>>());
        if (!(err <= 1e-6f)) check::fail(__FILE__, __LINE__, name + ": max abs error " + std::to_string(err));
    }
}

TEST(encoded_bytes_and_rgb_buffer_give_the_same_result) {
    const dfma::ImagePreprocessor pre(toy_config());
    const auto from_file = pre.load(dfma::Image::from_file(image_path("rgb.png")));
    CHECK(pre.load(dfma::Image::from_encoded(read_bytes(image_path("rgb.png")))) == from_file);
    const auto rgb = pre.decode(dfma::Image::from_file(image_path("rgb.png")));
    CHECK_EQ(rgb.width, 23);
    CHECK_EQ(rgb.height, 17);
    CHECK(pre.load(dfma::Image::from_rgb(rgb.width, rgb.height, rgb.pixels)) == from_file);
}

TEST(bad_images_raise_image_error) {
    const dfma::ImagePreprocessor pre(toy_config());
    auto load_bytes = [&](std::vector<std::uint8_t> b) { return pre.load(dfma::Image::from_encoded(std::move(b))); };
    CHECK_THROWS(pre.load(dfma::Image::from_file(image_path("missing.jpg"))), dfma::ImageError, "no such image file");
    CHECK_THROWS(pre.load(dfma::Image::from_file(check::data_dir())), dfma::ImageError, check::data_dir());
    CHECK_THROWS(load_bytes({}), dfma::ImageError, "empty");
    CHECK_THROWS(load_bytes({'G', 'I', 'F', '8', '9', 'a', 0, 0}), dfma::ImageError, "not a recognised image");
    for (const char* name : {"rgb.jpg", "rgb.png", "palette_trns.png"}) {
        auto b = read_bytes(image_path(name));
        b.resize(b.size() / 2);
        CHECK_THROWS(load_bytes(b), dfma::ImageError, "truncated or corrupt");
        b.resize(20);
        CHECK_THROWS(load_bytes(b), dfma::ImageError, "truncated or corrupt");
    }
    auto png = read_bytes(image_path("rgb.png"));
    png[png.size() - 20] ^= 0x55;  // inside the image data: CRC / zlib error
    CHECK_THROWS(load_bytes(png), dfma::ImageError, "<");
    auto jpg = read_bytes(image_path("rgb.jpg"));
    for (std::size_t i = 2; i < 40; ++i) jpg[i] = 0xFF;  // wreck the headers
    CHECK_THROWS(load_bytes(jpg), dfma::ImageError, "truncated or corrupt");
}

TEST(pixel_limit_and_buffer_checks) {
    auto cfg = toy_config();
    cfg.max_image_pixels = 300;  // 23 x 17 = 391
    const dfma::ImagePreprocessor small(cfg);
    CHECK_THROWS(small.load(dfma::Image::from_file(image_path("rgb.jpg"))), dfma::ImageError, "23x17 = 391 pixels exceeds the limit of 300");
    CHECK_THROWS(small.load(dfma::Image::from_file(image_path("rgb.png"))), dfma::ImageError, "exceeds the limit");
    CHECK_THROWS(small.load(dfma::Image::from_rgb(20, 20, std::vector<std::uint8_t>(1200))), dfma::ImageError, "exceeds");
    CHECK_THROWS(dfma::Image::from_rgb(4, 4, std::vector<std::uint8_t>(47)), dfma::ImageError, "needs 48 bytes");
    CHECK_THROWS(dfma::Image::from_rgb(0, 4, {}), dfma::ImageError, "positive");
    CHECK_THROWS(dfma::ImagePreprocessor(dfma::ImageConfig{8, 7}), dfma::InputError, "resize_size");
}

TEST(tiny_and_extreme_aspect_images) {
    const dfma::ImagePreprocessor pre(toy_config());
    // 1x1 and 10x200 (aspect ratio 20, the limit) images must work (the shorter side is scaled up to
    // resize_size); 1x200 is refused from its size (max_aspect_ratio), before any resizing.
    CHECK_EQ(pre.load(dfma::Image::from_rgb(1, 1, {10, 20, 30})).size(), std::size_t(3 * 8 * 8));
    CHECK_EQ(pre.load(dfma::Image::from_rgb(10, 200, std::vector<std::uint8_t>(6000, 7))).size(), std::size_t(3 * 8 * 8));
    CHECK_THROWS(pre.load(dfma::Image::from_rgb(1, 200, std::vector<std::uint8_t>(600, 7))), dfma::ImageError,
                 "max_aspect_ratio 20");
}
