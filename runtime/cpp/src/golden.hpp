// The bundle's golden set (dfma/contract/golden.py): reading it, running it through one ONNX Runtime
// session, and the pass rule (`judge`) shared with the Python side.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "dfma/verify.hpp"

namespace dfma::detail {

class Bundle;
class OnnxSession;

/// The golden inputs and reference logits, checked for consistent shapes.
struct Golden {
    std::string path;
    std::int64_t rows = 0, seq = 0, slots = 0, image_size = 0, image_rows = 0, labels = 0;
    std::vector<std::int64_t> input_ids, attention_mask;  ///< rows x seq
    std::vector<std::int64_t> image_mask;                 ///< rows x slots
    std::vector<float> pixel_values;                      ///< image_rows x slots x 3 x S x S (other rows: zeros)
    std::vector<float> logits;                            ///< rows x labels
};

constexpr int kGoldenChunk = 8;  // rows per run, as dfma.contract.golden.CHUNK

/// The bundle's golden set (its file hash-verified), or nullptr when the manifest has no `golden`
/// section; BundleError naming the file and tensor when it is malformed.
std::unique_ptr<Golden> load_golden(const Bundle& b);

/// Metrics of `actual` logits against the golden ones (dfma.backends.compare.compare): a row holding
/// NaN or Inf is a mismatch and makes the errors infinite.
GoldenResult compare_logits(const std::vector<float>& reference, const std::vector<float>& actual, std::int64_t rows,
                            std::int64_t labels);

/// Runs the golden inputs through `session` in chunks of kGoldenChunk rows (no preprocessing) and
/// compares; InferenceError from ONNX Runtime, BundleError when the logits have another shape.
GoldenResult run_golden(const OnnxSession& session, const Golden& golden);

/// dfma.contract.golden.judge: (passed, one-line reason) of a result against the expected entry
/// (nullptr: none recorded) and the section's tolerance object.
std::pair<bool, std::string> judge(const GoldenResult& result, const nlohmann::json* expected,
                                   const nlohmann::json& tolerance);

/// golden.expected[key] when it is an object, else nullptr.
const nlohmann::json* expected_entry(const Bundle& b, const std::string& key);

}  // namespace dfma::detail
