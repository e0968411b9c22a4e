// Pillow's Image.resize(size, Image.BILINEAR) for 8-bit RGB, following src/libImaging/Resample.c:
// an antialiased triangle filter whose support grows with the downscale factor, coefficients
// normalised to sum 1 and converted to 22-bit fixed point, horizontal pass first into an 8-bit
// intermediate (only the rows the vertical pass reads), then the vertical pass; round half up, clip.
#include <cmath>
#include <cstdint>
#include <vector>

#include "dfma/errors.hpp"
#include "dfma/image.hpp"

namespace dfma {
namespace {

constexpr int kPrecisionBits = 32 - 8 - 2;

struct Coefficients {
    int ksize = 0;
    std::vector<int> bounds;       // per output index: first input index, number of taps
    std::vector<std::int32_t> k;   // out_size * ksize fixed-point weights
};

double bilinear_filter(double x) {
    if (x < 0.0) x = -x;
    if (x < 1.0) return 1.0 - x;
    return 0.0;
}

// precompute_coeffs + normalize_coeffs_8bpc for the box (0, in_size) -> out_size.
Coefficients precompute(int in_size, int out_size) {
    const float in0 = 0.f, in1 = static_cast<float>(in_size);
    double scale = static_cast<double>(in1 - in0) / out_size;
    double filterscale = scale < 1.0 ? 1.0 : scale;
    const double support = 1.0 * filterscale;
    Coefficients c;
    c.ksize = static_cast<int>(std::ceil(support)) * 2 + 1;
    c.bounds.resize(static_cast<std::size_t>(out_size) * 2);
    c.k.assign(static_cast<std::size_t>(out_size) * c.ksize, 0);
    std::vector<double> w(c.ksize);
    for (int xx = 0; xx < out_size; ++xx) {
        double center = in0 + (xx + 0.5) * scale;
        double ww = 0.0;
        double ss = 1.0 / filterscale;
        int xmin = static_cast<int>(center - support + 0.5);
        if (xmin < 0) xmin = 0;
        int xmax = static_cast<int>(center + support + 0.5);
        if (xmax > in_size) xmax = in_size;
        xmax -= xmin;
        for (int x = 0; x < xmax; ++x) {
            double v = bilinear_filter((x + xmin - center + 0.5) * ss);
            w[x] = v;
            ww += v;
        }
        for (int x = 0; x < xmax; ++x) {
            if (ww != 0.0) w[x] /= ww;
        }
        for (int x = 0; x < xmax; ++x) {
            double v = w[x] * (1 << kPrecisionBits);
            c.k[static_cast<std::size_t>(xx) * c.ksize + x] =
                static_cast<std::int32_t>(w[x] < 0 ? -0.5 + v : 0.5 + v);
        }
        c.bounds[2 * xx] = xmin;
        c.bounds[2 * xx + 1] = xmax;
    }
    return c;
}

inline std::uint8_t clip8(int v) {
    v >>= kPrecisionBits;
    return static_cast<std::uint8_t>(v < 0 ? 0 : v > 255 ? 255 : v);
}


// Horizontal pass over rows [row0, row0 + rows) of `in`.
RgbImage horizontal_pass(const RgbImage& in, const Coefficients& c, int width, int row0, int rows) {
    RgbImage out;
    out.width = width;
    out.height = rows;
    out.pixels.resize(static_cast<std::size_t>(width) * rows * 3);
    for (int yy = 0; yy < rows; ++yy) {
        const std::uint8_t* row = in.pixels.data() + static_cast<std::size_t>(yy + row0) * in.width * 3;
        std::uint8_t* dst = out.pixels.data() + static_cast<std::size_t>(yy) * width * 3;
        for (int xx = 0; xx < width; ++xx) {
            const int xmin = c.bounds[2 * xx], xmax = c.bounds[2 * xx + 1];
            const std::int32_t* k = c.k.data() + static_cast<std::size_t>(xx) * c.ksize;
            int s0 = 1 << (kPrecisionBits - 1), s1 = s0, s2 = s0;
            for (int x = 0; x < xmax; ++x) {
                const std::uint8_t* p = row + static_cast<std::size_t>(x + xmin) * 3;
                s0 += p[0] * k[x];
                s1 += p[1] * k[x];
                s2 += p[2] * k[x];
            }
            dst[3 * xx] = clip8(s0);
            dst[3 * xx + 1] = clip8(s1);
            dst[3 * xx + 2] = clip8(s2);
        }
    }
    return out;
}

// Vertical pass over all columns of `in`; `row0` is subtracted from the coefficient bounds.
RgbImage vertical_pass(const RgbImage& in, const Coefficients& c, int height, int row0) {
    RgbImage out;
    out.width = in.width;
    out.height = height;
    out.pixels.resize(static_cast<std::size_t>(in.width) * height * 3);
    const std::size_t stride = static_cast<std::size_t>(in.width) * 3;
    for (int yy = 0; yy < height; ++yy) {
        const int ymin = c.bounds[2 * yy] - row0, ymax = c.bounds[2 * yy + 1];
        const std::int32_t* k = c.k.data() + static_cast<std::size_t>(yy) * c.ksize;
        std::uint8_t* dst = out.pixels.data() + static_cast<std::size_t>(yy) * stride;
        for (std::size_t i = 0; i < stride; ++i) {
            int s = 1 << (kPrecisionBits - 1);
            for (int y = 0; y < ymax; ++y) s += in.pixels[static_cast<std::size_t>(y + ymin) * stride + i] * k[y];
            dst[i] = clip8(s);
        }
    }
    return out;
}

}  // namespace

RgbImage resize_bilinear(const RgbImage& in, int width, int height) {
    if (in.width <= 0 || in.height <= 0 || width <= 0 || height <= 0)
        throw ImageError("resize: sizes must be positive");
    const bool need_h = width != in.width, need_v = height != in.height;
    if (!need_h && !need_v) return in;
    const Coefficients vert = precompute(in.height, height);
    if (!need_h) return vertical_pass(in, vert, height, 0);
    const Coefficients hor = precompute(in.width, width);
    if (!need_v) return horizontal_pass(in, hor, width, 0, in.height);
    // Pillow 13 (python-pillow/Pillow#9549) runs the vertical pass first when the height shrinks by
    // more than twice as many pixels as the width; the 8-bit intermediate makes the order matter.
    if (height < in.height && in.height - height > 2 * (in.width - width)) {
        return horizontal_pass(vertical_pass(in, vert, height, 0), hor, width, 0, height);
    }
    // Horizontal first, only over the rows the vertical pass reads.
    const int first = vert.bounds[0];
    const int last = vert.bounds[2 * height - 2] + vert.bounds[2 * height - 1];
    return vertical_pass(horizontal_pass(in, hor, width, first, last - first), vert, height, first);
}

}  // namespace dfma
