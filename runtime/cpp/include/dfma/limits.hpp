// The limits that bound the work of one request before it is done (docs/contract.md section 3.1):
// the same names, defaults and checks as the Python runtime's dfma/contract/limits.py. Each is a
// dfma_cli flag (--max-image-side N, ...). A refusal is an InputError / ImageError whose field() names
// the request field and whose message names the limit.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

namespace dfma {

struct Limits {
    std::int64_t max_image_bytes = 64LL * 1024 * 1024;  ///< size of one encoded image (file or bytes)
    std::int64_t max_image_pixels = 50000000;           ///< width x height from the header (the manifest's, if smaller)
    std::int64_t max_image_side = 20000;                ///< width and height, each
    double max_aspect_ratio = 20.0;                     ///< long side / short side
    std::int64_t max_resized_pixels = 4194304;          ///< width x height after the resize to resize_size
    std::int64_t max_chunk_bytes = 1024 * 1024;         ///< one PNG text / ICC chunk, inflated (refused at this size)
    std::int64_t max_ancillary_bytes = 8LL * 1024 * 1024;  ///< all PNG text / ICC chunks of one image, inflated
    std::int64_t max_jpeg_scans = 100;                  ///< scans (SOS markers) of one JPEG, counted before decoding
    std::int64_t max_text_chars = 100000;               ///< code points of the text, or of all words together
    std::int64_t max_words = 10000;                     ///< entries of the word list
    std::int64_t max_batch_requests = 4096;             ///< samples in one predict_batch call
    std::int64_t max_line_bytes = 1000000;              ///< one request line of dfma_cli (newline excluded)
    std::int64_t max_json_depth = 32;                   ///< nesting of [ and { in one JSON request line

    /// The field names, in declaration order (the Python names; flags are --max-image-bytes, ...).
    static const std::vector<std::string>& names();
    /// Sets the field `name` (e.g. "max_image_side") from text; throws InputError (field "limits.<name>")
    /// for an unknown name, a value that is not a number or is not positive.
    void set(const std::string& name, const std::string& value);
};

}  // namespace dfma
