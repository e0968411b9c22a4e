// Extractor: bundle -> verified files -> text encoder + image preprocessor + one ONNX Runtime session.
#include "dfma/extractor.hpp"

#include <algorithm>
#include <cmath>

#include "bundle.hpp"
#include "dfma/errors.hpp"
#include "onnx_session.hpp"

namespace dfma {
namespace {

constexpr int kDefaultMaxBatch = 64;  // as the Python runtime when the manifest sets no limit

// The graph for Options::graph, read from the manifest's `graphs` (kinds and precisions as the bundle
// records them; no list of file names here):
// - a `graphs` key ("portable", "ort", "int8", ...): that graph;
// - "auto": the bundle's recorded default for ONNX Runtime on the CPU (`defaults.auto.onnxruntime-cpu`,
//   else `defaults.auto.cpu`: the fastest graph that met the accuracy guard), else "fp32";
// - a precision: "fp32" = the fp32 graph of kind "portable" (standard ops), "fp32-ort" = the one of kind
//   "onnxruntime" (fused kernels), each the other's fallback; any other precision = the graph with that
//   `precision`, portable kind first.
struct GraphChoice {
    std::string key, file, reason;
};

GraphChoice graph_file(const detail::Bundle& b, const std::string& wanted) {
    const auto* graphs = b.find("graphs");
    if (!graphs || !graphs->is_object() || graphs->empty())
        throw BundleError("manifest.json: no \"graphs\" (every bundle lists its graphs)");
    auto choose = [&](const std::string& name, const std::string& reason) {
        const auto& g = (*graphs)[name];
        if (!g.is_object() || !g.contains("file") || !g["file"].is_string())
            throw BundleError("manifest.json: graphs/" + name + " has no \"file\"");
        return GraphChoice{name, g["file"].get<std::string>(), reason};
    };
    if (graphs->contains(wanted)) return choose(wanted, "asked for");
    std::string key = wanted, reason = "asked for";
    if (wanted == "auto") {
        key = "fp32";
        reason = "auto: the bundle records no cpu default; fp32";
        for (const char* scope : {"defaults/auto/onnxruntime-cpu", "defaults/auto/cpu"}) {
            const auto* rec = b.find(scope);
            if (rec && rec->is_object() && rec->contains("graph") && (*rec)["graph"].is_string() &&
                graphs->contains((*rec)["graph"].get<std::string>())) {
                const auto* why = rec->contains("reason") && (*rec)["reason"].is_string() ? &(*rec)["reason"] : nullptr;
                return choose((*rec)["graph"].get<std::string>(), "auto: " + (why ? why->get<std::string>() : std::string(scope)));
            }
        }
    }
    const bool ort_first = key == "fp32-ort";
    const std::string precision = ort_first ? "fp32" : key;
    const std::string first_kind = ort_first ? "onnxruntime" : "portable";
    std::string fallback;
    for (const auto& [name, g] : graphs->items()) {
        if (!g.is_object() || g.value("precision", "") != precision || g.value("kind", "") == "tensorrt") continue;
        if (g.value("kind", "") == first_kind) return choose(name, reason);
        if (fallback.empty()) fallback = name;
    }
    if (!fallback.empty()) return choose(fallback, reason);
    std::string have;
    for (const auto& kv : graphs->items())
        have += (have.empty() ? "" : ", ") + kv.key() + " (" + kv.value().value("precision", "?") + ")";
    throw BundleError("manifest.json: no graph \"" + wanted + "\" (the bundle has: " + have + ")");
}

int int_or(const detail::Bundle& b, const std::string& key, int fallback) {
    const auto* v = b.find(key);
    if (!v || v->is_null()) return fallback;
    if (!v->is_number_integer()) throw BundleError("manifest.json: " + key + " must be an integer, got " + v->dump());
    return v->get<int>();
}

}  // namespace

struct Extractor::Impl {
    BundleInfo info;
    TextEncoder text;
    ImagePreprocessor images;
    detail::OnnxSession session;

    Impl(BundleInfo i, TextEncoder t, const std::string& model_path, int threads)
        : info(std::move(i)), text(std::move(t)), images(info.image), session(model_path, threads) {
        // The graph's static pixel_values dims must agree with the manifest's preprocess section.
        const auto& shape = session.pixel_shape();
        const std::int64_t want[] = {-1, 1 + info.num_crops, 3, info.image.image_size, info.image.image_size};
        for (std::size_t d = 1; d < shape.size() && d < 5; ++d) {
            if (shape[d] > 0 && shape[d] != want[d])
                throw BundleError(model_path + ": the graph takes pixel_values of shape [batch, " + std::to_string(shape[1]) +
                                  ", " + std::to_string(shape[2]) + ", " + std::to_string(shape.size() > 3 ? shape[3] : -1) +
                                  ", ...] but the manifest's preprocess section gives num_crops " +
                                  std::to_string(info.num_crops) + " and image_size " + std::to_string(info.image.image_size));
        }
    }

    // Checks the crop count and encodes the text of one sample.
    Encoded encode(const Sample& s) const {
        if (static_cast<int>(s.crops.size()) > info.num_crops)
            throw InputError("crops: got " + std::to_string(s.crops.size()) + " crops, at most " +
                             std::to_string(info.num_crops) + " allowed");
        return text.encode(s.words, s.head, s.tail);
    }

    // Writes the image slots of one sample into `pixels` (slots x 3 x S x S, zeros) and `mask`.
    void load_images(const Sample& s, float* pixels, std::int64_t* mask) const {
        const std::size_t plane = 3 * static_cast<std::size_t>(info.image.image_size) * info.image.image_size;
        if (s.image) {
            images.load_into(*s.image, pixels);
            mask[0] = 1;
        }
        for (std::size_t k = 0; k < s.crops.size(); ++k) {
            if (!s.crops[k]) continue;
            images.load_into(*s.crops[k], pixels + (k + 1) * plane);
            mask[k + 1] = 1;
        }
    }

    // Runs `step` for sample i; in a batch, errors get the "samples[i]." prefix of the Python runtime.
    template <typename F>
    static void indexed(bool batch, std::size_t i, F&& step) {
        try {
            step();
        } catch (const ImageError& e) {
            if (!batch) throw;
            throw ImageError("samples[" + std::to_string(i) + "]." + e.what());
        } catch (const InputError& e) {
            if (!batch) throw;
            throw InputError("samples[" + std::to_string(i) + "]." + e.what());
        }
    }

    // Logits of every sample. All texts and crop counts are checked before anything runs; images are
    // decoded one chunk of max_batch rows at a time (bounded memory), so a bad image stops the call
    // after the chunks before it ran (nothing is returned either way).
    std::vector<std::vector<float>> logits(const std::vector<Sample>& samples, bool batch) const {
        std::vector<Encoded> enc(samples.size());
        for (std::size_t i = 0; i < samples.size(); ++i) indexed(batch, i, [&] { enc[i] = encode(samples[i]); });
        std::vector<std::vector<float>> out;
        const int slots = 1 + info.num_crops;
        const std::int64_t s = info.image.image_size;
        const std::size_t plane = 3 * static_cast<std::size_t>(s * s);
        const std::size_t chunk_max = static_cast<std::size_t>(info.max_batch > 0 ? info.max_batch : kDefaultMaxBatch);
        for (std::size_t start = 0; start < samples.size(); start += chunk_max) {
            const std::size_t rows = std::min(chunk_max, samples.size() - start);
            std::vector<float> pixels(rows * slots * plane, 0.f);
            std::vector<std::int64_t> mask(rows * slots, 0);
            for (std::size_t r = 0; r < rows; ++r)
                indexed(batch, start + r, [&] { load_images(samples[start + r], pixels.data() + r * slots * plane, mask.data() + r * slots); });
            std::size_t seq = 0;
            for (std::size_t r = 0; r < rows; ++r) seq = std::max(seq, enc[start + r].input_ids.size());
            std::vector<std::int64_t> ids(rows * seq, 0), att(rows * seq, 0);  // [PAD] = id 0
            for (std::size_t r = 0; r < rows; ++r) {
                const auto& row = enc[start + r].input_ids;
                std::copy(row.begin(), row.end(), ids.begin() + static_cast<std::ptrdiff_t>(r * seq));
                std::fill(att.begin() + static_cast<std::ptrdiff_t>(r * seq),
                          att.begin() + static_cast<std::ptrdiff_t>(r * seq + row.size()), 1);
            }
            detail::BatchInputs b;
            b.rows = static_cast<std::int64_t>(rows);
            b.seq = static_cast<std::int64_t>(seq);
            b.slots = slots;
            b.image_size = s;
            b.input_ids = ids.data();
            b.attention_mask = att.data();
            b.pixel_values = pixels.data();
            b.image_mask = mask.data();
            std::int64_t num_labels = 0;
            const auto flat = session.run(b, num_labels);
            if (num_labels != static_cast<std::int64_t>(info.labels.size()))
                throw BundleError("the graph returns " + std::to_string(num_labels) + " logits per row but the manifest has " +
                                  std::to_string(info.labels.size()) + " labels");
            for (std::size_t r = 0; r < rows; ++r)
                out.emplace_back(flat.begin() + static_cast<std::ptrdiff_t>(r * num_labels),
                                 flat.begin() + static_cast<std::ptrdiff_t>((r + 1) * num_labels));
        }
        return out;
    }

    Prediction to_prediction(std::vector<float> logits) const {
        Prediction p;
        const auto best = std::max_element(logits.begin(), logits.end());  // first maximum
        p.label_id = static_cast<int>(best - logits.begin());
        p.label = info.labels[p.label_id];
        double sum = 0.0;
        std::vector<double> e(logits.size());
        for (std::size_t i = 0; i < logits.size(); ++i) sum += e[i] = std::exp(double(logits[i]) - double(*best));
        for (double v : e) p.probabilities.push_back(static_cast<float>(v / sum));
        p.probability = p.probabilities[p.label_id];
        p.logits = std::move(logits);
        return p;
    }
};

Extractor::Extractor(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Extractor::Extractor(Extractor&&) noexcept = default;
Extractor& Extractor::operator=(Extractor&&) noexcept = default;
Extractor::~Extractor() = default;

Extractor Extractor::load(const std::string& bundle_dir, const Options& options) {
    try {
        return load_checked(bundle_dir, options);
    } catch (const nlohmann::json::exception& e) {  // a manifest field of an unexpected type
        throw BundleError(bundle_dir + "/manifest.json: unexpected structure (" + e.what() + ")");
    }
}

Extractor Extractor::load_checked(const std::string& bundle_dir, const Options& options) {
    auto bundle = detail::Bundle::open(bundle_dir);
    if (options.verify_all_files) bundle.verify_all();
    BundleInfo info;
    info.dir = bundle_dir;
    const GraphChoice graph = graph_file(bundle, options.graph);
    info.graph_key = graph.key;
    info.graph_file = graph.file;
    info.graph_reason = graph.reason;
    info.labels = bundle.labels();
    info.image = bundle.image_config();
    info.num_crops = int_or(bundle, "preprocess/num_crops", 3);
    info.max_batch = int_or(bundle, "limits/max_batch", 0);
    if (const auto* p = bundle.find("model/preset"); p && p->is_string()) info.preset = p->get<std::string>();
    if (info.num_crops < 0) throw BundleError("manifest.json: preprocess/num_crops must be >= 0");
    try {
        ImagePreprocessor check(info.image);
    } catch (const InputError& e) {
        throw BundleError(std::string("manifest.json: invalid preprocess section (") + e.what() + ")");
    }
    TextEncoder text = TextEncoder::from_opened_bundle(bundle);
    info.text = text.config();
    const std::string model = bundle.verified_path(info.graph_file);
    return Extractor(std::make_unique<Impl>(std::move(info), std::move(text), model, options.intra_op_threads));
}

Prediction Extractor::predict(const Sample& sample) const {
    return impl_->to_prediction(std::move(impl_->logits({sample}, false).at(0)));
}

std::vector<Prediction> Extractor::predict_batch(const std::vector<Sample>& samples) const {
    std::vector<Prediction> out;
    for (auto& row : impl_->logits(samples, true)) out.push_back(impl_->to_prediction(std::move(row)));
    return out;
}

std::vector<std::vector<float>> Extractor::logits_batch(const std::vector<Sample>& samples) const {
    return impl_->logits(samples, true);
}

const TextEncoder& Extractor::text_encoder() const { return impl_->text; }
const ImagePreprocessor& Extractor::image_preprocessor() const { return impl_->images; }
const BundleInfo& Extractor::info() const { return impl_->info; }
std::string Extractor::onnxruntime_version() { return detail::onnxruntime_version(); }

}  // namespace dfma
