#include "jpeg_scans.hpp"

#include <cstring>

#include "dfma/errors.hpp"

namespace dfma::detail {
namespace {

// A marker code that stands alone (no segment) or is entropy-coded data: stuffed 0x00, TEM, RST0-7.
bool skipped(std::uint8_t code) { return code == 0x00 || code == 0x01 || (code >= 0xD0 && code <= 0xD7); }

}  // namespace

std::int64_t count_jpeg_scans(const std::uint8_t* data, std::size_t size, std::int64_t cap) {
    if (size < 2 || data[0] != 0xFF || data[1] != 0xD8) return 0;
    std::size_t pos = 2;
    std::int64_t scans = 0;
    while (scans < cap) {
        // The next marker: skip to a 0xFF, then over fill 0xFF bytes; a code in skipped() goes on searching.
        const void* ff = pos < size ? std::memchr(data + pos, 0xFF, size - pos) : nullptr;
        if (!ff) break;
        pos = static_cast<std::size_t>(static_cast<const std::uint8_t*>(ff) - data);
        while (pos < size && data[pos] == 0xFF) ++pos;
        if (pos >= size) break;
        const std::uint8_t code = data[pos++];
        if (skipped(code)) continue;
        if (code == 0xD9) break;  // EOI
        if (code == 0xD8) continue;  // a second SOI: no segment (libjpeg refuses the file)
        if (size - pos < 2) break;
        const std::size_t length = (static_cast<std::size_t>(data[pos]) << 8) | data[pos + 1];
        if (length < 2) break;  // libjpeg: a bogus marker length
        if (code == 0xDA) ++scans;
        pos += length;
    }
    return scans;
}

void check_jpeg_scans(const std::uint8_t* data, std::size_t size, const std::string& name, const Limits& limits) {
    const std::int64_t limit = limits.max_jpeg_scans;
    if (count_jpeg_scans(data, size, limit + 1) > limit)
        throw ImageError(name + ": a JPEG of more than " + std::to_string(limit) + " scans exceeds max_jpeg_scans " +
                         std::to_string(limit) + " (each scan of a progressive JPEG decodes the whole image again)");
}

}  // namespace dfma::detail
