// The golden set: the safetensors-layout reader (every malformed file a BundleError naming the file and
// the tensor), the host CPU class, `verify_bundle` and the `auto` walk over ranked graphs on the toy bundle
// with a golden file built here from the toy graph's own outputs.
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <random>

#include <unistd.h>

#include "bundle_copy.hpp"
#include "check.hpp"
#include "dfma/errors.hpp"
#include "dfma/extractor.hpp"
#include "dfma/host.hpp"
#include "dfma/verify.hpp"
#include "golden.hpp"
#include "onnx_session.hpp"
#include "digests.hpp"
#include "tensor_file.hpp"

namespace fs = std::filesystem;
using dfma::BundleError;
using dfma::detail::TensorFile;
using nlohmann::json;

namespace {

// One tensor to write: dtype code, shape, raw little-endian bytes (the test machine is little-endian).
struct Blob {
    std::string dtype;
    std::vector<std::int64_t> shape;
    std::string bytes;
};

template <typename T>
Blob blob(const std::string& dtype, std::vector<std::int64_t> shape, const std::vector<T>& values) {
    return {dtype, std::move(shape), std::string(reinterpret_cast<const char*>(values.data()), values.size() * sizeof(T))};
}

// The layout tensor_file.py writes: u64 LE header length, JSON header (8-aligned), data.
std::string tensor_bytes(const std::vector<std::pair<std::string, Blob>>& tensors, const json& metadata) {
    json header = {{"__metadata__", metadata}};
    std::string data;
    for (const auto& [name, b] : tensors) {
        header[name] = {{"dtype", b.dtype}, {"shape", b.shape}, {"data_offsets", {data.size(), data.size() + b.bytes.size()}}};
        data += b.bytes;
    }
    std::string text = header.dump();
    text.append((8 - text.size() % 8) % 8, ' ');
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((static_cast<std::uint64_t>(text.size()) >> (8 * i)) & 0xff);
    return out + text + data;
}

// A raw file from a header JSON text and data bytes (for malformed headers).
std::string raw_file(const std::string& header, const std::string& data, std::uint64_t length_field = ~0ull) {
    if (length_field == ~0ull) length_field = header.size();
    std::string out(8, '\0');
    for (int i = 0; i < 8; ++i) out[i] = static_cast<char>((length_field >> (8 * i)) & 0xff);
    return out + header + data;
}

std::string temp_file(const std::string& name, const std::string& content) {
    const std::string path = (fs::temp_directory_path() / ("dfma_golden_" + std::to_string(::getpid()) + "_" + name)).string();
    std::ofstream(path, std::ios::binary) << content;
    return path;
}

// Sets (or, with nullptr, unsets) DFMA_CPU_CLASS for the scope.
class CpuClassOverride {
public:
    explicit CpuClassOverride(const char* value) {
        if (const char* old = std::getenv("DFMA_CPU_CLASS")) old_ = old, had_ = true;
        if (value) ::setenv("DFMA_CPU_CLASS", value, 1);
        else ::unsetenv("DFMA_CPU_CLASS");
    }
    ~CpuClassOverride() {
        if (had_) ::setenv("DFMA_CPU_CLASS", old_.c_str(), 1);
        else ::unsetenv("DFMA_CPU_CLASS");
    }

private:
    std::string old_;
    bool had_ = false;
};

}  // namespace

// ------------------------------------------------------------------ tensor file reader

TEST(tensor_file_reads_what_the_python_writer_writes) {
    const std::string path = temp_file("valid.safetensors",
                                       tensor_bytes({{"x", blob<float>("F32", {2, 3}, {1, 2, 3, 4, 5, -6.5f})},
                                                     {"ids", blob<std::int64_t>("I64", {2}, {7, -(1ll << 40)})},
                                                     {"scalar", blob<std::int64_t>("I64", {}, {42})},
                                                     {"empty", blob<float>("F32", {0, 4}, {})}},
                                                    {{"format", "dfma-golden"}}));
    const auto f = TensorFile::read(path);
    CHECK_EQ(f.metadata().at("format"), std::string("dfma-golden"));
    CHECK_EQ(f.tensors().size(), std::size_t(4));
    CHECK(f.at("x").shape == (std::vector<std::int64_t>{2, 3}));
    CHECK(f.f32("x") == (std::vector<float>{1, 2, 3, 4, 5, -6.5f}));
    CHECK(f.i64("ids") == (std::vector<std::int64_t>{7, -(1ll << 40)}));
    CHECK(f.i64("scalar") == (std::vector<std::int64_t>{42}));
    CHECK(f.f32("empty").empty());
    CHECK_THROWS(f.f32("ids"), BundleError, "valid.safetensors: tensor 'ids' has dtype I64, expected F32");
    CHECK_THROWS(f.at("nope"), BundleError, "no tensor 'nope'");
    fs::remove(path);
}

TEST(tensor_file_malformed_headers_are_bundle_errors) {
    const std::string ok_header = R"({"x":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}})";
    const std::string data(8, '\0');
    struct Case {
        const char* name;
        std::string content, needle;
    };
    const std::vector<Case> cases = {
        {"short", std::string(5, '\0'), "too short for a tensor file"},
        {"past_end", raw_file(ok_header, data, ok_header.size() + 100),
         "header length " + std::to_string(ok_header.size() + 100) + " exceeds the file (" +
             std::to_string(8 + ok_header.size() + 8) + " bytes)"},
        {"huge_length", raw_file(ok_header, data, ~0ull - 1), "header length 18446744073709551614 exceeds the file"},
        {"over_1mib", raw_file(std::string((1u << 20) + 8, ' '), "x"),
         "header length 1048584 exceeds the file (1048593 bytes) or the 1 MiB limit"},
        {"not_json", raw_file("{nope", ""), "unreadable header"},
        {"not_object", raw_file("[1, 2]", ""), "header is not a JSON object"},
        {"offsets_past_end", raw_file(R"({"x":{"dtype":"F32","shape":[4],"data_offsets":[0,16]}})", data),
         "tensor 'x': shape [4] / offsets [0,16] do not fit the file (8 data bytes, F32)"},
        {"unknown_dtype", raw_file(R"({"x":{"dtype":"F64","shape":[1],"data_offsets":[0,8]}})", data),
         "tensor 'x': unknown dtype F64"},
        {"shape_offset_mismatch", raw_file(R"({"x":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}})", data),
         "tensor 'x': shape [3] / offsets [0,8] do not fit"},
        {"negative_dim", raw_file(R"({"x":{"dtype":"F32","shape":[-2],"data_offsets":[0,8]}})", data),
         "tensor 'x': shape [-2] / offsets"},
        {"overflowing_shape", raw_file(R"({"x":{"dtype":"I64","shape":[4294967296,4294967296],"data_offsets":[0,0]}})", ""),
         "tensor 'x': shape [4294967296, 4294967296] / offsets [0,0] do not fit"},
        {"start_after_end", raw_file(R"({"x":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}})", data),
         "tensor 'x': shape [0] / offsets [8,4] do not fit"},
        {"no_offsets", raw_file(R"({"x":{"dtype":"F32","shape":[2]}})", data), "tensor 'x': needs dtype, shape and data_offsets"},
        {"bad_metadata", raw_file(R"({"__metadata__":[1]})", ""), "__metadata__ is not a JSON object"},
    };
    for (const auto& c : cases) {
        const std::string path = temp_file(std::string(c.name) + ".safetensors", c.content);
        CHECK_THROWS(TensorFile::read(path), BundleError, path + ": " + c.needle);
        fs::remove(path);
    }
    CHECK_THROWS(TensorFile::read("/no/such/golden.safetensors"), BundleError, "/no/such/golden.safetensors: cannot open");
}

// ------------------------------------------------------------------ host CPU class

TEST(host_cpu_class_is_a_known_name_and_honours_the_override) {
    const auto& names = dfma::cpu_class_names();
    {
        CpuClassOverride unset(nullptr);
        const std::string detected = dfma::host_cpu_class();
        CHECK(std::find(names.begin(), names.end(), detected) != names.end());
        CHECK_EQ(detected, dfma::cpu_class(dfma::host_cpu_features()));
#if defined(__x86_64__)
        CHECK_EQ(detected.rfind("x86", 0), std::size_t(0));
#endif
        CpuClassOverride blank("  ");
        CHECK_EQ(dfma::host_cpu_class(), detected);
    }
    CpuClassOverride set(" arm-dotprod\n");
    CHECK_EQ(dfma::host_cpu_class(), std::string("arm-dotprod"));
}

TEST(cpu_class_precedence_matches_host_py) {
    auto cls = [](const char* machine, std::initializer_list<const char*> flags) {
        dfma::CpuFeatures f;
        f.machine = machine;
        for (const std::string fl : flags) {
            f.avx2 |= fl == "avx2";
            f.avx512f |= fl == "avx512f";
            f.avx512_vnni |= fl == "avx512_vnni";
            f.avx_vnni |= fl == "avx_vnni";
            f.amx_int8 |= fl == "amx_int8";
            f.asimddp |= fl == "asimddp";
        }
        return dfma::cpu_class(f);
    };
    CHECK_EQ(cls("x86_64", {"avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8"}), std::string("x86-amx"));
    CHECK_EQ(cls("x86_64", {"amx_int8"}), std::string("x86-amx"));
    CHECK_EQ(cls("x86_64", {"avx2", "avx512f", "avx512_vnni", "avx_vnni"}), std::string("x86-avx512-vnni"));
    CHECK_EQ(cls("x86_64", {"avx2", "avx_vnni"}), std::string("x86-avx2-vnni"));
    CHECK_EQ(cls("x86_64", {"avx2", "avx512f"}), std::string("x86-avx512"));
    CHECK_EQ(cls("amd64", {"avx2"}), std::string("x86-avx2"));
    CHECK_EQ(cls("i686", {}), std::string("x86"));
    CHECK_EQ(cls("aarch64", {"asimddp"}), std::string("arm-dotprod"));
    CHECK_EQ(cls("arm64", {}), std::string("arm"));
    CHECK_EQ(cls("riscv64", {"avx2", "asimddp"}), std::string("other"));
}

// ------------------------------------------------------------------ compare and judge

TEST(compare_counts_nonfinite_rows_as_mismatches) {
    const float nan = std::numeric_limits<float>::quiet_NaN();
    const std::vector<float> ref = {1, 2, 0, 3, 0, 0, 5, 5};
    const auto same = dfma::detail::compare_logits(ref, ref, 4, 2);
    CHECK_EQ(same.top1_agreement, 1.0);
    CHECK_EQ(same.max_abs_error, 0.0);
    // row 1 flips its argmax, row 2 holds a NaN, row 3 ties (first maximum on both sides)
    const auto r = dfma::detail::compare_logits(ref, {1, 2.5f, 4, 3, nan, 0, 5, 5}, 4, 2);
    CHECK_EQ(r.top1_agreement, 0.5);
    CHECK_EQ(r.nonfinite_rows, 1);
    CHECK(std::isinf(r.max_abs_error) && std::isinf(r.mean_abs_error));
    const auto small = dfma::detail::compare_logits(ref, {1, 2.5f, 0, 3, 0, 0, 5, 5}, 4, 2);
    CHECK_EQ(small.max_abs_error, 0.5);
    CHECK_EQ(small.mean_abs_error, 0.0625);
}

TEST(judge_is_the_python_rule) {
    using dfma::detail::judge;
    dfma::GoldenResult r;
    r.top1_agreement = 0.96875;
    r.max_abs_error = 0.02;
    const json expected = {{"top1_agreement", 1.0}, {"max_abs_error", 0.01}};
    const json tol = {{"agreement_drop", 0.03125}, {"error_factor", 1.5}, {"error_floor", 1e-4}};
    CHECK_EQ(judge(r, nullptr, tol).second, std::string("no expected result recorded for this graph"));
    CHECK(!judge(r, nullptr, tol).first);
    CHECK_EQ(judge(r, &expected, tol).second, std::string("max error 0.02 > 0.0151 (expected 0.01)"));
    r.max_abs_error = 0.015;
    const auto ok = judge(r, &expected, tol);
    CHECK(ok.first);
    CHECK_EQ(ok.second, std::string("agreement 0.969, max error 0.015 (bound 0.0151)"));
    r.top1_agreement = 0.9375;
    CHECK_EQ(judge(r, &expected, tol).second, std::string("agreement 0.938 < 0.969 (expected 1.000)"));
    r.max_abs_error = std::numeric_limits<double>::infinity();
    CHECK_EQ(judge(r, &expected, tol).second, std::string("non-finite logits"));
    r.top1_agreement = 1.0;
    r.max_abs_error = 2e-4;  // defaults: factor 1.5, floor 1e-4, drop 0
    CHECK(judge(r, &expected, json::object()).first);
    const json no_fields = {{"host", {{"class", "x86"}}}};
    CHECK_THROWS(judge(r, &no_fields, tol), BundleError, "golden.expected entry has no number 'top1_agreement'");
}

// ------------------------------------------------------------------ verify and auto on the toy bundle

namespace {

constexpr std::int64_t kRows = 11, kSeq = 6, kSlots = 4, kSize = 8, kImageRows = 5;

// Golden inputs for the toy graph (11 rows: chunks of 8 and 3) and the graph's own logits for them.
struct ToyGolden {
    std::vector<std::int64_t> ids, att, mask;
    std::vector<float> pixels, logits;
};

ToyGolden toy_golden() {
    ToyGolden g;
    std::mt19937 rng(5);
    const std::size_t plane = kSlots * 3 * kSize * kSize;
    for (std::int64_t r = 0; r < kRows; ++r) {
        const std::int64_t len = 3 + r % 4;
        for (std::int64_t j = 0; j < kSeq; ++j) {
            g.ids.push_back(j < len ? 1 + static_cast<std::int64_t>(rng() % 62) : 0);
            g.att.push_back(j < len ? 1 : 0);
        }
        for (std::int64_t k = 0; k < kSlots; ++k) g.mask.push_back(r < kImageRows && k <= r % kSlots ? 1 : 0);
    }
    std::uniform_real_distribution<float> u(-2.f, 2.f);
    for (std::size_t i = 0; i < kImageRows * plane; ++i) g.pixels.push_back(u(rng));
    const dfma::detail::OnnxSession session(check::data_dir() + "/toy_bundle/model.onnx", 1);
    std::vector<float> all(kRows * plane, 0.f);
    std::copy(g.pixels.begin(), g.pixels.end(), all.begin());
    dfma::detail::BatchInputs b{kRows, kSeq, kSlots, kSize, g.ids.data(), g.att.data(), all.data(), g.mask.data(), nullptr, {}};
    std::int64_t labels = 0;
    g.logits = session.run(b, labels);
    return g;
}

// Writes the golden file into the bundle copy and lists it in the manifest, with a `golden` section
// whose expected entries are `expected`. `shift` is added to the first golden logit.
void add_golden(const BundleCopy& b, json& m, const json& expected, float shift = 0.f) {
    ToyGolden g = toy_golden();
    g.logits[0] += shift;
    b.write("golden.safetensors",
            tensor_bytes({{"input_ids", blob("I64", {kRows, kSeq}, g.ids)},
                          {"attention_mask", blob("I64", {kRows, kSeq}, g.att)},
                          {"image_mask", blob("I64", {kRows, kSlots}, g.mask)},
                          {"pixel_values", blob("F32", {kImageRows, kSlots, 3, kSize, kSize}, g.pixels)},
                          {"logits", blob("F32", {kRows, 4}, g.logits)}},
                         {{"format", "dfma-golden"}, {"reference", "toy graph"}}));
    m["files"]["golden.safetensors"] = {{"sha256", dfma::detail::sha256_file(b.path("golden.safetensors"))},
                                        {"bytes", fs::file_size(b.path("golden.safetensors"))}};
    m["golden"] = {{"file", "golden.safetensors"}, {"samples", kRows}, {"rows_with_images", kImageRows},
                   {"tolerance", {{"agreement_drop", 1.0 / kRows}, {"error_factor", 1.5}, {"error_floor", 1e-4}}},
                   {"expected", expected}};
}

json expected_on(const std::string& host_class, double max_abs = 0.0) {
    return {{"top1_agreement", 1.0}, {"max_abs_error", max_abs}, {"mean_abs_error", max_abs / 4}, {"host", {{"class", host_class}}}};
}

// Adds graph `key` as a copy of the toy graph with this precision, kind and cpu_classes.
void add_graph(const BundleCopy& b, json& m, const std::string& key, const std::string& precision,
               const std::string& kind, const json& cpu_classes) {
    const std::string file = "model." + key + ".onnx";
    fs::copy_file(b.path("model.onnx"), b.path(file), fs::copy_options::overwrite_existing);
    m["graphs"][key] = {{"file", file}, {"precision", precision}, {"kind", kind}, {"devices", {"cpu"}}, {"cpu_classes", cpu_classes}};
    m["files"][file] = m["files"]["model.onnx"];
}

// defaults.auto.cpu with `ranked` entries (precision, graph) for ONNX Runtime CPU, first = fastest.
json ranked_default(const std::vector<std::pair<std::string, std::string>>& ranked) {
    json rec = {{"graph", ranked.front().second}, {"backend", "onnxruntime-cpu"}, {"precision", ranked.front().first},
                {"reason", "the fastest that met the guard"}, {"ranked", json::array()}};
    for (const auto& [precision, graph] : ranked)
        rec["ranked"].push_back({{"label", precision}, {"backend", "onnxruntime-cpu"}, {"graph", graph},
                                 {"precision", precision}, {"batch1_ms", 1.0}});
    return rec;
}

dfma::BundleInfo load_info(const std::string& dir, dfma::SelfCheck mode = dfma::SelfCheck::automatic) {
    dfma::Options o;
    o.self_check = mode;
    return dfma::Extractor::load(dir, o).info();
}

}  // namespace

TEST(verify_runs_the_golden_set_on_every_cpu_graph) {
    CpuClassOverride here("x86-avx2");
    BundleCopy b;
    auto m = b.manifest();
    CHECK_THROWS(dfma::verify_bundle(b.dir()), BundleError, "manifest.json: no \"golden\" section");
    add_graph(b, m, "int8", "int8", "portable", nullptr);
    m["graphs"]["tensorrt-fp16-gpu"] = {{"file", "engines/fp16-gpu.plan"}, {"precision", "fp16"}, {"kind", "tensorrt"}};
    fs::create_directories(b.path("engines"));  // a graph's file is always one the manifest lists
    b.write("engines/fp16-gpu.plan", "engine");
    m["files"]["engines/fp16-gpu.plan"] = {{"sha256", dfma::detail::sha256_file(b.path("engines/fp16-gpu.plan"))}, {"bytes", 6}};
    m["graphs"]["gpu-only"] = {{"file", "model.onnx"}, {"precision", "fp16"}, {"kind", "portable"}, {"devices", {"gpu"}}};
    add_golden(b, m, {{"portable", expected_on("x86-amx")}});
    b.write_manifest(m);
    const auto report = dfma::verify_bundle(b.dir(), 1);
    CHECK_EQ(report.cpu_class, std::string("x86-avx2"));
    CHECK_EQ(report.golden_samples, 11);
    CHECK_EQ(report.graphs.size(), std::size_t(2));  // engines and GPU-only graphs are left out
    const auto& int8 = report.graphs.at(0);
    const auto& portable = report.graphs.at(1);
    CHECK_EQ(portable.graph, std::string("portable"));
    CHECK_EQ(portable.file, std::string("model.onnx"));
    CHECK(portable.passed);
    CHECK_EQ(portable.top1_agreement, 1.0);
    CHECK(portable.max_abs_error < 1e-5);
    CHECK(portable.ms_per_sample >= 0.0);
    CHECK_EQ(portable.reason.rfind("agreement 1.000, max error", 0), std::size_t(0));
    CHECK_EQ(int8.graph, std::string("int8"));
    CHECK(!int8.passed);
    CHECK_EQ(int8.reason, std::string("no expected result recorded for this graph"));
    CHECK(!report.passed());

    add_golden(b, m, {{"portable", expected_on("x86-amx")}, {"int8", expected_on("x86-amx")}}, 0.5f);
    b.write_manifest(m);
    const auto shifted = dfma::verify_bundle(b.dir());
    CHECK_EQ(shifted.graphs.at(1).reason, std::string("max error 0.5 > 0.0001 (expected 0)"));
    CHECK(std::fabs(shifted.graphs.at(1).max_abs_error - 0.5) < 1e-5);

    add_golden(b, m, {{"portable", expected_on("x86-amx", 0.4)}, {"int8", expected_on("x86-amx", 0.4)}}, 0.5f);
    b.write_manifest(m);
    CHECK(dfma::verify_bundle(b.dir()).passed());

    std::ofstream(b.path("golden.safetensors"), std::ios::binary | std::ios::in | std::ios::out).put('\x7f');
    CHECK_THROWS(dfma::verify_bundle(b.dir()), BundleError, "golden.safetensors: sha256");
}

TEST(golden_file_contents_are_checked) {
    BundleCopy b;
    auto m = b.manifest();
    add_golden(b, m, json::object());
    m["golden"]["file"] = "other.safetensors";
    b.write_manifest(m);
    CHECK_THROWS(dfma::verify_bundle(b.dir()), BundleError, "field 'golden.file' is \"other.safetensors\", not a file the manifest lists");
    m["golden"]["file"] = "golden.safetensors";
    const std::vector<float> one = {1.f};
    b.write("golden.safetensors", tensor_bytes({{"logits", blob("F32", {1, 1}, one)}}, {{"format", "dfma-golden"}}));
    m["files"]["golden.safetensors"] = {{"sha256", dfma::detail::sha256_file(b.path("golden.safetensors"))},
                                        {"bytes", fs::file_size(b.path("golden.safetensors"))}};
    b.write_manifest(m);
    CHECK_THROWS(dfma::verify_bundle(b.dir()), BundleError, "golden.safetensors: tensors [input_ids, attention_mask, pixel_values, image_mask] missing");
    b.write("golden.safetensors", tensor_bytes({{"logits", blob("F32", {1, 1}, one)}}, {{"format", "other"}}));
    m["files"]["golden.safetensors"] = {{"sha256", dfma::detail::sha256_file(b.path("golden.safetensors"))},
                                        {"bytes", fs::file_size(b.path("golden.safetensors"))}};
    b.write_manifest(m);
    CHECK_THROWS(dfma::verify_bundle(b.dir()), BundleError, "not a dfma-golden file (metadata format 'other')");
}

TEST(auto_walks_the_ranked_graphs_and_checks_them_here) {
    CpuClassOverride here("x86-avx2");
    BundleCopy b;
    auto m = b.manifest();
    add_graph(b, m, "int8", "int8", "portable", nullptr);
    m["defaults"] = {{"auto", {{"cpu", ranked_default({{"int8", "int8"}, {"fp32", "portable"}})}}}};
    const std::string base = "auto: the fastest that met the guard";
    const std::string why = "measured on x86-avx512-vnni, this host is x86-avx2";

    // measured on another class, and it holds here
    add_golden(b, m, {{"int8", expected_on("x86-avx512-vnni", 1e-6)}});
    b.write_manifest(m);
    auto info = load_info(b.dir());
    CHECK_EQ(info.cpu_class, std::string("x86-avx2"));
    CHECK_EQ(info.graph_key, std::string("int8"));
    CHECK_EQ(info.graph_reason.rfind(base + "; int8 passed its golden set here (" + why + ": agreement 1.000, max error", 0), std::size_t(0));

    // it does not hold here: fp32
    add_golden(b, m, {{"int8", expected_on("x86-avx512-vnni", 1e-6)}}, 0.9f);
    b.write_manifest(m);
    info = load_info(b.dir());
    CHECK_EQ(info.graph_key, std::string("portable"));
    CHECK_EQ(info.graph_reason, base + "; int8 failed its golden set here (" + why + ": max error 0.9 > 0.000102 (expected 1e-06))");
    CHECK_EQ(load_info(b.dir(), dfma::SelfCheck::never).graph_key, std::string("int8"));

    // measured on this class: no check, unless asked for
    add_golden(b, m, {{"int8", expected_on("x86-avx2", 1e-6)}}, 0.9f);
    b.write_manifest(m);
    info = load_info(b.dir());
    CHECK_EQ(info.graph_key, std::string("int8"));
    CHECK_EQ(info.graph_reason, base);
    info = load_info(b.dir(), dfma::SelfCheck::always);
    CHECK_EQ(info.graph_key, std::string("portable"));
    CHECK(info.graph_reason.find("int8 failed its golden set here (self-check asked for: max error 0.9") != std::string::npos);

    // no expected entry, no golden set
    add_golden(b, m, json::object());
    b.write_manifest(m);
    info = load_info(b.dir());
    CHECK_EQ(info.graph_key, std::string("portable"));
    CHECK(info.graph_reason.find("int8 failed its golden set here (measured on an unrecorded CPU class, this host is "
                                 "x86-avx2: no expected result recorded for this graph)") != std::string::npos);
    m.erase("golden");
    m["files"].erase("golden.safetensors");
    fs::remove(b.path("golden.safetensors"));  // an unlisted file would be refused
    b.write_manifest(m);
    info = load_info(b.dir());
    CHECK_EQ(info.graph_key, std::string("portable"));
    CHECK_EQ(info.graph_reason, base + "; int8: measured on an unrecorded CPU class, this host is x86-avx2, and the "
                                       "bundle has no golden set to check it here");
}

TEST(auto_prefers_the_row_meant_for_this_cpu_class_then_fused_kernels) {
    CpuClassOverride here("x86-avx2");
    BundleCopy b;
    auto m = b.manifest();
    add_graph(b, m, "int8", "int8", "portable", nullptr);
    add_graph(b, m, "int8-avx2", "int8", "portable", {"x86-avx2", "x86-avx512", "x86"});
    add_graph(b, m, "int8-dynamic", "int8-dynamic", "onnxruntime", nullptr);
    add_graph(b, m, "ort", "fp32", "onnxruntime", nullptr);
    m["graphs"]["ort"]["ops"] = "com.microsoft";
    // ranked without fp32: it comes last anyway; entries of other backends are left out
    m["defaults"] = {{"auto", {{"cpu", ranked_default({{"int8", "int8"}})}}}};
    const json openvino = {{"backend", "openvino"}, {"precision", "int8-dynamic"}, {"graph", "int8-dynamic"}};
    auto& ranked = m["defaults"]["auto"]["cpu"]["ranked"];
    ranked.insert(ranked.begin(), openvino);
    add_golden(b, m, {{"int8", expected_on("x86-avx2")}, {"int8-avx2", expected_on("x86-avx2")}}, 0.9f);
    b.write_manifest(m);
    CHECK_EQ(load_info(b.dir()).graph_key, std::string("int8-avx2"));
    {
        CpuClassOverride vnni("x86-avx512-vnni");  // int8-avx2 is meant for other classes there
        const auto info = load_info(b.dir());
        CHECK_EQ(info.graph_key, std::string("ort"));  // int8 measured on x86-avx2 fails here; fp32: fused first
        CHECK(info.graph_reason.find("int8 failed its golden set here (measured on x86-avx2, this host is x86-avx512-vnni") != std::string::npos);
        CHECK_EQ(load_info(b.dir(), dfma::SelfCheck::never).graph_key, std::string("int8"));
    }
    // without ranked: the recorded precision, then fp32 (as dfma.runtime.self_check): this class's int8 row
    m["defaults"]["auto"]["cpu"].erase("ranked");
    b.write_manifest(m);
    CHECK_EQ(load_info(b.dir()).graph_key, std::string("int8-avx2"));
    // a ranked precision the bundle lacks is passed over with a note
    m["defaults"]["auto"]["cpu"] = ranked_default({{"fp16", "int8"}, {"fp32", "ort"}});
    b.write_manifest(m);
    const auto info = load_info(b.dir());
    CHECK_EQ(info.graph_key, std::string("ort"));
    CHECK(info.graph_reason.find("; fp16: the bundle has no fp16 graph that onnxruntime-cpu runs (it has fp32, int8, int8-dynamic)") != std::string::npos);
}
