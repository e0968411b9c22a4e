// Bundle loading: every way a bundle folder can be broken gives a BundleError that names the problem.
#include <filesystem>

#include "bundle_copy.hpp"
#include "check.hpp"
#include "dfma/extractor.hpp"
#include "dfma/errors.hpp"
#include "sha256.hpp"

namespace fs = std::filesystem;
using dfma::BundleError;
using dfma::Extractor;

TEST(toy_bundle_loads) {
    auto ex = Extractor::load(check::data_dir() + "/toy_bundle");
    CHECK_EQ(ex.info().labels.size(), std::size_t(4));
    CHECK_EQ(ex.info().graph_file, std::string("model.onnx"));
    CHECK_EQ(ex.info().image.image_size, 8);
    CHECK_EQ(ex.info().text.max_length, 16);
    CHECK_EQ(ex.info().max_batch, 4);
    CHECK(!Extractor::onnxruntime_version().empty());
    CHECK_EQ(Extractor::load(check::data_dir() + "/toy_bundle", {"portable"}).info().graph_file, std::string("model.onnx"));
}

TEST(missing_folder_and_manifest) {
    CHECK_THROWS(Extractor::load("/no/such/bundle"), BundleError, "/no/such/bundle: not a bundle folder");
    BundleCopy b;
    fs::remove(b.path("manifest.json"));
    CHECK_THROWS(Extractor::load(b.dir()), BundleError, "manifest.json: missing");
    b.write("manifest.json", "{not json");
    CHECK_THROWS(Extractor::load(b.dir()), BundleError, "not valid JSON");
    b.write("manifest.json", "{\"format\": \"other\"}");
    CHECK_THROWS(Extractor::load(b.dir()), BundleError, "not a dfma-bundle manifest");
}

TEST(missing_listed_file) {
    BundleCopy b;
    fs::remove(b.path("vocab.txt"));
    CHECK_THROWS(Extractor::load(b.dir()), BundleError, "vocab.txt: missing (listed in manifest.json)");
    BundleCopy c;
    fs::remove(c.path("model.onnx"));
    CHECK_THROWS(Extractor::load(c.dir()), BundleError, "model.onnx: missing");
}

TEST(hash_and_size_mismatch) {
    BundleCopy b;
    {
        std::ofstream f(b.path("vocab.txt"), std::ios::binary | std::ios::in | std::ios::out);
        f.seekp(0);
        f.put('X');  // same size, different content
    }
    CHECK_THROWS(Extractor::load(b.dir()), BundleError, "vocab.txt: sha256");
    BundleCopy c;
    std::ofstream(c.path("tokenizer.json"), std::ios::app) << " ";
    CHECK_THROWS(Extractor::load(c.dir()), BundleError, "does not match the manifest");
    // only the files used are hashed when verify_all_files is off, and the model still is
    BundleCopy d;
    auto m = d.manifest();
    m["files"]["extra.bin"] = {{"sha256", std::string(64, '0')}, {"bytes", 3}};
    d.write_manifest(m);
    d.write("extra.bin", "abc");
    CHECK_THROWS(Extractor::load(d.dir()), BundleError, "extra.bin: sha256");
    dfma::Options fast;
    fast.verify_all_files = false;
    CHECK_EQ(Extractor::load(d.dir(), fast).info().labels.size(), std::size_t(4));
}

TEST(paths_outside_the_bundle_are_refused) {
    BundleCopy b;
    auto m = b.manifest();
    m["files"]["../escape.txt"] = {{"sha256", std::string(64, '0')}, {"bytes", 1}};
    b.write_manifest(m);
    CHECK_THROWS(Extractor::load(b.dir()), BundleError, "points outside the bundle");
    BundleCopy c;
    fs::remove(c.path("vocab.txt"));
    fs::create_symlink(check::data_dir() + "/toy_bundle/vocab.txt", c.path("vocab.txt"));
    CHECK_THROWS(Extractor::load(c.dir()), BundleError, "a link");
}

TEST(bad_manifest_sections) {
    BundleCopy b;
    auto m = b.manifest();
    m.erase("labels");
    b.write_manifest(m);
    CHECK_THROWS(Extractor::load(b.dir()), BundleError, "no \"labels\"");
    m = BundleCopy().manifest();
    m["preprocess"]["mean"] = {0.5, 0.5};
    b.write_manifest(m);
    CHECK_THROWS(Extractor::load(b.dir()), BundleError, "preprocess/mean must be 3 numbers");
    m = BundleCopy().manifest();
    m["files"]["vocab.txt"].erase("bytes");
    b.write_manifest(m);
    CHECK_THROWS(Extractor::load(b.dir()), BundleError, "needs 'bytes'");
    m = BundleCopy().manifest();
    m["format_version"] = 2;
    b.write_manifest(m);
    CHECK_THROWS(Extractor::load(b.dir()), BundleError, "format_version");
    CHECK_THROWS(Extractor::load(check::data_dir() + "/toy_bundle", {"int8"}), BundleError, "no graph \"int8\" (the bundle has: portable (fp32))");
}

TEST(corrupt_graph_is_an_inference_error) {
    BundleCopy b;
    b.write("model.onnx", "this is not an onnx graph");
    auto m = b.manifest();
    m["files"]["model.onnx"] = {{"sha256", dfma::detail::sha256_file(b.path("model.onnx"))}, {"bytes", 25}};
    b.write_manifest(m);
    CHECK_THROWS(Extractor::load(b.dir()), dfma::InferenceError, "model.onnx: ONNX Runtime cannot load the graph");
}

TEST(tokenizer_mismatch_is_detected) {
    BundleCopy b;
    b.write("vocab.txt", "[PAD]\n[UNK]\n");
    auto m = b.manifest();
    m["files"]["vocab.txt"] = {{"sha256", dfma::detail::sha256_file(b.path("vocab.txt"))}, {"bytes", 12}};
    b.write_manifest(m);
    CHECK_THROWS(Extractor::load(b.dir()), BundleError, "vocab.txt: 2 lines but tokenizer.json has");
}

TEST(manifest_fields_of_the_wrong_type_are_bundle_errors) {
    // Every top-level and preprocess field replaced by values of other types: always a BundleError.
    const auto original = BundleCopy().manifest();
    const std::vector<nlohmann::json> junk = {nullptr, 7, -1, "text", nlohmann::json::array(), nlohmann::json::object(),
                                              nlohmann::json::array({1, "x"}), 1.5, true};
    BundleCopy b;
    int cases = 0;
    auto attempt = [&](const nlohmann::json& m) {
        b.write_manifest(m);
        ++cases;
        try {
            Extractor::load(b.dir());
        } catch (const dfma::Error&) {
        } catch (const std::exception& e) {
            check::fail(__FILE__, __LINE__, std::string("not a dfma::Error: ") + e.what() + " for " + m.dump().substr(0, 200));
        }
    };
    for (const auto& item : original.items()) {
        for (const auto& v : junk) {
            auto m = original;
            m[item.key()] = v;
            attempt(m);
        }
    }
    for (const char* section : {"preprocess", "limits", "graphs", "files"}) {
        for (const auto& item : original[section].items()) {
            for (const auto& v : junk) {
                auto m = original;
                m[section][item.key()] = v;
                attempt(m);
            }
        }
    }
    CHECK(cases > 100);
}

TEST(preprocess_must_agree_with_the_graph) {
    BundleCopy b;
    auto m = b.manifest();
    m["preprocess"]["num_crops"] = 2;
    b.write_manifest(m);
    CHECK_THROWS(Extractor::load(b.dir()), BundleError, "gives num_crops 2 and image_size 8");
    m["preprocess"]["num_crops"] = 3;
    m["preprocess"]["image_size"] = 9;
    b.write_manifest(m);
    CHECK_THROWS(Extractor::load(b.dir()), BundleError, "image_size 9");
}

TEST(manifest_special_tokens_must_match_the_tokenizer) {
    BundleCopy b;
    auto m = b.manifest();
    m["preprocess"]["special_tokens"] = {{"head_open", {{"token", "<s>"}, {"id", 59}}}};
    b.write_manifest(m);
    CHECK_EQ(Extractor::load(b.dir()).info().labels.size(), std::size_t(4));
    m["preprocess"]["special_tokens"] = {{"head_open", {{"token", "<s>"}, {"id", 60}}}};
    b.write_manifest(m);
    CHECK_THROWS(Extractor::load(b.dir()), BundleError, "special_tokens/head_open says <s> = 60 but the tokenizer has 59");
}
