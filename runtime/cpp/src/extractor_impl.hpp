// The state of a loaded Extractor and the steps its predict calls share (extractor.cpp: load, batches;
// predict_pairs.cpp: one sentence, many entity pairs).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "dfma/errors.hpp"
#include "dfma/extractor.hpp"
#include "graph_runner.hpp"

namespace dfma {

struct Extractor::Impl {
    BundleInfo info;
    TextEncoder text;
    ImagePreprocessor images;
    detail::GraphRunner runner;

    /// Checks that the graph's static pixel_values dims agree with the manifest's preprocess section.
    Impl(BundleInfo i, TextEncoder t, detail::GraphRunner r);

    /// Checks the word limits, encodes the text of one sample and checks its crop count (Python's order).
    Encoded encode(const Sample& s) const;
    /// Throws InputError ("crops") when more crops than num_crops are given.
    void check_crops(std::size_t count) const;
    /// Writes the image slots of one sample into `pixels` (slots x 3 x S x S, zeros) and `mask`.
    void load_images(const std::optional<Image>& image, const std::vector<std::optional<Image>>& crops, float* pixels,
                     std::int64_t* mask) const;
    /// Rows per run: the manifest's limits.max_batch, else 64.
    std::size_t chunk_rows() const;
    /// Token ids and attention mask of encoded rows [start, start + rows), right-padded with id 0.
    void pack_text(const std::vector<Encoded>& enc, std::size_t start, std::size_t rows, std::vector<std::int64_t>& ids,
                   std::vector<std::int64_t>& att, std::size_t& seq) const;
    /// Splits flat logits (rows x num_labels) into rows after checking num_labels against the labels.
    void append_rows(const std::vector<float>& flat, std::int64_t num_labels, std::size_t rows,
                     std::vector<std::vector<float>>& out) const;
    /// Logits of every sample (see Extractor::predict_batch for the order of the checks).
    std::vector<std::vector<float>> logits(const std::vector<Sample>& samples, bool batch) const;
    Prediction to_prediction(std::vector<float> logits) const;
    /// predict_pairs (predict_pairs.cpp).
    std::vector<PairPrediction> predict_pairs(const PairsSample& sample) const;

    /// Runs `step` for sample i; in a batch, errors get the "samples[i]." prefix of the Python runtime.
    template <typename F>
    static void indexed(bool batch, std::size_t i, F&& step) {
        try {
            step();
        } catch (const ImageError& e) {
            if (!batch) throw;
            const std::string at = "samples[" + std::to_string(i) + "].";
            throw ImageError(at + e.what(), at + e.field());
        } catch (const InputError& e) {
            if (!batch) throw;
            const std::string at = "samples[" + std::to_string(i) + "].";
            throw InputError(at + e.what(), at + (e.field().empty() ? std::string("sample") : e.field()));
        }
    }
};

}  // namespace dfma
