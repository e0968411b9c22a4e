#include "golden.hpp"

#include <chrono>
#include <cmath>
#include <cstdio>
#include <limits>
#include <tuple>

#include "bundle.hpp"
#include "dfma/errors.hpp"
#include "dfma/host.hpp"
#include "graph_rows.hpp"
#include "manifest_digest.hpp"
#include "onnx_session.hpp"
#include "tensor_file.hpp"

namespace dfma::detail {
namespace {

constexpr const char* kGoldenFile = "golden.safetensors";
constexpr const char* kFormat = "dfma-golden";
constexpr double kErrorFactor = 1.5, kErrorFloor = 1e-4;  // dfma.contract.golden.ERROR_FACTOR / ERROR_FLOOR

// printf-style formatting of one number, e.g. ("%.3g", 0.25) as Python's f"{x:.3g}".
std::string fmt(const char* spec, double v) {
    char buf[64];
    std::snprintf(buf, sizeof buf, spec, v);
    return buf;
}

std::string shape_text(const std::vector<std::int64_t>& shape) {
    std::string s;
    for (auto d : shape) s += (s.empty() ? "" : ", ") + std::to_string(d);
    return "[" + s + "]";
}

// Index of the first maximum, numpy's argmax: the first NaN when there is one.
std::int64_t argmax(const float* row, std::int64_t n) {
    std::int64_t best = 0;
    for (std::int64_t j = 0; j < n; ++j) {
        if (std::isnan(row[j])) return j;
        if (row[j] > row[best]) best = j;
    }
    return best;
}

// A number of the tolerance object, or its default when absent or null.
double tolerance_of(const nlohmann::json& tolerance, const char* key, double fallback) {
    if (!tolerance.is_object() || !tolerance.contains(key) || tolerance[key].is_null()) return fallback;
    if (!tolerance[key].is_number())
        throw BundleError(std::string("manifest.json: golden.tolerance.") + key + " must be a number, got " + tolerance[key].dump());
    return tolerance[key].get<double>();
}

// A number of an expected entry; BundleError naming the field when absent.
double expected_of(const nlohmann::json& expected, const char* key) {
    if (!expected.contains(key) || !expected[key].is_number())
        throw BundleError(std::string("manifest.json: a golden.expected entry has no number '") + key + "'");
    return expected[key].get<double>();
}

// Checks that a tensor has `ndim` dimensions; returns its shape.
std::vector<std::int64_t> dims(const TensorFile& f, const std::string& name, std::size_t ndim) {
    const auto& shape = f.at(name).shape;
    if (shape.size() != ndim)
        throw BundleError(f.path() + ": tensor '" + name + "' has shape " + shape_text(shape) + ", expected " +
                          std::to_string(ndim) + " dimensions");
    return shape;
}

}  // namespace

std::unique_ptr<Golden> load_golden(const Bundle& b) {
    const auto* section = b.find("golden");
    if (!section || !section->is_object()) return nullptr;
    const std::string rel = section->contains("file") && (*section)["file"].is_string()
                                ? (*section)["file"].get<std::string>() : kGoldenFile;
    if (!b.has_file(rel))
        throw BundleError(b.dir() + "/manifest.json: golden.file '" + rel + "' is not listed in files");
    const TensorFile f = TensorFile::read(b.verified_path(rel));
    const auto fmt_it = f.metadata().find("format");
    if (fmt_it == f.metadata().end() || fmt_it->second != kFormat)
        throw BundleError(f.path() + ": not a " + kFormat + " file (metadata format " +
                          (fmt_it == f.metadata().end() ? std::string("missing") : "'" + fmt_it->second + "'") + ")");
    std::string missing;
    for (const char* name : {"input_ids", "attention_mask", "pixel_values", "image_mask", "logits"})
        if (!f.tensors().count(name)) missing += (missing.empty() ? "" : ", ") + std::string(name);
    if (!missing.empty()) throw BundleError(f.path() + ": tensors [" + missing + "] missing");
    auto g = std::make_unique<Golden>();
    g->path = f.path();
    const auto ids = dims(f, "input_ids", 2), mask = dims(f, "image_mask", 2), logits = dims(f, "logits", 2);
    const auto pixels = dims(f, "pixel_values", 5);
    g->rows = ids[0];
    g->seq = ids[1];
    g->slots = mask[1];
    g->image_rows = pixels[0];
    g->image_size = pixels[3];
    g->labels = logits[1];
    if (f.at("attention_mask").shape != ids || mask[0] != g->rows || logits[0] != g->rows || pixels[0] > g->rows)
        throw BundleError(f.path() + ": tensor shapes disagree on the number of rows (" + std::to_string(g->rows) + ")");
    if (pixels[1] != g->slots || pixels[2] != 3 || pixels[4] != pixels[3])
        throw BundleError(f.path() + ": tensor 'pixel_values' has shape " + shape_text(pixels) + ", expected [rows, " +
                          std::to_string(g->slots) + ", 3, S, S]");
    g->input_ids = f.i64("input_ids");
    g->attention_mask = f.i64("attention_mask");
    g->image_mask = f.i64("image_mask");
    g->pixel_values = f.f32("pixel_values");
    g->logits = f.f32("logits");
    return g;
}

GoldenResult compare_logits(const std::vector<float>& reference, const std::vector<float>& actual, std::int64_t rows,
                            std::int64_t labels) {
    GoldenResult r;
    r.samples = static_cast<int>(rows);
    const double inf = std::numeric_limits<double>::infinity();
    double sum = 0.0;
    std::int64_t same = 0;
    for (std::int64_t i = 0; i < rows; ++i) {
        const float* ref = reference.data() + i * labels;
        const float* act = actual.data() + i * labels;
        bool finite = true;
        for (std::int64_t j = 0; j < labels; ++j) {
            finite = finite && std::isfinite(act[j]);
            double d = std::fabs(double(act[j]) - double(ref[j]));
            if (!std::isfinite(d)) d = inf;
            r.max_abs_error = std::max(r.max_abs_error, d);
            sum += d;
        }
        if (!finite) ++r.nonfinite_rows;
        else if (argmax(act, labels) == argmax(ref, labels)) ++same;
    }
    const std::int64_t n = rows * labels;
    r.mean_abs_error = n ? sum / double(n) : 0.0;
    r.top1_agreement = rows ? double(same) / double(rows) : 1.0;
    return r;
}

GoldenResult run_golden(const OnnxSession& session, const Golden& g) {
    const std::size_t plane = static_cast<std::size_t>(g.slots * 3 * g.image_size * g.image_size);
    std::vector<float> out;
    out.reserve(static_cast<std::size_t>(g.rows * g.labels));
    const auto start_time = std::chrono::steady_clock::now();
    for (std::int64_t start = 0; start < g.rows; start += kGoldenChunk) {
        const std::int64_t rows = std::min<std::int64_t>(kGoldenChunk, g.rows - start);
        std::vector<float> pixels(static_cast<std::size_t>(rows) * plane, 0.f);  // rows without an image: zeros
        const std::int64_t have = std::max<std::int64_t>(0, std::min(start + rows, g.image_rows) - start);
        std::copy(g.pixel_values.begin() + static_cast<std::ptrdiff_t>(start * plane),
                  g.pixel_values.begin() + static_cast<std::ptrdiff_t>((start + have) * plane), pixels.begin());
        BatchInputs b;
        b.rows = rows;
        b.seq = g.seq;
        b.slots = g.slots;
        b.image_size = g.image_size;
        b.input_ids = g.input_ids.data() + start * g.seq;
        b.attention_mask = g.attention_mask.data() + start * g.seq;
        b.pixel_values = pixels.data();
        b.image_mask = g.image_mask.data() + start * g.slots;
        std::int64_t labels = 0;
        const auto logits = session.run(b, labels);
        if (labels != g.labels)
            throw BundleError("logits shape [" + std::to_string(rows) + ", " + std::to_string(labels) + "] != reference [" +
                              std::to_string(rows) + ", " + std::to_string(g.labels) + "] of " + g.path);
        out.insert(out.end(), logits.begin(), logits.end());
    }
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start_time).count();
    GoldenResult r = compare_logits(g.logits, out, g.rows, g.labels);
    r.ms_per_sample = g.rows ? std::round(1e6 * seconds / double(g.rows)) / 1e3 : 0.0;  // round(x, 3) of ms
    return r;
}

std::pair<bool, std::string> judge(const GoldenResult& result, const nlohmann::json* expected,
                                   const nlohmann::json& tolerance) {
    if (!expected) return {false, "no expected result recorded for this graph"};
    const double drop = tolerance_of(tolerance, "agreement_drop", 0.0);
    const double want_agree = expected_of(*expected, "top1_agreement"), want_err = expected_of(*expected, "max_abs_error");
    const double need_agree = want_agree - drop - 1e-9;
    const double bound = want_err * tolerance_of(tolerance, "error_factor", kErrorFactor) +
                         tolerance_of(tolerance, "error_floor", kErrorFloor);
    const double agree = result.top1_agreement, err = result.max_abs_error;
    if (!std::isfinite(err)) return {false, "non-finite logits"};
    if (agree < need_agree)
        return {false, "agreement " + fmt("%.3f", agree) + " < " + fmt("%.3f", need_agree) + " (expected " + fmt("%.3f", want_agree) + ")"};
    if (err > bound)
        return {false, "max error " + fmt("%.3g", err) + " > " + fmt("%.3g", bound) + " (expected " + fmt("%.3g", want_err) + ")"};
    return {true, "agreement " + fmt("%.3f", agree) + ", max error " + fmt("%.3g", err) + " (bound " + fmt("%.3g", bound) + ")"};
}

const nlohmann::json* expected_entry(const Bundle& b, const std::string& key) {
    const auto* expected = b.find("golden/expected");
    if (!expected || !expected->is_object()) return nullptr;
    auto it = expected->find(key);
    return it != expected->end() && it->is_object() ? &*it : nullptr;
}

}  // namespace dfma::detail

namespace dfma {

bool VerifyReport::passed() const {
    if (graphs.empty()) return false;
    for (const auto& g : graphs)
        if (!g.passed) return false;
    return true;
}

namespace {

// Verifies the bundle and runs the golden set on each graph (nlohmann exceptions escape to the caller).
VerifyReport verify_checked(const std::string& dir, int threads) {
    const auto b = detail::Bundle::open(dir);
    b.verify_all();
    if (!detail::allow_unlisted_from_env()) b.check_no_unlisted();
    const auto golden = detail::load_golden(b);
    if (!golden)
        throw BundleError(dir + "/manifest.json: no \"golden\" section (a bundle exported before golden sets; "
                                "re-export it to verify it here)");
    VerifyReport report;
    report.bundle = dir;
    report.cpu_class = host_cpu_class();
    report.golden_samples = static_cast<int>(golden->rows);
    const auto* tol = b.find("golden/tolerance");
    const nlohmann::json tolerance = tol && tol->is_object() ? *tol : nlohmann::json::object();
    for (const auto& key : detail::ort_cpu_graphs(b)) {
        const auto& entry = b.at("graphs")[key];
        GoldenResult r;
        bool ran = false;
        try {
            const detail::OnnxSession session(b.verified_path(entry.at("file").get<std::string>()), threads);
            r = detail::run_golden(session, *golden);
            ran = true;
        } catch (const Error& e) {  // a graph that cannot load or run (or returns another shape) fails; the rest go on
            r = GoldenResult{};
            r.samples = static_cast<int>(golden->rows);
            r.max_abs_error = r.mean_abs_error = std::numeric_limits<double>::infinity();
            r.reason = e.what();
        }
        if (ran) std::tie(r.passed, r.reason) = detail::judge(r, detail::expected_entry(b, key), tolerance);
        r.graph = key;
        r.file = entry.at("file").get<std::string>();
        r.precision = entry.value("precision", "");
        report.graphs.push_back(std::move(r));
    }
    if (report.graphs.empty())
        throw BundleError(dir + "/manifest.json: no graph that ONNX Runtime's CPU provider runs");
    return report;
}

}  // namespace

VerifyReport verify_bundle(const std::string& bundle_dir, int intra_op_threads) {
    try {
        return verify_checked(bundle_dir, intra_op_threads);
    } catch (const nlohmann::json::exception& e) {
        throw BundleError(bundle_dir + "/manifest.json: unexpected structure (" + e.what() + ")");
    }
}

}  // namespace dfma
