#include "image_groups.hpp"

#include <cstring>
#include <unordered_map>

namespace dfma::detail {
namespace {

// 64-bit multiply-xorshift over 8-byte words, four independent lanes (fast on a few MB per row).
constexpr std::uint64_t kMul = 0x9E3779B97F4A7C15ull;

std::uint64_t mix(std::uint64_t h, std::uint64_t w) {
    h ^= w + kMul + (h << 6) + (h >> 2);
    h *= 0xBF58476D1CE4E5B9ull;
    return h ^ (h >> 31);
}

std::uint64_t digest_bytes(std::uint64_t seed, const unsigned char* p, std::size_t n) {
    std::uint64_t lane[4] = {seed, seed ^ 0x94D049BB133111EBull, seed + kMul, ~seed};
    std::size_t i = 0;
    for (; i + 32 <= n; i += 32) {
        for (int k = 0; k < 4; ++k) {
            std::uint64_t w;
            std::memcpy(&w, p + i + 8 * k, 8);
            lane[k] = mix(lane[k], w);
        }
    }
    std::uint64_t h = mix(mix(lane[0], lane[1]), mix(lane[2], lane[3]));
    for (; i < n; ++i) h = mix(h, p[i]);
    return mix(h, n);
}

}  // namespace

std::uint64_t image_set_digest(const float* row_pixels, const std::int64_t* row_mask, std::size_t slots,
                               std::size_t plane) {
    std::uint64_t h = digest_bytes(slots, reinterpret_cast<const unsigned char*>(row_mask), slots * sizeof(std::int64_t));
    for (std::size_t k = 0; k < slots; ++k)
        if (row_mask[k] != 0)
            h = digest_bytes(h, reinterpret_cast<const unsigned char*>(row_pixels + k * plane), plane * sizeof(float));
    return h;
}

bool same_image_set(const float* a_pixels, const std::int64_t* a_mask, const float* b_pixels,
                    const std::int64_t* b_mask, std::size_t slots, std::size_t plane) {
    if (std::memcmp(a_mask, b_mask, slots * sizeof(std::int64_t)) != 0) return false;
    for (std::size_t k = 0; k < slots; ++k)
        if (a_mask[k] != 0 && std::memcmp(a_pixels + k * plane, b_pixels + k * plane, plane * sizeof(float)) != 0)
            return false;
    return true;
}

ImageGroups group_image_rows(const float* pixels, const std::int64_t* mask, std::size_t rows, std::size_t slots,
                             std::size_t plane) {
    ImageGroups g;
    g.group_of_row.resize(rows);
    if (rows == 1) {  // nothing to share
        g.first_row.push_back(0);
        return g;
    }
    const std::size_t row_floats = slots * plane;
    std::unordered_map<std::uint64_t, std::vector<std::size_t>> by_digest;  // digest -> groups with it
    for (std::size_t r = 0; r < rows; ++r) {
        const float* px = pixels + r * row_floats;
        const std::int64_t* m = mask + r * slots;
        auto& candidates = by_digest[image_set_digest(px, m, slots, plane)];
        bool found = false;
        for (std::size_t group : candidates) {
            const std::size_t first = g.first_row[group];
            if (same_image_set(pixels + first * row_floats, mask + first * slots, px, m, slots, plane)) {
                g.group_of_row[r] = group;
                found = true;
                break;
            }
        }
        if (found) continue;
        g.group_of_row[r] = g.first_row.size();
        candidates.push_back(g.first_row.size());
        g.first_row.push_back(r);
    }
    return g;
}

}  // namespace dfma::detail
