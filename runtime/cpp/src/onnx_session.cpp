#include "onnx_session.hpp"

// The API table is fetched by hand (ORT_API_MANUAL_INIT) so that a library older than the headers
// gives a clear error instead of a crash at start-up.
#define ORT_API_MANUAL_INIT
#include <onnxruntime_cxx_api.h>

#include <algorithm>
#include <array>
#include <mutex>
#include <set>

#include "dfma/errors.hpp"

namespace dfma::detail {
namespace {

void init_api() {
    static std::once_flag once;
    static std::string failure;
    std::call_once(once, [] {
        const OrtApiBase* base = OrtGetApiBase();
        const OrtApi* api = base ? base->GetApi(ORT_API_VERSION) : nullptr;
        if (!api) {
            failure = std::string("the ONNX Runtime library (") + (base ? base->GetVersionString() : "?") +
                      ") does not provide C API version " + std::to_string(ORT_API_VERSION) +
                      " the runtime was built with; use a library at least as new as the headers";
            return;
        }
        Ort::InitApi(api);
    });
    if (!failure.empty()) throw InferenceError(failure);
}

Ort::Env& env() {
    init_api();
    // Never destroyed: sessions held in static objects may outlive any destruction order we pick.
    static Ort::Env* e = new Ort::Env(ORT_LOGGING_LEVEL_ERROR, "dfma");
    return *e;
}

}  // namespace

std::string onnxruntime_version() {
    init_api();
    return OrtGetApiBase()->GetVersionString();
}

struct OnnxSession::Impl {
    std::unique_ptr<Ort::Session> session;  // Run is thread-safe; the pointer keeps the Impl const-usable
    Ort::MemoryInfo cpu{nullptr};
    GraphPart part = GraphPart::whole;
    std::string path;
    std::vector<std::int64_t> pixel_shape, feature_shape;
};

namespace {

struct PartIo {
    std::vector<const char*> inputs;
    const char* output;
    const char* words;  // how an error names the part
};

PartIo io_of(GraphPart part) {
    switch (part) {
        case GraphPart::vision: return {{"pixel_values", "image_mask"}, kFeaturesName, "the vision stage"};
        case GraphPart::text:
            return {{"input_ids", "attention_mask", kFeaturesName, "image_mask"}, "logits", "the text stage"};
        case GraphPart::whole: break;
    }
    return {{"input_ids", "attention_mask", "pixel_values", "image_mask"}, "logits", "the contract"};
}

std::string listed(const std::vector<const char*>& names) {
    std::string out;
    for (const char* n : names) out += (out.empty() ? "" : ", ") + std::string(n);
    return out;
}

std::vector<std::int64_t> shape_of(const Ort::TypeInfo& info) { return info.GetTensorTypeAndShapeInfo().GetShape(); }

std::size_t product(const std::vector<std::int64_t>& dims, std::int64_t rows) {
    std::size_t n = static_cast<std::size_t>(rows);
    for (auto d : dims) n *= static_cast<std::size_t>(d);
    return n;
}

}  // namespace

OnnxSession::OnnxSession(const std::string& model_path, int intra_op_threads, GraphPart part)
    : impl_(std::make_unique<Impl>()) {
    impl_->part = part;
    impl_->path = model_path;
    Ort::Env& e = env();
    try {
        Ort::SessionOptions opts;
        opts.SetIntraOpNumThreads(intra_op_threads);
        opts.SetInterOpNumThreads(1);
        opts.SetExecutionMode(ExecutionMode::ORT_SEQUENTIAL);
        opts.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
        // The stage graphs have two thread pools on the same cores: the idle one must not spin while the
        // other computes (measured in Python on base, 2 cores: a one-pair post 292 ms spinning, 203 ms not).
        if (part != GraphPart::whole) opts.AddConfigEntry("session.intra_op.allow_spinning", "0");
        impl_->session = std::make_unique<Ort::Session>(e, model_path.c_str(), opts);
        impl_->cpu = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
    } catch (const Ort::Exception& ex) {
        throw InferenceError(model_path + ": ONNX Runtime cannot load the graph (" + ex.what() + ")");
    }
    const PartIo io = io_of(part);
    Ort::AllocatorWithDefaultOptions alloc;
    std::set<std::string> inputs, outputs;
    for (std::size_t i = 0; i < impl_->session->GetInputCount(); ++i) {
        const std::string name = impl_->session->GetInputNameAllocated(i, alloc).get();
        inputs.insert(name);
        if (name == "pixel_values") impl_->pixel_shape = shape_of(impl_->session->GetInputTypeInfo(i));
        if (name == kFeaturesName) impl_->feature_shape = shape_of(impl_->session->GetInputTypeInfo(i));
    }
    for (std::size_t i = 0; i < impl_->session->GetOutputCount(); ++i) {
        const std::string name = impl_->session->GetOutputNameAllocated(i, alloc).get();
        outputs.insert(name);
        if (name == kFeaturesName && part == GraphPart::vision)
            impl_->feature_shape = shape_of(impl_->session->GetOutputTypeInfo(i));
    }
    const std::set<std::string> want(io.inputs.begin(), io.inputs.end());
    if (inputs != want || !outputs.count(io.output)) {
        std::string got, out;
        for (const auto& n : inputs) got += (got.empty() ? "" : ", ") + n;
        for (const auto& n : outputs) out += (out.empty() ? "" : ", ") + n;
        throw BundleError(model_path + ": graph inputs are {" + got + "} and outputs {" + out + "}; " + io.words +
                          " needs inputs " + listed(io.inputs) + " and output " + io.output);
    }
    if (part != GraphPart::whole && impl_->feature_shape.size() != 4)
        throw BundleError(model_path + ": " + kFeaturesName + " has rank " + std::to_string(impl_->feature_shape.size()) +
                          "; the stages need (batch, slots, tokens, hidden)");
}

OnnxSession::~OnnxSession() = default;

GraphPart OnnxSession::part() const { return impl_->part; }
const std::string& OnnxSession::path() const { return impl_->path; }
const std::vector<std::int64_t>& OnnxSession::pixel_shape() const { return impl_->pixel_shape; }
const std::vector<std::int64_t>& OnnxSession::feature_shape() const { return impl_->feature_shape; }

std::vector<float> OnnxSession::run(const BatchInputs& b, std::int64_t& num_labels) const {
    if (impl_->part == GraphPart::vision) throw InferenceError(impl_->path + ": the vision stage returns features, not logits");
    const bool text = impl_->part == GraphPart::text;
    const std::array<std::int64_t, 2> text_shape{b.rows, b.seq};
    const std::array<std::int64_t, 5> pix_shape{b.rows, b.slots, 3, b.image_size, b.image_size};
    const std::array<std::int64_t, 2> mask_shape{b.rows, b.slots};
    std::vector<std::int64_t> feat_shape{b.rows};
    feat_shape.insert(feat_shape.end(), b.feature_dims.begin(), b.feature_dims.end());
    const std::size_t text_n = static_cast<std::size_t>(b.rows * b.seq);
    const std::size_t pix_n = static_cast<std::size_t>(b.rows * b.slots * 3 * b.image_size * b.image_size);
    const std::size_t mask_n = static_cast<std::size_t>(b.rows * b.slots);
    const PartIo io = io_of(impl_->part);
    try {
        auto& cpu = impl_->cpu;
        std::array<Ort::Value, 4> values{
            Ort::Value::CreateTensor<std::int64_t>(cpu, const_cast<std::int64_t*>(b.input_ids), text_n,
                                                   text_shape.data(), text_shape.size()),
            Ort::Value::CreateTensor<std::int64_t>(cpu, const_cast<std::int64_t*>(b.attention_mask), text_n,
                                                   text_shape.data(), text_shape.size()),
            text ? Ort::Value::CreateTensor<float>(cpu, const_cast<float*>(b.image_features), product(b.feature_dims, b.rows),
                                                   feat_shape.data(), feat_shape.size())
                 : Ort::Value::CreateTensor<float>(cpu, const_cast<float*>(b.pixel_values), pix_n, pix_shape.data(),
                                                   pix_shape.size()),
            Ort::Value::CreateTensor<std::int64_t>(cpu, const_cast<std::int64_t*>(b.image_mask), mask_n,
                                                   mask_shape.data(), mask_shape.size())};
        const char* output = io.output;
        auto out = impl_->session->Run(Ort::RunOptions{nullptr}, io.inputs.data(), values.data(), values.size(), &output, 1);
        auto info = out[0].GetTensorTypeAndShapeInfo();
        const auto shape = info.GetShape();
        if (info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || shape.size() != 2 || shape[0] != b.rows)
            throw InferenceError(impl_->path + ": the graph returned logits of an unexpected type or shape");
        num_labels = shape[1];
        const float* p = out[0].GetTensorData<float>();
        return std::vector<float>(p, p + static_cast<std::size_t>(shape[0] * shape[1]));
    } catch (const Ort::Exception& ex) {
        throw InferenceError(std::string("ONNX Runtime failed to run the graph: ") + ex.what());
    }
}

std::vector<float> OnnxSession::run_vision(const BatchInputs& b, std::vector<std::int64_t>& dims) const {
    if (impl_->part != GraphPart::vision) throw InferenceError(impl_->path + ": not a vision stage");
    const std::array<std::int64_t, 5> pix_shape{b.rows, b.slots, 3, b.image_size, b.image_size};
    const std::array<std::int64_t, 2> mask_shape{b.rows, b.slots};
    const std::size_t pix_n = static_cast<std::size_t>(b.rows * b.slots * 3 * b.image_size * b.image_size);
    const std::size_t mask_n = static_cast<std::size_t>(b.rows * b.slots);
    const PartIo io = io_of(impl_->part);
    try {
        auto& cpu = impl_->cpu;
        std::array<Ort::Value, 2> values{
            Ort::Value::CreateTensor<float>(cpu, const_cast<float*>(b.pixel_values), pix_n, pix_shape.data(), pix_shape.size()),
            Ort::Value::CreateTensor<std::int64_t>(cpu, const_cast<std::int64_t*>(b.image_mask), mask_n,
                                                   mask_shape.data(), mask_shape.size())};
        const char* output = io.output;
        auto out = impl_->session->Run(Ort::RunOptions{nullptr}, io.inputs.data(), values.data(), values.size(), &output, 1);
        auto info = out[0].GetTensorTypeAndShapeInfo();
        const auto shape = info.GetShape();
        if (info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || shape.size() != 4 || shape[0] != b.rows ||
            shape[1] != b.slots)
            throw InferenceError(impl_->path + ": the vision stage returned " + kFeaturesName +
                                 " of an unexpected type or shape");
        dims.assign(shape.begin() + 1, shape.end());
        const float* p = out[0].GetTensorData<float>();
        return std::vector<float>(p, p + product(dims, b.rows));
    } catch (const Ort::Exception& ex) {
        throw InferenceError(std::string("ONNX Runtime failed to run the vision stage: ") + ex.what());
    }
}

}  // namespace dfma::detail
