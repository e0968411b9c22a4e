#include "png_chunks.hpp"

#include <algorithm>
#include <cstring>
#include <vector>

#include <zlib.h>

#include "dfma/errors.hpp"

namespace dfma::detail {
namespace {

const std::uint8_t kSignature[8] = {0x89, 'P', 'N', 'G', 0x0D, 0x0A, 0x1A, 0x0A};

std::uint32_t be32(const std::uint8_t* p) {
    return (std::uint32_t(p[0]) << 24) | (std::uint32_t(p[1]) << 16) | (std::uint32_t(p[2]) << 8) | p[3];
}

// A chunk's text or ICC payload as Pillow's PngImagePlugin reads it; `found` false for other chunks.
struct Payload {
    bool found = false, compressed = false;
    const std::uint8_t* data = nullptr;
    std::size_t size = 0;
};

const std::uint8_t* find_nul(const std::uint8_t* p, const std::uint8_t* end) {
    return static_cast<const std::uint8_t*>(std::memchr(p, 0, static_cast<std::size_t>(end - p)));
}

Payload payload(const char* kind, const std::uint8_t* body, std::size_t size) {
    const std::uint8_t* end = body + size;
    Payload out;
    auto set = [&](const std::uint8_t* from, bool compressed) {
        out.found = true;
        out.compressed = compressed;
        out.data = from;
        out.size = static_cast<std::size_t>(end - from);
        return out;
    };
    if (std::memcmp(kind, "tEXt", 4) == 0) {
        const auto* nul = find_nul(body, end);
        return set(nul ? nul + 1 : end, false);
    }
    if (std::memcmp(kind, "zTXt", 4) == 0) {
        const auto* nul = find_nul(body, end);
        if (!nul || nul + 1 >= end || nul[1] != 0) return out;  // no value, or a method other than deflate
        return set(nul + 2, true);
    }
    if (std::memcmp(kind, "iCCP", 4) == 0) {  // Pillow: s.find(b"\0") may be -1, then s[0] is the method
        const auto* nul = find_nul(body, end);
        const std::uint8_t* method = nul ? nul + 1 : body;
        if (method >= end || *method != 0) return out;
        return set(method + 1, true);
    }
    if (std::memcmp(kind, "iTXt", 4) == 0) {
        const auto* nul = find_nul(body, end);
        if (!nul || end - (nul + 1) < 2) return out;
        const std::uint8_t flag = nul[1], method = nul[2];
        const auto* lang_end = find_nul(nul + 3, end);
        if (!lang_end) return out;
        const auto* key_end = find_nul(lang_end + 1, end);
        if (!key_end || (flag && method)) return out;
        return set(key_end + 1, flag != 0);
    }
    return out;
}

}  // namespace

std::int64_t inflated_size(const std::uint8_t* data, std::size_t size, std::int64_t cap) {
    z_stream z{};
    if (inflateInit(&z) != Z_OK) return 0;
    std::vector<std::uint8_t> out(static_cast<std::size_t>(std::min<std::int64_t>(cap, 1 << 16)));
    std::int64_t produced = 0;
    z.next_in = const_cast<Bytef*>(data);
    z.avail_in = static_cast<uInt>(std::min<std::size_t>(size, 0x7fffffff));
    while (produced < cap) {
        z.next_out = out.data();
        z.avail_out = static_cast<uInt>(std::min<std::int64_t>(static_cast<std::int64_t>(out.size()), cap - produced));
        const uInt before = z.avail_out;
        const int rc = inflate(&z, Z_NO_FLUSH);
        produced += before - z.avail_out;
        if (rc == Z_STREAM_END) break;
        if (rc != Z_OK && rc != Z_BUF_ERROR) {  // corrupt before the cap: nothing (the decoders skip it too)
            produced = 0;  // as Python's zlib, which raises even when the buffer filled first
            break;
        }
        if (before == z.avail_out && z.avail_in == 0) break;  // input exhausted (a truncated stream)
        if (rc == Z_BUF_ERROR && before == z.avail_out) break;
    }
    inflateEnd(&z);
    return std::min(produced, cap);
}

void check_png_ancillary(const std::uint8_t* data, std::size_t size, const std::string& name, const Limits& limits) {
    if (size < 8 || std::memcmp(data, kSignature, 8) != 0) return;
    std::size_t pos = 8;
    std::int64_t total = 0;
    while (pos + 8 <= size) {
        const std::uint64_t length = be32(data + pos);
        char kind[5] = {0};
        std::memcpy(kind, data + pos + 4, 4);
        if (std::memcmp(kind, "IEND", 4) == 0) return;
        const std::size_t start = pos + 8;
        const std::size_t stop = static_cast<std::size_t>(std::min<std::uint64_t>(start + length, size));
        const Payload p = payload(kind, data + start, stop - start);
        if (p.found) {
            const std::int64_t cap = std::min(limits.max_chunk_bytes, limits.max_ancillary_bytes - total + 1);
            const std::int64_t n = p.compressed ? inflated_size(p.data, p.size, cap) : static_cast<std::int64_t>(p.size);
            if (p.compressed && n >= limits.max_chunk_bytes)
                throw ImageError(name + ": a " + kind + " chunk inflates to " + std::to_string(limits.max_chunk_bytes) +
                                 " bytes or more (max_chunk_bytes)");
            total += n;
            if (total > limits.max_ancillary_bytes)
                throw ImageError(name + ": text and ICC chunks inflate to more than " +
                                 std::to_string(limits.max_ancillary_bytes) + " bytes (max_ancillary_bytes)");
        }
        pos = start + static_cast<std::size_t>(length) + 4;  // size_t is 64-bit: no overflow
    }
}

}  // namespace dfma::detail
