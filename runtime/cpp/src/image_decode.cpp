#include "image_decode.hpp"

#include <csetjmp>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include <jpeglib.h>
#include <jerror.h>
#include <png.h>

#include "dfma/errors.hpp"

namespace dfma::detail {
namespace {

[[noreturn]] void corrupt(const std::string& name, const std::string& why) {
    throw ImageError(name + ": cannot decode, truncated or corrupt (" + why + ")");
}

// ------------------------------------------------------------------ JPEG

// All libjpeg state lives on the heap, so nothing the longjmp skips needs a destructor.
struct JpegJob {
    jpeg_decompress_struct cinfo{};
    jpeg_error_mgr err{};
    std::jmp_buf jump{};
    char message[JMSG_LENGTH_MAX] = {0};
    bool created = false;
    RgbImage out;
    std::vector<std::uint8_t> row;
    ~JpegJob() {
        if (created) jpeg_destroy_decompress(&cinfo);
    }
};

void jpeg_fail(j_common_ptr c) {
    auto* job = reinterpret_cast<JpegJob*>(c->client_data);
    (*c->err->format_message)(c, job->message);
    std::longjmp(job->jump, 1);
}

// Warnings are ignored as Pillow ignores them, except running out of data: Pillow reports a truncated
// file where libjpeg would pad the image with grey.
void jpeg_message(j_common_ptr c, int level) {
    if (level < 0 && c->err->msg_code == JWRN_JPEG_EOF) jpeg_fail(c);
}

RgbImage decode_jpeg(const std::uint8_t* data, std::size_t size, const HeaderCheck& check, const std::string& name) {
    auto job = std::make_unique<JpegJob>();
    RgbImage& out = job->out;
    std::vector<std::uint8_t>& row = job->row;
    job->cinfo.err = jpeg_std_error(&job->err);
    job->err.error_exit = jpeg_fail;
    job->err.emit_message = jpeg_message;
    job->cinfo.client_data = job.get();
    if (setjmp(job->jump)) corrupt(name, job->message);
    jpeg_create_decompress(&job->cinfo);
    job->created = true;
    jpeg_mem_src(&job->cinfo, data, static_cast<unsigned long>(size));
    jpeg_read_header(&job->cinfo, TRUE);
    auto& ci = job->cinfo;
    check(ci.image_width, ci.image_height, name);
    const int comps = ci.num_components;
    if (comps == 1) ci.out_color_space = JCS_GRAYSCALE;
    else if (comps == 3) ci.out_color_space = JCS_RGB;
    else if (comps == 4) ci.out_color_space = JCS_CMYK;
    else corrupt(name, std::to_string(comps) + "-component JPEG");
    jpeg_start_decompress(&ci);
    const int w = static_cast<int>(ci.output_width), h = static_cast<int>(ci.output_height);
    const int oc = ci.output_components;
    out.width = w;
    out.height = h;
    out.pixels.resize(static_cast<std::size_t>(w) * h * 3);
    row.resize(static_cast<std::size_t>(w) * oc);
    while (ci.output_scanline < ci.output_height) {
        JSAMPROW rows[1] = {row.data()};
        const int y = static_cast<int>(ci.output_scanline);
        if (jpeg_read_scanlines(&ci, rows, 1) != 1) corrupt(name, "no scanline");
        std::uint8_t* dst = out.pixels.data() + static_cast<std::size_t>(y) * w * 3;
        for (int x = 0; x < w; ++x) {
            const std::uint8_t* p = row.data() + static_cast<std::size_t>(x) * oc;
            if (oc == 1) {
                dst[3 * x] = dst[3 * x + 1] = dst[3 * x + 2] = p[0];
            } else if (oc == 3) {
                std::memcpy(dst + 3 * x, p, 3);
            } else {
                // Pillow: rawmode "CMYK;I" (Adobe inverted) then cmyk2rgb.
                const int k = 255 - p[3], nk = 255 - k;
                for (int c = 0; c < 3; ++c) {
                    int v = 255 - p[c];
                    int tmp = v * nk + 128;
                    int r = nk - (((tmp >> 8) + tmp) >> 8);
                    dst[3 * x + c] = static_cast<std::uint8_t>(r < 0 ? 0 : r > 255 ? 255 : r);
                }
            }
        }
    }
    jpeg_finish_decompress(&ci);
    return std::move(out);
}

// ------------------------------------------------------------------ PNG

struct PngJob {
    png_structp png = nullptr;
    png_infop info = nullptr;
    const std::uint8_t* data = nullptr;
    std::size_t size = 0, pos = 0;
    std::string message;
    RgbImage out;
    std::vector<png_bytep> rows;
    std::vector<std::uint8_t> raw;
    ~PngJob() {
        if (png) png_destroy_read_struct(&png, info ? &info : nullptr, nullptr);
    }
};

void png_fail(png_structp png, png_const_charp msg) {
    auto* job = static_cast<PngJob*>(png_get_error_ptr(png));
    job->message = msg ? msg : "libpng error";
    png_longjmp(png, 1);
}

void png_warn(png_structp, png_const_charp) {}

void png_read_mem(png_structp png, png_bytep out, png_size_t n) {
    auto* job = static_cast<PngJob*>(png_get_io_ptr(png));
    if (job->size - job->pos < n) png_error(png, "file is truncated");
    std::memcpy(out, job->data + job->pos, n);
    job->pos += n;
}

RgbImage decode_png(const std::uint8_t* data, std::size_t size, const HeaderCheck& check, const std::string& name) {
    auto job = std::make_unique<PngJob>();
    job->data = data;
    job->size = size;
    job->png = png_create_read_struct(PNG_LIBPNG_VER_STRING, job.get(), png_fail, png_warn);
    if (!job->png) throw ImageError(name + ": cannot create a PNG reader");
    job->info = png_create_info_struct(job->png);
    if (!job->info) throw ImageError(name + ": cannot create a PNG reader");
    RgbImage& out = job->out;
    std::vector<png_bytep>& rows = job->rows;
    std::vector<std::uint8_t>& raw = job->raw;
    png_structp png = job->png;
    png_infop info = job->info;
    if (setjmp(png_jmpbuf(png))) corrupt(name, job->message);
    png_set_read_fn(png, job.get(), png_read_mem);
    png_set_user_limits(png, 0x7fffffff, 0x7fffffff);  // the sides are judged by check() (max_image_side)
    png_read_info(png, info);
    const auto w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    check(w, h, name);
    const int depth = png_get_bit_depth(png, info), type = png_get_color_type(png, info);
    // Pillow opens 16-bit grey as I;16 and converts it to RGB by clipping at 255 (not by >> 8).
    const bool grey16 = type == PNG_COLOR_TYPE_GRAY && depth == 16;
    if (type == PNG_COLOR_TYPE_PALETTE) png_set_palette_to_rgb(png);  // may add alpha from tRNS
    if (type == PNG_COLOR_TYPE_GRAY && depth < 8) png_set_expand_gray_1_2_4_to_8(png);
    if (depth == 16 && !grey16) png_set_strip_16(png);
    if (grey16) png_set_swap(png);  // host (little-endian) order, read as uint16
    png_set_interlace_handling(png);
    png_read_update_info(png, info);
    const std::size_t rowbytes = png_get_rowbytes(png, info);
    const int channels = png_get_channels(png, info);
    raw.resize(rowbytes * h);
    rows.resize(h);
    for (std::size_t y = 0; y < h; ++y) rows[y] = raw.data() + y * rowbytes;
    png_read_image(png, rows.data());
    png_read_end(png, nullptr);
    out.width = static_cast<int>(w);
    out.height = static_cast<int>(h);
    out.pixels.resize(static_cast<std::size_t>(w) * h * 3);
    for (std::size_t y = 0; y < h; ++y) {
        const std::uint8_t* src = rows[y];
        std::uint8_t* dst = out.pixels.data() + y * w * 3;
        for (std::size_t x = 0; x < w; ++x) {
            std::uint8_t r, g, b;
            if (grey16) {
                std::uint16_t v;
                std::memcpy(&v, src + 2 * x, 2);
                r = g = b = static_cast<std::uint8_t>(v > 255 ? 255 : v);
            } else if (channels <= 2) {  // grey, grey + alpha
                r = g = b = src[x * channels];
            } else {  // RGB, RGBA
                r = src[x * channels];
                g = src[x * channels + 1];
                b = src[x * channels + 2];
            }
            dst[3 * x] = r;
            dst[3 * x + 1] = g;
            dst[3 * x + 2] = b;
        }
    }
    return std::move(out);
}

}  // namespace

RgbImage decode_image(const std::uint8_t* data, std::size_t size, const HeaderCheck& check, const std::string& name) {
    static const std::uint8_t kPng[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
    if (size >= 3 && data[0] == 0xFF && data[1] == 0xD8 && data[2] == 0xFF) return decode_jpeg(data, size, check, name);
    if (size >= 8 && std::memcmp(data, kPng, 8) == 0) return decode_png(data, size, check, name);
    if (size == 0) throw ImageError(name + ": empty file, not an image");
    throw ImageError(name + ": not a recognised image file (the C++ runtime reads JPEG and PNG)");
}

}  // namespace dfma::detail
