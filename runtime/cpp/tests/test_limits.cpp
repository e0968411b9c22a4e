// The request limits of dfma/limits.hpp: files that are not regular files, PNG text / ICC chunk bombs,
// JPEGs of too many scans, header sizes, word and batch limits, the JSON depth walk; each a typed error
// naming the field (a crop's: crops[k]), and the toy extractor serving the next request with the same answer.
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>
#include <vector>

#include <sys/stat.h>
#include <unistd.h>
#include <jpeglib.h>
#include <zlib.h>

#include "check.hpp"
#include "dfma/errors.hpp"
#include "dfma/extractor.hpp"
#include "dfma/image.hpp"
#include "dfma/limits.hpp"
#include "image_file.hpp"
#include "jpeg_scans.hpp"
#include "png_chunks.hpp"
#include "request_limits.hpp"

using namespace dfma;

namespace {

void put32(std::vector<std::uint8_t>& out, std::uint32_t v) {
    for (int s = 24; s >= 0; s -= 8) out.push_back(static_cast<std::uint8_t>(v >> s));
}

void chunk(std::vector<std::uint8_t>& out, const char* kind, const std::vector<std::uint8_t>& body) {
    put32(out, static_cast<std::uint32_t>(body.size()));
    std::vector<std::uint8_t> crc_in(kind, kind + 4);
    crc_in.insert(crc_in.end(), body.begin(), body.end());
    out.insert(out.end(), kind, kind + 4);
    out.insert(out.end(), body.begin(), body.end());
    put32(out, static_cast<std::uint32_t>(crc32(0, crc_in.data(), static_cast<uInt>(crc_in.size()))));
}

std::vector<std::uint8_t> deflate(std::size_t n) {
    std::vector<std::uint8_t> in(n, 'a');
    uLongf size = compressBound(static_cast<uLong>(n));
    std::vector<std::uint8_t> out(size);
    compress2(out.data(), &size, in.data(), static_cast<uLong>(n), 9);
    out.resize(size);
    return out;
}

// A PNG whose header says w x h RGB, with `extra` chunks before its (tiny) pixel data.
std::vector<std::uint8_t> png(std::uint32_t w, std::uint32_t h, const std::vector<std::uint8_t>& extra = {}) {
    std::vector<std::uint8_t> out = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};
    std::vector<std::uint8_t> ihdr;
    put32(ihdr, w);
    put32(ihdr, h);
    ihdr.insert(ihdr.end(), {8, 2, 0, 0, 0});
    chunk(out, "IHDR", ihdr);
    out.insert(out.end(), extra.begin(), extra.end());
    chunk(out, "IDAT", deflate(64));
    chunk(out, "IEND", {});
    return out;
}

std::vector<std::uint8_t> text_chunk(const char* kind, std::size_t inflate) {
    std::vector<std::uint8_t> body = {'k', 0, 0};
    if (std::string(kind) == "iTXt") body = {'k', 0, 1, 0, 0, 0};
    const auto z = deflate(inflate);
    body.insert(body.end(), z.begin(), z.end());
    std::vector<std::uint8_t> out;
    chunk(out, kind, body);
    return out;
}

// A grey side x side progressive JPEG (libjpeg's script: 6 scans) whose last scan, an AC refinement of a
// flat image (a few end-of-band runs, ~30 bytes), is repeated until the file has `scans` scans: small,
// and each repeat makes the decoder walk every 8x8 block again (as tests/support/hostile_cases.py makes it).
std::vector<std::uint8_t> jpeg_many_scans(int scans, int side) {
    jpeg_compress_struct c{};
    jpeg_error_mgr err{};
    c.err = jpeg_std_error(&err);
    jpeg_create_compress(&c);
    unsigned char* buf = nullptr;
    unsigned long size = 0;
    jpeg_mem_dest(&c, &buf, &size);
    c.image_width = static_cast<JDIMENSION>(side);
    c.image_height = static_cast<JDIMENSION>(side);
    c.input_components = 1;
    c.in_color_space = JCS_GRAYSCALE;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, 90, TRUE);
    jpeg_simple_progression(&c);
    jpeg_start_compress(&c, TRUE);
    std::vector<JSAMPLE> row(static_cast<std::size_t>(side), 128);
    while (c.next_scanline < c.image_height) {
        JSAMPROW rows[1] = {row.data()};
        jpeg_write_scanlines(&c, rows, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    const std::vector<std::uint8_t> data(buf, buf + size);
    std::free(buf);
    std::size_t last = 0;
    for (std::size_t i = 0; i + 1 < data.size(); ++i)
        if (data[i] == 0xFF && data[i + 1] == 0xDA) last = i;
    const std::size_t eoi = data.size() - 2;
    std::vector<std::uint8_t> out(data.begin(), data.begin() + static_cast<std::ptrdiff_t>(eoi));
    for (int k = 6; k < scans; ++k) out.insert(out.end(), data.begin() + static_cast<std::ptrdiff_t>(last),
                                                data.begin() + static_cast<std::ptrdiff_t>(eoi));
    out.insert(out.end(), {0xFF, 0xD9});
    return out;
}

std::string field_of(const std::function<void()>& fn) {
    try {
        fn();
    } catch (const InputError& e) {
        return e.field();
    }
    return "(no error)";
}

ImageConfig config() {
    ImageConfig c;
    c.image_size = 8;
    c.resize_size = 10;
    return c;
}

}  // namespace

TEST(header_limits_refuse_before_decoding) {
    const ImagePreprocessor pre(config());
    CHECK_THROWS(pre.load(Image::from_encoded(png(100000, 1))), ImageError, "max_image_side 20000");
    CHECK_THROWS(pre.load(Image::from_encoded(png(15000, 500))), ImageError, "max_aspect_ratio 20");
    CHECK_THROWS(pre.load(Image::from_encoded(png(8000, 8000))), ImageError, "64000000 pixels exceeds the limit of 50000000");
    Limits small;
    small.max_resized_pixels = 150;
    CHECK_THROWS(ImagePreprocessor(config(), small).load(Image::from_encoded(png(40, 20))), ImageError, "max_resized_pixels");
    CHECK_EQ(field_of([&] { pre.load(Image::from_encoded(png(100000, 1))); }), std::string("image"));
}

TEST(ancillary_chunks_are_bounded) {
    const ImagePreprocessor pre(config());
    CHECK_THROWS(pre.load(Image::from_encoded(png(10, 10, text_chunk("zTXt", 50000000)))), ImageError, "max_chunk_bytes");
    CHECK_THROWS(pre.load(Image::from_encoded(png(10, 10, text_chunk("iCCP", 5000000)))), ImageError, "max_chunk_bytes");
    CHECK_THROWS(pre.load(Image::from_encoded(png(10, 10, text_chunk("iTXt", 2000000)))), ImageError, "max_chunk_bytes");
    std::vector<std::uint8_t> many;
    for (int i = 0; i < 12; ++i) {
        const auto c = text_chunk("zTXt", 900000);
        many.insert(many.end(), c.begin(), c.end());
    }
    CHECK_THROWS(detail::check_png_ancillary(png(10, 10, many).data(), png(10, 10, many).size(), "p", Limits{}),
                 ImageError, "max_ancillary_bytes");
    const auto ok = png(10, 10, text_chunk("zTXt", 1000));
    detail::check_png_ancillary(ok.data(), ok.size(), "p", Limits{});  // no throw
    CHECK_EQ(detail::inflated_size(deflate(5000).data(), deflate(5000).size(), 100000), std::int64_t(5000));
    CHECK_EQ(detail::inflated_size(deflate(5000).data(), deflate(5000).size(), 100), std::int64_t(100));
    const std::vector<std::uint8_t> junk = {0x78, 0x9c, 0xff, 0xff, 0xff};
    CHECK_EQ(detail::inflated_size(junk.data(), junk.size(), 100), std::int64_t(0));
}

TEST(jpeg_scans_are_counted_and_bounded) {
    const auto six = jpeg_many_scans(6, 64);
    CHECK_EQ(detail::count_jpeg_scans(six.data(), six.size(), 1000), std::int64_t(6));
    const auto hundred = jpeg_many_scans(100, 512);
    CHECK_EQ(detail::count_jpeg_scans(hundred.data(), hundred.size(), 1000), std::int64_t(100));
    CHECK_EQ(detail::count_jpeg_scans(hundred.data(), hundred.size(), 7), std::int64_t(7));  // stops at the cap
    // A JPEG inside an APP1 segment (an EXIF thumbnail) is skipped by the segment's length, not counted.
    std::vector<std::uint8_t> thumb = {0xFF, 0xD8, 0xFF, 0xE1};
    const std::size_t app = six.size() + 2;
    thumb.push_back(static_cast<std::uint8_t>(app >> 8));
    thumb.push_back(static_cast<std::uint8_t>(app & 0xFF));
    thumb.insert(thumb.end(), six.begin(), six.end());
    thumb.insert(thumb.end(), six.begin() + 2, six.end());
    CHECK_EQ(detail::count_jpeg_scans(thumb.data(), thumb.size(), 1000), std::int64_t(6));
    const std::vector<std::uint8_t> png_bytes = png(10, 10);
    CHECK_EQ(detail::count_jpeg_scans(png_bytes.data(), png_bytes.size(), 1000), std::int64_t(0));

    const ImagePreprocessor pre(config());
    pre.load(Image::from_encoded(hundred));  // max_jpeg_scans scans: decoded
    pre.load(Image::from_encoded(thumb));
    const auto bomb = jpeg_many_scans(5000, 4000);  // ~220 kB; tens of seconds to decode without the limit
    const auto start = std::chrono::steady_clock::now();
    CHECK_THROWS(pre.load(Image::from_encoded(bomb)), ImageError, "exceeds max_jpeg_scans 100");
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    CHECK(seconds < 0.5);
    CHECK_EQ(field_of([&] { pre.load(Image::from_encoded(bomb)); }), std::string("image"));
    Limits few;
    few.max_jpeg_scans = 99;
    CHECK_THROWS(ImagePreprocessor(config(), few).load(Image::from_encoded(hundred)), ImageError, "max_jpeg_scans 99");
}

TEST(only_regular_files_are_read) {
    const Limits limits;
    CHECK_THROWS(detail::read_image_file("/dev/zero", limits), ImageError, "a character device, not a regular file");
    CHECK_THROWS(detail::read_image_file("/tmp", limits), ImageError, "a folder, not a regular file");
    char fifo[] = "/tmp/dfma_test_fifo_XXXXXX";
    const int fd = mkstemp(fifo);
    ::close(fd);
    ::unlink(fifo);
    if (::mkfifo(fifo, 0600) == 0) {
        CHECK_THROWS(detail::read_image_file(fifo, limits), ImageError, "a FIFO (named pipe)");
        ::unlink(fifo);
    }
    CHECK_THROWS(detail::read_image_file(std::string(5000, 'a'), limits), ImageError, "cannot open");
    CHECK_THROWS(detail::read_image_file("/no/such/file.png", limits), ImageError, "no such image file");
    Limits tiny;
    tiny.max_image_bytes = 10;
    const std::string path = check::data_dir() + "/images/rgb.jpg";
    CHECK_THROWS(detail::read_image_file(path, tiny), ImageError, "max_image_bytes 10");
}

TEST(limits_set_by_name) {
    Limits l;
    l.set("max_image_side", "123");
    l.set("max_aspect_ratio", "2.5");
    CHECK_EQ(l.max_image_side, std::int64_t(123));
    CHECK(l.max_aspect_ratio == 2.5);
    CHECK_THROWS(l.set("max_image_side", "-1"), InputError, "positive");
    CHECK_THROWS(l.set("max_words", "2.5"), InputError, "positive int");
    CHECK_THROWS(l.set("max_nothing", "3"), InputError, "unknown limit");
    CHECK_EQ(Limits::names().size(), std::size_t(13));
}

TEST(text_limits_and_json_depth) {
    Limits l;
    l.max_words = 3;
    l.max_text_chars = 10;
    CHECK_EQ(field_of([&] { detail::check_words({"a", "b", "c", "d"}, l); }), std::string("words"));
    CHECK_EQ(field_of([&] { detail::check_words({"abcdef", "\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9"}, l); }),
             std::string("words"));
    detail::check_words({"abcde", "\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9"}, l);  // 10 code points: fine
    CHECK_EQ(field_of([&] { detail::check_text("12345678901", l); }), std::string("text"));
    CHECK_EQ(field_of([&] { detail::check_batch(4097, Limits{}); }), std::string("samples"));
    CHECK_EQ(detail::json_depth("{\"a\": [1, {\"b\": \"[[[[{{{\"}]}"), std::int64_t(3));
    CHECK_EQ(detail::json_depth("\"[[[\" [ \\\" ["), std::int64_t(1));
    CHECK_EQ(detail::json_depth("]]][["), std::int64_t(0));
}

TEST(extractor_enforces_limits_and_keeps_serving) {
    Options o;
    o.limits.max_words = 4;
    o.limits.max_batch_requests = 2;
    const auto ex = Extractor::load(check::data_dir() + "/toy_bundle", o);
    Sample good;
    good.words = {"a", "b", "c"};
    good.head = {0, 1};
    good.tail = {2, 3};
    const auto before = ex.predict(good).logits;
    Sample many = good;
    many.words = {"a", "b", "c", "d", "e"};
    CHECK_EQ(field_of([&] { ex.predict(many); }), std::string("words"));
    CHECK_EQ(field_of([&] { ex.predict_batch({good, good, good}); }), std::string("samples"));
    Sample bomb = good;
    bomb.image = Image::from_encoded(png(100000, 1));
    CHECK_EQ(field_of([&] { ex.predict_batch({good, bomb}); }), std::string("samples[1].image"));
    Sample bad_crop = good;  // the crop's error names it, not the post's image
    bad_crop.image = Image::from_file(check::data_dir() + "/images/rgb.png");
    bad_crop.crops = {std::nullopt, Image::from_encoded(png(100000, 1))};
    CHECK_EQ(field_of([&] { ex.predict(bad_crop); }), std::string("crops[1]"));
    CHECK_EQ(field_of([&] { ex.predict_batch({good, bad_crop}); }), std::string("samples[1].crops[1]"));
    CHECK_THROWS(ex.predict(bad_crop), ImageError, "crops[1]: <");
    PairsSample pairs;
    pairs.words = {"a", "b", "c"};
    pairs.entities = {{0, 1}, {2, 3}};
    pairs.crops = {Image::from_encoded(jpeg_many_scans(5000, 64))};
    CHECK_EQ(field_of([&] { ex.predict_pairs(pairs); }), std::string("crops[0]"));
    CHECK(ex.predict(good).logits == before);
}
