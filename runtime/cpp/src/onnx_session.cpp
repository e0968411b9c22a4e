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

const char* const kInputs[] = {"input_ids", "attention_mask", "pixel_values", "image_mask"};
const char* const kOutputs[] = {"logits"};

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
    std::vector<std::int64_t> pixel_shape;
};

OnnxSession::OnnxSession(const std::string& model_path, int intra_op_threads) : impl_(std::make_unique<Impl>()) {
    Ort::Env& e = env();
    try {
        Ort::SessionOptions opts;
        opts.SetIntraOpNumThreads(intra_op_threads);
        opts.SetInterOpNumThreads(1);
        opts.SetExecutionMode(ExecutionMode::ORT_SEQUENTIAL);
        opts.SetGraphOptimizationLevel(GraphOptimizationLevel::ORT_ENABLE_ALL);
        impl_->session = std::make_unique<Ort::Session>(e, model_path.c_str(), opts);
        impl_->cpu = Ort::MemoryInfo::CreateCpu(OrtArenaAllocator, OrtMemTypeDefault);
    } catch (const Ort::Exception& ex) {
        throw InferenceError(model_path + ": ONNX Runtime cannot load the graph (" + ex.what() + ")");
    }
    Ort::AllocatorWithDefaultOptions alloc;
    std::set<std::string> inputs, outputs;
    for (std::size_t i = 0; i < impl_->session->GetInputCount(); ++i) {
        const std::string name = impl_->session->GetInputNameAllocated(i, alloc).get();
        inputs.insert(name);
        if (name == "pixel_values")
            impl_->pixel_shape = impl_->session->GetInputTypeInfo(i).GetTensorTypeAndShapeInfo().GetShape();
    }
    for (std::size_t i = 0; i < impl_->session->GetOutputCount(); ++i)
        outputs.insert(impl_->session->GetOutputNameAllocated(i, alloc).get());
    std::set<std::string> want(std::begin(kInputs), std::end(kInputs));
    if (inputs != want || !outputs.count(kOutputs[0])) {
        std::string got;
        for (const auto& n : inputs) got += (got.empty() ? "" : ", ") + n;
        throw BundleError(model_path + ": graph inputs are {" + got +
                          "}; the contract needs input_ids, attention_mask, pixel_values, image_mask and "
                          "output logits");
    }
}

OnnxSession::~OnnxSession() = default;

const std::vector<std::int64_t>& OnnxSession::pixel_shape() const { return impl_->pixel_shape; }

std::vector<float> OnnxSession::run(const BatchInputs& b, std::int64_t& num_labels) const {
    const std::array<std::int64_t, 2> text_shape{b.rows, b.seq};
    const std::array<std::int64_t, 5> pix_shape{b.rows, b.slots, 3, b.image_size, b.image_size};
    const std::array<std::int64_t, 2> mask_shape{b.rows, b.slots};
    const std::size_t text_n = static_cast<std::size_t>(b.rows * b.seq);
    const std::size_t pix_n = static_cast<std::size_t>(b.rows * b.slots * 3 * b.image_size * b.image_size);
    const std::size_t mask_n = static_cast<std::size_t>(b.rows * b.slots);
    try {
        auto& cpu = impl_->cpu;
        std::array<Ort::Value, 4> values{
            Ort::Value::CreateTensor<std::int64_t>(cpu, const_cast<std::int64_t*>(b.input_ids), text_n,
                                                   text_shape.data(), text_shape.size()),
            Ort::Value::CreateTensor<std::int64_t>(cpu, const_cast<std::int64_t*>(b.attention_mask), text_n,
                                                   text_shape.data(), text_shape.size()),
            Ort::Value::CreateTensor<float>(cpu, const_cast<float*>(b.pixel_values), pix_n, pix_shape.data(),
                                            pix_shape.size()),
            Ort::Value::CreateTensor<std::int64_t>(cpu, const_cast<std::int64_t*>(b.image_mask), mask_n,
                                                   mask_shape.data(), mask_shape.size())};
        auto out = impl_->session->Run(Ort::RunOptions{nullptr}, kInputs, values.data(), values.size(), kOutputs, 1);
        auto info = out[0].GetTensorTypeAndShapeInfo();
        const auto shape = info.GetShape();
        if (info.GetElementType() != ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT || shape.size() != 2 || shape[0] != b.rows)
            throw InferenceError("the graph returned logits of an unexpected type or shape");
        num_labels = shape[1];
        const float* p = out[0].GetTensorData<float>();
        return std::vector<float>(p, p + static_cast<std::size_t>(shape[0] * shape[1]));
    } catch (const Ort::Exception& ex) {
        throw InferenceError(std::string("ONNX Runtime failed to run the graph: ") + ex.what());
    }
}

}  // namespace dfma::detail
