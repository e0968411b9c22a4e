// The bundle's golden set (dfma/contract/golden.py) run on this host: every graph ONNX Runtime's CPU
// provider runs, measured against the eager model's logits and judged against what the graph gave on
// the host that built it (`dfma_cli verify`, and `auto` before it serves an INT8 graph here).
#pragma once

#include <string>
#include <vector>

namespace dfma {

/// One graph on the golden set (the fields of dfma.backends.golden_check.run_golden, plus the verdict).
struct GoldenResult {
    std::string graph, file, precision;  ///< manifest `graphs` key, its file and precision
    int samples = 0;                     ///< golden rows
    int nonfinite_rows = 0;              ///< rows whose logits hold NaN or Inf (each counts as a mismatch)
    double top1_agreement = 0.0;         ///< share of rows whose argmax (first maximum) equals the golden one
    double max_abs_error = 0.0;          ///< max |logit - golden|; infinite when a logit is not finite
    double mean_abs_error = 0.0;         ///< mean |logit - golden| over every logit
    double ms_per_sample = 0.0;          ///< one pass over the golden set (chunks of 8 rows), per row
    bool passed = false;                 ///< dfma.contract.golden.judge against golden.expected[graph]
    std::string reason;                  ///< judge's one-line reason, or why the graph could not run
};

/// What `verify_bundle` found.
struct VerifyReport {
    std::string bundle, cpu_class;      ///< the folder; this host's class (dfma/host.hpp)
    int golden_samples = 0;
    std::vector<GoldenResult> graphs;   ///< manifest order (keys sorted), engines and GPU-only graphs left out
    /// Whether every graph passed (false when none ran).
    bool passed() const;
};

/// Verifies every file hash of the bundle, then runs its golden set through every graph ONNX Runtime's
/// CPU provider runs (kind not "tensorrt", "cpu" in devices; a manifest without devices: every
/// non-engine graph), the raw golden inputs straight into the session. A graph that fails to load or
/// run is reported as failed with ONNX Runtime's message. Throws BundleError for a bundle without a
/// golden section, a hash mismatch or a malformed golden file.
VerifyReport verify_bundle(const std::string& bundle_dir, int intra_op_threads = 0);

}  // namespace dfma
