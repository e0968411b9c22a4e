// Rows of a batch grouped by image set, so that the vision stage runs once per distinct set: the same
// image mask and bit-identical preprocessed pixels in every present slot (absent slots do not count;
// the graph ignores them). A 64-bit digest buckets the rows, a byte comparison confirms every match, so
// the grouping is exact whatever the digest's collisions.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

namespace dfma::detail {

/// Which group each row is in; groups are numbered in the order of their first row.
struct ImageGroups {
    std::vector<std::size_t> group_of_row;  ///< row -> group
    std::vector<std::size_t> first_row;     ///< group -> its first row (the one the vision stage runs)
    std::size_t groups() const { return first_row.size(); }
};

/// Digest of one row's image set: its mask, then the pixels of each present slot (`plane` floats each).
std::uint64_t image_set_digest(const float* row_pixels, const std::int64_t* row_mask, std::size_t slots,
                               std::size_t plane);

/// Whether two rows hold the same image set (same mask, same bytes in every present slot).
bool same_image_set(const float* a_pixels, const std::int64_t* a_mask, const float* b_pixels,
                    const std::int64_t* b_mask, std::size_t slots, std::size_t plane);

/// Groups `rows` rows of `pixels` (rows x slots x plane) and `mask` (rows x slots).
ImageGroups group_image_rows(const float* pixels, const std::int64_t* mask, std::size_t rows, std::size_t slots,
                             std::size_t plane);

}  // namespace dfma::detail
