// What the extractor runs: the whole graph, or its stage graphs (vision: pixels -> image_features,
// text: text + image_features -> logits) with the vision stage run once per distinct image set of a
// batch (image_groups.hpp). Both give the whole graph's logits (to float rounding). Immutable after
// construction; run() may be called from many threads at once.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "onnx_session.hpp"

namespace dfma::detail {

/// One image set (slots x 3 x S x S pixels, slots mask) prepared for many text rows: with the stage graphs,
/// its features are computed once (features / feature_dims).
struct SharedImages {
    std::vector<float> pixels;
    std::vector<std::int64_t> mask;
    std::vector<float> features;              ///< 1 x feature_dims (two-stage only)
    std::vector<std::int64_t> feature_dims;
};

class GraphRunner {
public:
    /// The whole graph.
    explicit GraphRunner(std::unique_ptr<OnnxSession> whole);
    /// The stage graphs; throws BundleError when the stages do not meet at image_features (names, static
    /// dimensions).
    GraphRunner(std::unique_ptr<OnnxSession> vision, std::unique_ptr<OnnxSession> text);

    bool two_stage() const { return vision_ != nullptr; }
    /// The session that takes pixel_values (the whole graph or the vision stage), for shape checks.
    const OnnxSession& pixel_session() const { return vision_ ? *vision_ : *whole_; }
    /// Distinct image sets the vision stage ran on, summed over all calls (0 for the whole graph).
    /// For tests and tools; counted with a relaxed atomic.
    std::uint64_t vision_rows() const;

    /// Logits of one batch (rows x num_labels). With the stage graphs: the rows' image sets are grouped, the
    /// vision stage runs once per group, each row's features are gathered, then the text stage runs.
    std::vector<float> run(const BatchInputs& batch, std::int64_t& num_labels) const;

    /// Prepares one image set shared by many rows (runs the vision stage once with the stage graphs).
    SharedImages share(std::vector<float> pixels, std::vector<std::int64_t> mask, std::int64_t slots,
                       std::int64_t image_size) const;
    /// Logits of rows that all hold `images` (batch.pixel_values / image_mask / features are filled in here).
    std::vector<float> run_shared(const SharedImages& images, BatchInputs batch, std::int64_t& num_labels) const;

    GraphRunner(GraphRunner&&) noexcept;
    GraphRunner& operator=(GraphRunner&&) noexcept;
    ~GraphRunner();

private:
    std::vector<float> run_staged(const BatchInputs& batch, std::int64_t& num_labels) const;
    std::unique_ptr<OnnxSession> whole_, vision_, text_;
    struct Counter;
    std::unique_ptr<Counter> counter_;
};

}  // namespace dfma::detail
