// One ONNX Runtime session over a DFMA graph: the whole graph (contract section 1 inputs/outputs) or one
// of its stage graphs (the manifest's `stages`: vision = pixels -> image_features, text = text +
// image_features -> logits). Run() is thread-safe (ONNX Runtime guarantees it for one session), so the
// session is shared by all callers.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace dfma::detail {

/// Which graph a session holds; it fixes the inputs and outputs the session checks at load.
enum class GraphPart {
    whole,   ///< input_ids, attention_mask, pixel_values, image_mask -> logits
    vision,  ///< pixel_values, image_mask -> image_features
    text,    ///< input_ids, attention_mask, image_features, image_mask -> logits
};

/// The tensor between the two stages (dfma.contract.io_spec.FEATURES_NAME).
constexpr const char* kFeaturesName = "image_features";

/// Borrowed views of one batch of model inputs (a part reads only its own inputs).
struct BatchInputs {
    std::int64_t rows = 0, seq = 0, slots = 0, image_size = 0;
    const std::int64_t* input_ids = nullptr;       ///< rows x seq
    const std::int64_t* attention_mask = nullptr;  ///< rows x seq
    const float* pixel_values = nullptr;           ///< rows x slots x 3 x S x S
    const std::int64_t* image_mask = nullptr;      ///< rows x slots
    const float* image_features = nullptr;         ///< rows x feature_dims (text stage)
    std::vector<std::int64_t> feature_dims;        ///< image_features' shape after the batch axis
};

class OnnxSession {
public:
    /// Loads the graph; throws InferenceError when ONNX Runtime refuses it, BundleError when its inputs
    /// or outputs are not those of `part`.
    OnnxSession(const std::string& model_path, int intra_op_threads, GraphPart part = GraphPart::whole);
    ~OnnxSession();
    OnnxSession(const OnnxSession&) = delete;
    OnnxSession& operator=(const OnnxSession&) = delete;

    GraphPart part() const;
    const std::string& path() const;
    /// Static shape of the graph's pixel_values input (-1 for dynamic dimensions), e.g. {-1, 4, 3, 224, 224};
    /// empty for the text stage.
    const std::vector<std::int64_t>& pixel_shape() const;
    /// Static shape of image_features (the vision stage's output, the text stage's input); empty for the
    /// whole graph.
    const std::vector<std::int64_t>& feature_shape() const;

    /// Runs the whole graph or the text stage; returns logits (rows x num_labels, row-major) and sets
    /// `num_labels`.
    std::vector<float> run(const BatchInputs& batch, std::int64_t& num_labels) const;
    /// Runs the vision stage on pixel_values and image_mask; returns image_features (rows x dims,
    /// row-major) and sets `dims` to its shape after the batch axis.
    std::vector<float> run_vision(const BatchInputs& batch, std::vector<std::int64_t>& dims) const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/// Version string of the loaded ONNX Runtime library. Throws InferenceError if the library is older
/// than the headers the runtime was built with.
std::string onnxruntime_version();

}  // namespace dfma::detail
