// Extractor: bundle -> verified files -> text encoder + image preprocessor + the whole graph or its
// stage graphs (graph_runner.hpp); batches of samples.
#include "dfma/extractor.hpp"

#include <algorithm>
#include <cmath>
#include <optional>
#include <set>
#include <tuple>

#include "bundle.hpp"
#include "dfma/errors.hpp"
#include "dfma/host.hpp"
#include "extractor_impl.hpp"
#include "golden.hpp"
#include "graph_rows.hpp"
#include "manifest_digest.hpp"
#include "onnx_session.hpp"
#include "request_limits.hpp"

namespace dfma {
namespace {

constexpr int kDefaultMaxBatch = 64;  // as the Python runtime when the manifest sets no limit

// The graph for Options::graph, read from the manifest's `graphs` (kinds and precisions as the bundle
// records them; no list of file names here):
// - a `graphs` key ("portable", "ort", "int8", ...): that graph;
// - "auto": the bundle's recorded default for ONNX Runtime on the CPU (`defaults.auto.onnxruntime-cpu`,
//   else `defaults.auto.cpu`: the fastest graph that met the accuracy guard), else "fp32"; a recorded
//   default is walked by auto_ranked() instead (below: its `ranked` precisions, fp32 last);
// - a precision: "fp32" = the fp32 graph of kind "portable" (standard ops), "fp32-ort" = the one of kind
//   "onnxruntime" (fused kernels), each the other's fallback; any other precision = the graph with that
//   `precision`, portable kind first.
struct GraphChoice {
    std::string key, file, reason;
};

// The recorded `auto` default for ONNX Runtime on the CPU whose graph the bundle holds (and hashes),
// as dfma.contract.graphs.recorded_default; nullptr when there is none.
const nlohmann::json* recorded_default(const detail::Bundle& b) {
    const auto* graphs = b.find("graphs");
    for (const char* scope : {"defaults/auto/onnxruntime-cpu", "defaults/auto/cpu"}) {
        const auto* rec = b.find(scope);
        if (!rec || !rec->is_object() || !rec->contains("graph") || !(*rec)["graph"].is_string() || !graphs ||
            !graphs->is_object())
            continue;
        auto g = graphs->find((*rec)["graph"].get<std::string>());
        if (g != graphs->end() && g->is_object() && g->contains("file") && (*g)["file"].is_string() &&
            b.has_file((*g)["file"].get<std::string>()))
            return rec;
    }
    return nullptr;
}

// A bundle slimmed for some CPU classes (`slimmed/cpu_classes`, export/slim_bundle.py) refuses `auto` on a
// host of another class, in one line naming them (as dfma.contract.manifest.Manifest.check_serves).
void check_serves(const detail::Bundle& b, const std::string& cpu_class) {
    const auto* classes = b.find("slimmed/cpu_classes");
    if (!classes || !classes->is_array()) return;
    std::string listed;
    for (const auto& c : *classes) {
        if (!c.is_string()) return;
        if (c.get<std::string>() == cpu_class) return;
        listed += (listed.empty() ? "" : ", ") + c.get<std::string>();
    }
    const auto* target = b.find("slimmed/for");
    throw BundleError("manifest.json: this bundle was slimmed --for " +
                      (target && target->is_string() ? target->get<std::string>() : std::string("?")) +
                      " and serves the CPU classes [" + listed + "], not this " + cpu_class +
                      " host; use a bundle slimmed --for cpu (every x86 class) or the full bundle, or ask for a "
                      "graph by name (slimmed.cpu_classes)");
}

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
        if (const auto* rec = recorded_default(b)) {
            const auto* why = rec->contains("reason") && (*rec)["reason"].is_string() ? &(*rec)["reason"] : nullptr;
            return choose((*rec)["graph"].get<std::string>(), "auto: " + (why ? why->get<std::string>() : std::string("the bundle default")));
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

// A chosen graph with its session already open (auto_ranked opens a candidate to check it).
struct OpenedGraph {
    GraphChoice graph;
    std::unique_ptr<detail::OnnxSession> session;
};

constexpr const char* kBackend = "onnxruntime-cpu";

std::string joined(const std::vector<std::string>& parts) {
    std::string out;
    for (const auto& p : parts) out += (out.empty() ? "" : "; ") + p;
    return out;
}

// The precisions a ranked record tries on ONNX Runtime CPU, best first, fp32 last (entries of other
// backends left out), as dfma.runtime.self_check.ranked_precisions.
std::vector<std::string> ranked_precisions(const nlohmann::json& rec) {
    std::vector<std::string> order;
    auto add = [&](const std::string& p) {
        if (std::find(order.begin(), order.end(), p) == order.end()) order.push_back(p);
    };
    const auto ranked = rec.find("ranked");
    for (const auto& e : ranked != rec.end() && ranked->is_array() ? *ranked : nlohmann::json::array()) {
        if (!e.is_object() || !e.contains("precision") || !e["precision"].is_string()) continue;
        if (e.contains("backend") && !e["backend"].is_null() && e["backend"] != kBackend) continue;
        add(e["precision"].get<std::string>());
    }
    if (order.empty() && rec.contains("precision") && rec["precision"].is_string()) add(rec["precision"].get<std::string>());
    add("fp32");
    return order;
}

// Whether graph `key` must pass the golden set here before auto serves it, and why (needs_check).
std::pair<bool, std::string> needs_check(const detail::Bundle& b, const std::string& key, const std::string& precision,
                                         SelfCheck mode, const std::string& here) {
    if (mode == SelfCheck::never || precision == "fp32") return {false, ""};
    if (mode == SelfCheck::always) return {true, "self-check asked for"};
    const auto* expected = detail::expected_entry(b, key);
    std::string measured_on;
    if (expected && expected->contains("host") && (*expected)["host"].is_object()) {
        const auto& host = (*expected)["host"];
        if (host.contains("class") && host["class"].is_string()) measured_on = host["class"].get<std::string>();
    }
    if (measured_on == here) return {false, ""};
    return {true, "measured on " + (measured_on.empty() ? std::string("an unrecorded CPU class") : measured_on) +
                      ", this host is " + here};
}

// Opens the graph ONNX Runtime's CPU provider prefers for `precision` here (the next one when a graph
// does not load); nullptr and a note when none does.
std::unique_ptr<detail::OnnxSession> open_precision(const detail::Bundle& b, const std::string& precision,
                                                    const std::string& here, int threads, std::string& key,
                                                    std::string& note) {
    const auto keys = detail::ort_cpu_ordered(b, precision, here);
    if (keys.empty()) {
        std::set<std::string> have;
        for (const auto& k : detail::ort_cpu_graphs(b)) have.insert(b.at("graphs")[k].value("precision", "?"));
        std::string list;
        for (const auto& p : have) list += (list.empty() ? "" : ", ") + p;
        note = precision + ": the bundle has no " + precision + " graph that " + kBackend + " runs (it has " + list + ")";
        return nullptr;
    }
    std::vector<std::string> failures;
    for (const auto& k : keys) {
        const std::string path = b.verified_path(b.at("graphs")[k]["file"].get<std::string>());  // hash errors stop the load
        try {
            auto session = std::make_unique<detail::OnnxSession>(path, threads);
            key = k;
            return session;
        } catch (const Error& e) {  // ONNX Runtime refuses it, or its inputs are not the contract's
            failures.push_back(e.what());
        }
    }
    note = precision + ": no " + precision + " graph loads on " + kBackend + ": " + joined(failures);
    return nullptr;
}

// Whether the precision step marked graph `key` batch-dependent (dfma.runtime.self_check.batch_dependent).
bool batch_dependent(const detail::Bundle& b, const std::string& key) {
    const auto* graphs = b.find("graphs");
    if (!graphs || !graphs->is_object() || !graphs->contains(key) || !(*graphs)[key].is_object()) return false;
    const auto& g = (*graphs)[key];
    return g.contains("batch_dependent") && g["batch_dependent"].is_boolean() && g["batch_dependent"].get<bool>();
}

const char* const kBatchDependentNote =
    "batch-dependent (its answers change with the other requests in a batch); allow_batch_dependent serves it";

// "auto" with a ranked record (dfma.runtime.self_check.auto_open): the first ranked precision whose
// preferred graph opens and, where needs_check says so, passes the golden set here; fp32 last.
OpenedGraph auto_ranked(const detail::Bundle& b, const nlohmann::json& rec, const Options& options, const std::string& here) {
    const std::string reason = "auto: " + (rec.contains("reason") && rec["reason"].is_string()
                                               ? rec["reason"].get<std::string>() : std::string("the bundle default"));
    std::vector<std::string> notes;
    std::unique_ptr<detail::Golden> golden;
    bool golden_read = false;
    for (const auto& precision : ranked_precisions(rec)) {
        std::string key, note;
        auto session = open_precision(b, precision, here, options.intra_op_threads, key, note);
        if (!session) {
            notes.push_back(note);
            continue;
        }
        if (!options.allow_batch_dependent && batch_dependent(b, key)) {
            notes.push_back(key + " passed over: " + kBatchDependentNote);
            continue;
        }
        const std::string file = b.at("graphs")[key]["file"].get<std::string>();
        const auto [check, why] = needs_check(b, key, precision, options.self_check, here);
        if (!check) {
            std::vector<std::string> parts{reason};
            parts.insert(parts.end(), notes.begin(), notes.end());
            return {{key, file, joined(parts)}, std::move(session)};
        }
        if (!golden_read) {
            golden = detail::load_golden(b);
            golden_read = true;
        }
        if (!golden) {
            notes.push_back(key + ": " + why + ", and the bundle has no golden set to check it here");
            continue;
        }
        bool passed = false;
        std::string verdict;
        try {
            const auto result = detail::run_golden(*session, *golden);
            const auto* tol = b.find("golden/tolerance");
            std::tie(passed, verdict) = detail::judge(result, detail::expected_entry(b, key),
                                                     tol && tol->is_object() ? *tol : nlohmann::json::object());
        } catch (const Error& e) {  // the run failed, or returned logits of another shape
            verdict = e.what();
        }
        if (passed) {
            std::vector<std::string> parts{reason};
            parts.insert(parts.end(), notes.begin(), notes.end());
            parts.push_back(key + " passed its golden set here (" + why + ": " + verdict + ")");
            return {{key, file, joined(parts)}, std::move(session)};
        }
        notes.push_back(key + " failed its golden set here (" + why + ": " + verdict + ")");
    }
    throw BundleError("auto: no graph passes on this host: " + joined(notes));
}

// Graph `key`'s stage graphs, or nothing and why (the Python runtime's backend_choice._stage_files_of, same words).
std::optional<detail::StageFiles> stage_files_of(const detail::Bundle& b, const std::string& key, const std::string& file,
                                             std::string& why) {
    auto files = detail::stage_files(b, key);
    if (!files) {
        why = "graph '" + key + "' (" + file + ") has no stage graphs in the bundle (graphs." + key + ".stages)";
        return std::nullopt;
    }
    const auto* io = b.find("stages");
    if (!io || !io->is_object() || !io->contains("vision") || !(*io)["vision"].is_object() || !io->contains("text") ||
        !(*io)["text"].is_object()) {
        why = "graph '" + key + "' has stage files but the manifest has no stages.vision / stages.text io";
        return std::nullopt;
    }
    return files;
}

// The whole graph or its stage graphs, per Options::stages, as the Python runtime's
// backend_choice._open_graph: `auto` serves the whole graph when there are no stage graphs or they do not
// load (a file that fails its hash is never passed over). info.stages / stages_reason / the files say
// which runs. `whole` is the graph's session when the auto walk already opened it.
detail::GraphRunner open_runner(const detail::Bundle& b, const Options& options, BundleInfo& info,
                                std::unique_ptr<detail::OnnxSession> whole) {
    const char* mode = options.stages == Stages::two_stage ? "two-stage" : "auto";
    std::string why = "stages='whole' asked for";
    std::optional<detail::StageFiles> staged;
    if (options.stages != Stages::whole) staged = stage_files_of(b, info.graph_key, info.graph_file, why);
    if (options.stages == Stages::two_stage && !staged)
        throw BundleError("stages='two-stage': " + why + "; use stages='auto' or 'whole'");
    if (staged) {
        const std::string vision_path = b.verified_path(staged->vision), text_path = b.verified_path(staged->text);
        try {
            auto vision = std::make_unique<detail::OnnxSession>(vision_path, options.intra_op_threads, detail::GraphPart::vision);
            auto text = std::make_unique<detail::OnnxSession>(text_path, options.intra_op_threads, detail::GraphPart::text);
            detail::GraphRunner runner(std::move(vision), std::move(text));
            info.stages = "two-stage";
            info.stages_reason = std::string(mode) + ": the stage graphs of " + info.graph_file;
            info.vision_file = staged->vision;
            info.text_file = staged->text;
            return runner;  // the whole graph's session (if the auto walk opened one) is dropped
        } catch (const Error& e) {  // ONNX Runtime refuses a stage, or the stages are not the contract's
            if (options.stages == Stages::two_stage) throw;
            why = std::string("its stage graphs do not load (") + e.what() + ")";
        }
    }
    info.stages = "whole";
    info.stages_reason = options.stages == Stages::whole ? why : "auto: whole graph (" + why + ")";
    const std::string model = b.verified_path(info.graph_file);
    if (!whole) whole = std::make_unique<detail::OnnxSession>(model, options.intra_op_threads);
    return detail::GraphRunner(std::move(whole));
}

int int_or(const detail::Bundle& b, const std::string& key, int fallback) {
    const auto* v = b.find(key);
    if (!v || v->is_null()) return fallback;
    if (!v->is_number_integer()) throw BundleError("manifest.json: " + key + " must be an integer, got " + v->dump());
    return v->get<int>();
}

// The error of crop k's image, naming it as Python does: field "crops[k]", the message's "image: " (if any)
// replaced by "crops[k]: ".
ImageError crop_error(const ImageError& e, std::size_t k) {
    const std::string field = "crops[" + std::to_string(k) + "]";
    std::string message = e.what();
    const std::string old = e.field() + ": ";
    if (!e.field().empty() && message.compare(0, old.size(), old) == 0) message.erase(0, old.size());
    return ImageError(field + ": " + message, field);
}

}  // namespace

Extractor::Impl::Impl(BundleInfo i, TextEncoder t, detail::GraphRunner r)
    : info(std::move(i)), text(std::move(t)), images(info.image, info.limits), runner(std::move(r)) {
    const auto& pixels = runner.pixel_session();
    const auto& shape = pixels.pixel_shape();
    const std::int64_t want[] = {-1, 1 + info.num_crops, 3, info.image.image_size, info.image.image_size};
    for (std::size_t d = 1; d < shape.size() && d < 5; ++d) {
        if (shape[d] > 0 && shape[d] != want[d])
            throw BundleError(pixels.path() + ": the graph takes pixel_values of shape [batch, " + std::to_string(shape[1]) +
                              ", " + std::to_string(shape[2]) + ", " + std::to_string(shape.size() > 3 ? shape[3] : -1) +
                              ", ...] but the manifest's preprocess section gives num_crops " +
                              std::to_string(info.num_crops) + " and image_size " + std::to_string(info.image.image_size));
    }
}

void Extractor::Impl::check_crops(std::size_t count) const {
    if (static_cast<int>(count) > info.num_crops)
        throw InputError("crops: got " + std::to_string(count) + " crops, at most " + std::to_string(info.num_crops) +
                         " allowed");
}

Encoded Extractor::Impl::encode(const Sample& s) const {
    detail::check_words(s.words, info.limits);
    Encoded e = text.encode(s.words, s.head, s.tail);
    check_crops(s.crops.size());
    return e;
}

void Extractor::Impl::load_images(const std::optional<Image>& image, const std::vector<std::optional<Image>>& crops,
                                  float* pixels, std::int64_t* mask) const {
    const std::size_t plane = 3 * static_cast<std::size_t>(info.image.image_size) * info.image.image_size;
    if (image) {
        images.load_into(*image, pixels);
        mask[0] = 1;
    }
    for (std::size_t k = 0; k < crops.size(); ++k) {
        if (!crops[k]) continue;
        try {
            images.load_into(*crops[k], pixels + (k + 1) * plane);
        } catch (const ImageError& e) {
            throw crop_error(e, k);
        }
        mask[k + 1] = 1;
    }
}

std::size_t Extractor::Impl::chunk_rows() const {
    return static_cast<std::size_t>(info.max_batch > 0 ? info.max_batch : kDefaultMaxBatch);
}

void Extractor::Impl::pack_text(const std::vector<Encoded>& enc, std::size_t start, std::size_t rows,
                                std::vector<std::int64_t>& ids, std::vector<std::int64_t>& att, std::size_t& seq) const {
    seq = 0;
    for (std::size_t r = 0; r < rows; ++r) seq = std::max(seq, enc[start + r].input_ids.size());
    ids.assign(rows * seq, 0);  // [PAD] = id 0
    att.assign(rows * seq, 0);
    for (std::size_t r = 0; r < rows; ++r) {
        const auto& row = enc[start + r].input_ids;
        std::copy(row.begin(), row.end(), ids.begin() + static_cast<std::ptrdiff_t>(r * seq));
        std::fill(att.begin() + static_cast<std::ptrdiff_t>(r * seq),
                  att.begin() + static_cast<std::ptrdiff_t>(r * seq + row.size()), 1);
    }
}

void Extractor::Impl::append_rows(const std::vector<float>& flat, std::int64_t num_labels, std::size_t rows,
                                  std::vector<std::vector<float>>& out) const {
    if (num_labels != static_cast<std::int64_t>(info.labels.size()))
        throw BundleError("the graph returns " + std::to_string(num_labels) + " logits per row but the manifest has " +
                          std::to_string(info.labels.size()) + " labels");
    for (std::size_t r = 0; r < rows; ++r)
        out.emplace_back(flat.begin() + static_cast<std::ptrdiff_t>(r * num_labels),
                         flat.begin() + static_cast<std::ptrdiff_t>((r + 1) * num_labels));
}

// All texts and crop counts are checked before anything runs; images are decoded one chunk of max_batch
// rows at a time (bounded memory), so a bad image stops the call after the chunks before it ran
// (nothing is returned either way).
std::vector<std::vector<float>> Extractor::Impl::logits(const std::vector<Sample>& samples, bool batch) const {
    detail::check_batch(samples.size(), info.limits);
    std::vector<Encoded> enc(samples.size());
    for (std::size_t i = 0; i < samples.size(); ++i) indexed(batch, i, [&] { enc[i] = encode(samples[i]); });
    std::vector<std::vector<float>> out;
    const int slots = 1 + info.num_crops;
    const std::int64_t s = info.image.image_size;
    const std::size_t plane = 3 * static_cast<std::size_t>(s * s);
    const std::size_t chunk_max = chunk_rows();
    for (std::size_t start = 0; start < samples.size(); start += chunk_max) {
        const std::size_t rows = std::min(chunk_max, samples.size() - start);
        std::vector<float> pixels(rows * slots * plane, 0.f);
        std::vector<std::int64_t> mask(rows * slots, 0);
        for (std::size_t r = 0; r < rows; ++r)
            indexed(batch, start + r, [&] {
                const Sample& x = samples[start + r];
                load_images(x.image, x.crops, pixels.data() + r * slots * plane, mask.data() + r * slots);
            });
        std::vector<std::int64_t> ids, att;
        std::size_t seq = 0;
        pack_text(enc, start, rows, ids, att, seq);
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
        const auto flat = runner.run(b, num_labels);  // sets num_labels
        append_rows(flat, num_labels, rows, out);
    }
    return out;
}

Prediction Extractor::Impl::to_prediction(std::vector<float> logits) const {
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
    auto bundle = detail::Bundle::open(bundle_dir, options.key_file);
    if (options.verify_all_files) bundle.verify_all();
    if (!options.allow_unlisted_files && !detail::allow_unlisted_from_env()) bundle.check_no_unlisted();
    BundleInfo info;
    info.dir = bundle_dir;
    info.cpu_class = host_cpu_class();
    GraphChoice graph;
    std::unique_ptr<detail::OnnxSession> session;
    if (options.graph == "auto") check_serves(bundle, info.cpu_class);
    const auto* rec = options.graph == "auto" ? recorded_default(bundle) : nullptr;
    if (rec) {  // every recorded default goes through the ranked walk, as in dfma.runtime.self_check
        auto opened = auto_ranked(bundle, *rec, options, info.cpu_class);
        graph = std::move(opened.graph);
        session = std::move(opened.session);
    } else {
        graph = graph_file(bundle, options.graph);
        if (batch_dependent(bundle, graph.key)) graph.reason += std::string("; warning: ") + graph.key + " is batch-dependent";
    }
    info.graph_key = graph.key;
    info.graph_file = graph.file;
    info.graph_reason = graph.reason;
    info.labels = bundle.labels();
    info.image = bundle.image_config();
    info.limits = options.limits;
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
    auto runner = open_runner(bundle, options, info, std::move(session));
    return Extractor(std::make_unique<Impl>(std::move(info), std::move(text), std::move(runner)));
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

std::vector<PairPrediction> Extractor::predict_pairs(const PairsSample& sample) const { return impl_->predict_pairs(sample); }

const TextEncoder& Extractor::text_encoder() const { return impl_->text; }
const ImagePreprocessor& Extractor::image_preprocessor() const { return impl_->images; }
const BundleInfo& Extractor::info() const { return impl_->info; }
std::string Extractor::onnxruntime_version() { return detail::onnxruntime_version(); }

}  // namespace dfma
