// dfma::Limits and the checks of request_limits.hpp (dfma/contract/limits.py in C++).
#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstdlib>

#include "dfma/errors.hpp"
#include "request_limits.hpp"

namespace dfma {

const std::vector<std::string>& Limits::names() {
    static const std::vector<std::string> kNames = {
        "max_image_bytes", "max_image_pixels", "max_image_side", "max_aspect_ratio", "max_resized_pixels",
        "max_chunk_bytes", "max_ancillary_bytes", "max_jpeg_scans", "max_text_chars", "max_words", "max_batch_requests",
        "max_line_bytes", "max_json_depth"};
    return kNames;
}

void Limits::set(const std::string& name, const std::string& value) {
    const std::string field = "limits." + name;
    char* end = nullptr;
    errno = 0;
    const double number = std::strtod(value.c_str(), &end);
    if (value.empty() || end != value.c_str() + value.size() || errno != 0 || !(number > 0) || !std::isfinite(number))
        throw InputError(field + ": must be a positive number, got '" + value + "'", field);
    if (name == "max_aspect_ratio") {
        max_aspect_ratio = number;
        return;
    }
    if (number != std::floor(number) || number > 9.0e18)
        throw InputError(field + ": must be a positive int, got '" + value + "'", field);
    const auto v = static_cast<std::int64_t>(number);
    std::int64_t* slots[] = {&max_image_bytes, &max_image_pixels, &max_image_side, nullptr, &max_resized_pixels,
                             &max_chunk_bytes, &max_ancillary_bytes, &max_jpeg_scans, &max_text_chars, &max_words,
                             &max_batch_requests, &max_line_bytes, &max_json_depth};
    const auto& all = names();
    const auto it = std::find(all.begin(), all.end(), name);
    if (it == all.end()) {
        std::string known;
        for (const auto& n : all) known += (known.empty() ? "" : ", ") + n;
        throw InputError("limits: unknown limit '" + name + "'; known: " + known, "limits");
    }
    *slots[it - all.begin()] = v;
}

namespace detail {

static std::string size_text(long long w, long long h) { return std::to_string(w) + "x" + std::to_string(h); }

void check_image_size(long long w, long long h, const std::string& name, const Limits& limits, std::int64_t max_pixels) {
    if (w <= 0 || h <= 0) throw ImageError(name + ": empty image (" + size_text(w, h) + ")");
    const long long side = std::max(w, h), shorter = std::min(w, h);
    if (side > limits.max_image_side)
        throw ImageError(name + ": " + size_text(w, h) + ": a side of " + std::to_string(side) +
                         " pixels exceeds max_image_side " + std::to_string(limits.max_image_side));
    if (static_cast<double>(side) > limits.max_aspect_ratio * static_cast<double>(shorter)) {
        char ratio[64];
        std::snprintf(ratio, sizeof ratio, "%.1f exceeds max_aspect_ratio %g", static_cast<double>(side) / shorter,
                      limits.max_aspect_ratio);
        throw ImageError(name + ": " + size_text(w, h) + ": aspect ratio " + ratio);
    }
    const std::int64_t cap = std::min<std::int64_t>(max_pixels, limits.max_image_pixels);
    if (w * h > cap)
        throw ImageError(name + ": " + size_text(w, h) + " = " + std::to_string(w * h) + " pixels exceeds the limit of " +
                         std::to_string(cap));
}

void check_resized_size(long long w, long long h, const std::string& name, const Limits& limits) {
    if (w * h > limits.max_resized_pixels)
        throw ImageError(name + ": resized to " + size_text(w, h) + " = " + std::to_string(w * h) +
                         " pixels, over max_resized_pixels " + std::to_string(limits.max_resized_pixels));
}

void check_image_bytes(long long size, const std::string& name, const Limits& limits) {
    if (size > limits.max_image_bytes)
        throw ImageError(name + ": " + std::to_string(size) + " bytes exceeds max_image_bytes " +
                         std::to_string(limits.max_image_bytes));
}

std::int64_t code_points(const std::string& text) {
    std::int64_t n = 0;
    for (unsigned char c : text) n += (c & 0xC0) != 0x80;
    return n;
}

void check_text(const std::string& text, const Limits& limits) {
    const auto n = code_points(text);
    if (n > limits.max_text_chars)
        throw InputError("text: " + std::to_string(n) + " characters exceeds max_text_chars " +
                         std::to_string(limits.max_text_chars), "text");
}

void check_words(const std::vector<std::string>& words, const Limits& limits, const std::string& field) {
    if (static_cast<std::int64_t>(words.size()) > limits.max_words)
        throw InputError(field + ": " + std::to_string(words.size()) + " words exceeds max_words " +
                         std::to_string(limits.max_words), field);
    std::int64_t chars = 0;
    for (const auto& w : words) chars += code_points(w);
    if (chars > limits.max_text_chars)
        throw InputError(field + ": " + std::to_string(chars) + " characters in all exceeds max_text_chars " +
                         std::to_string(limits.max_text_chars), field);
}

void check_batch(std::size_t count, const Limits& limits) {
    if (static_cast<std::int64_t>(count) > limits.max_batch_requests)
        throw InputError("samples: more than " + std::to_string(limits.max_batch_requests) +
                         " requests (max_batch_requests); split the batch", "samples");
}

std::int64_t json_depth(const std::string& line) {
    std::int64_t depth = 0, deepest = 0;
    bool in_string = false;
    for (std::size_t i = 0; i < line.size(); ++i) {
        const char c = line[i];
        if (in_string) {
            if (c == '\\') ++i;
            else if (c == '"') in_string = false;
        } else if (c == '"') {
            in_string = true;
        } else if (c == '[' || c == '{') {
            deepest = std::max(deepest, ++depth);
        } else if (c == ']' || c == '}') {
            --depth;
        }
    }
    return deepest;
}

}  // namespace detail
}  // namespace dfma
