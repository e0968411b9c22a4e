// One ONNX Runtime session over a DFMA graph (contract section 1 inputs/outputs). Run() is
// thread-safe (ONNX Runtime guarantees it for one session), so the session is shared by all callers.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

namespace dfma::detail {

/// Borrowed views of one batch of model inputs.
struct BatchInputs {
    std::int64_t rows = 0, seq = 0, slots = 0, image_size = 0;
    const std::int64_t* input_ids = nullptr;       ///< rows x seq
    const std::int64_t* attention_mask = nullptr;  ///< rows x seq
    const float* pixel_values = nullptr;           ///< rows x slots x 3 x S x S
    const std::int64_t* image_mask = nullptr;      ///< rows x slots
};

class OnnxSession {
public:
    /// Loads the graph; throws InferenceError when ONNX Runtime refuses it, BundleError when its inputs
    /// or outputs are not the contract's.
    OnnxSession(const std::string& model_path, int intra_op_threads);
    ~OnnxSession();
    OnnxSession(const OnnxSession&) = delete;
    OnnxSession& operator=(const OnnxSession&) = delete;

    /// Static shape of the graph's pixel_values input (-1 for dynamic dimensions), e.g. {-1, 4, 3, 224, 224}.
    const std::vector<std::int64_t>& pixel_shape() const;

    /// Runs the graph; returns logits (rows x num_labels, row-major) and sets `num_labels`.
    std::vector<float> run(const BatchInputs& batch, std::int64_t& num_labels) const;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

/// Version string of the loaded ONNX Runtime library. Throws InferenceError if the library is older
/// than the headers the runtime was built with.
std::string onnxruntime_version();

}  // namespace dfma::detail
