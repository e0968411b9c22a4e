#include "graph_runner.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>

#include "dfma/errors.hpp"
#include "image_groups.hpp"

namespace dfma::detail {

struct GraphRunner::Counter {
    std::atomic<std::uint64_t> vision_rows{0};
};

namespace {

std::string dims_text(const std::vector<std::int64_t>& dims) {
    std::string out;
    for (auto d : dims) out += (out.empty() ? "" : ", ") + (d < 0 ? std::string("?") : std::to_string(d));
    return "(" + out + ")";
}

std::size_t product(const std::vector<std::int64_t>& dims) {
    std::size_t n = 1;
    for (auto d : dims) n *= static_cast<std::size_t>(d);
    return n;
}

}  // namespace

GraphRunner::GraphRunner(std::unique_ptr<OnnxSession> whole)
    : whole_(std::move(whole)), counter_(std::make_unique<Counter>()) {}

GraphRunner::GraphRunner(std::unique_ptr<OnnxSession> vision, std::unique_ptr<OnnxSession> text)
    : vision_(std::move(vision)), text_(std::move(text)), counter_(std::make_unique<Counter>()) {
    const auto& out = vision_->feature_shape();
    const auto& in = text_->feature_shape();
    bool meet = out.size() == in.size();
    for (std::size_t d = 1; meet && d < out.size(); ++d) meet = out[d] < 0 || in[d] < 0 || out[d] == in[d];
    if (!meet)
        throw BundleError(vision_->path() + " + " + text_->path() + ": the stages do not meet at " + kFeaturesName +
                          " (vision output " + dims_text(out) + ", text input " + dims_text(in) + ")");
}

GraphRunner::GraphRunner(GraphRunner&&) noexcept = default;
GraphRunner& GraphRunner::operator=(GraphRunner&&) noexcept = default;
GraphRunner::~GraphRunner() = default;

std::uint64_t GraphRunner::vision_rows() const { return counter_->vision_rows.load(std::memory_order_relaxed); }

std::vector<float> GraphRunner::run(const BatchInputs& b, std::int64_t& num_labels) const {
    return vision_ ? run_staged(b, num_labels) : whole_->run(b, num_labels);
}

std::vector<float> GraphRunner::run_staged(const BatchInputs& b, std::int64_t& num_labels) const {
    const std::size_t rows = static_cast<std::size_t>(b.rows), slots = static_cast<std::size_t>(b.slots);
    const std::size_t plane = 3 * static_cast<std::size_t>(b.image_size) * static_cast<std::size_t>(b.image_size);
    const ImageGroups groups = group_image_rows(b.pixel_values, b.image_mask, rows, slots, plane);
    const std::size_t n = groups.groups();
    // The vision stage's input: the first row of each group (the batch itself when every row differs).
    std::vector<float> unique_pixels;
    std::vector<std::int64_t> unique_mask;
    BatchInputs v = b;
    v.rows = static_cast<std::int64_t>(n);
    if (n != rows) {
        unique_pixels.resize(n * slots * plane);
        unique_mask.resize(n * slots);
        for (std::size_t g = 0; g < n; ++g) {
            const std::size_t r = groups.first_row[g];
            std::memcpy(unique_pixels.data() + g * slots * plane, b.pixel_values + r * slots * plane, slots * plane * sizeof(float));
            std::memcpy(unique_mask.data() + g * slots, b.image_mask + r * slots, slots * sizeof(std::int64_t));
        }
        v.pixel_values = unique_pixels.data();
        v.image_mask = unique_mask.data();
    }
    std::vector<std::int64_t> dims;
    const std::vector<float> features = vision_->run_vision(v, dims);
    counter_->vision_rows.fetch_add(n, std::memory_order_relaxed);
    BatchInputs t = b;
    t.feature_dims = dims;
    std::vector<float> gathered;
    if (n == rows) {
        t.image_features = features.data();  // groups in row order, one row each
    } else {
        const std::size_t per_row = product(dims);
        gathered.resize(rows * per_row);
        for (std::size_t r = 0; r < rows; ++r)
            std::memcpy(gathered.data() + r * per_row, features.data() + groups.group_of_row[r] * per_row, per_row * sizeof(float));
        t.image_features = gathered.data();
    }
    return text_->run(t, num_labels);
}

SharedImages GraphRunner::share(std::vector<float> pixels, std::vector<std::int64_t> mask, std::int64_t slots,
                                std::int64_t image_size) const {
    SharedImages s;
    s.pixels = std::move(pixels);
    s.mask = std::move(mask);
    if (!vision_) return s;
    BatchInputs v;
    v.rows = 1;
    v.slots = slots;
    v.image_size = image_size;
    v.pixel_values = s.pixels.data();
    v.image_mask = s.mask.data();
    s.features = vision_->run_vision(v, s.feature_dims);
    counter_->vision_rows.fetch_add(1, std::memory_order_relaxed);
    return s;
}

std::vector<float> GraphRunner::run_shared(const SharedImages& images, BatchInputs b, std::int64_t& num_labels) const {
    const std::size_t rows = static_cast<std::size_t>(b.rows);
    std::vector<std::int64_t> mask(rows * images.mask.size());
    for (std::size_t r = 0; r < rows; ++r) std::copy(images.mask.begin(), images.mask.end(), mask.begin() + static_cast<std::ptrdiff_t>(r * images.mask.size()));
    b.image_mask = mask.data();
    if (vision_) {  // the features, repeated per row; no pixels needed
        std::vector<float> features(rows * images.features.size());
        for (std::size_t r = 0; r < rows; ++r)
            std::copy(images.features.begin(), images.features.end(), features.begin() + static_cast<std::ptrdiff_t>(r * images.features.size()));
        b.image_features = features.data();
        b.feature_dims = images.feature_dims;
        return text_->run(b, num_labels);
    }
    std::vector<float> pixels(rows * images.pixels.size());
    for (std::size_t r = 0; r < rows; ++r)
        std::copy(images.pixels.begin(), images.pixels.end(), pixels.begin() + static_cast<std::ptrdiff_t>(r * images.pixels.size()));
    b.pixel_values = pixels.data();
    return whole_->run(b, num_labels);
}

}  // namespace dfma::detail
