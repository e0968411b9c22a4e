// Bundle loading: every way a bundle folder can be broken gives a BundleError that names the problem.
#include <sys/stat.h>

#include <filesystem>

#include "bundle_copy.hpp"
#include "check.hpp"
#include "dfma/extractor.hpp"
#include "dfma/errors.hpp"
#include "manifest_digest.hpp"
#include "digests.hpp"

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
    CHECK_EQ(std::string(Extractor::load(check::data_dir() + "/toy_bundle", {"portable"}).info().graph_file), std::string("model.onnx"));
}

TEST(missing_folder_and_manifest) {
    CHECK_THROWS(Extractor::load("/no/such/bundle"), BundleError, "/no/such/bundle: not a bundle folder");
    BundleCopy b;
    fs::remove(b.path("manifest.json"));
    CHECK_THROWS(Extractor::load(b.dir()), BundleError, "manifest.json: missing");
    b.write("manifest.json", "{not json");
    CHECK_THROWS(Extractor::load(b.dir()), BundleError, "the manifest was edited after it was written");
    b.redigest();
    CHECK_THROWS(Extractor::load(b.dir()), BundleError, "not valid JSON");
    b.write("manifest.json", "{\"format\": \"other\"}");
    b.redigest();
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
    CHECK_THROWS(Extractor::load(b.dir()), BundleError, "field 'labels' missing");
    m = BundleCopy().manifest();
    m["preprocess"]["mean"] = {0.5, 0.5};
    b.write_manifest(m);
    CHECK_THROWS(Extractor::load(b.dir()), BundleError, "field 'preprocess.mean' must be 3 finite numbers");
    m = BundleCopy().manifest();
    m["files"]["vocab.txt"].erase("bytes");
    b.write_manifest(m);
    CHECK_THROWS(Extractor::load(b.dir()), BundleError, "field 'files.vocab.txt' needs 'sha256' (str) and 'bytes' (int)");
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

// ---------------------------------------------------------------- manifest integrity (issue 14)

TEST(an_edited_manifest_is_detected_by_its_digest) {
    BundleCopy b;
    auto m = b.manifest();
    m["limits"]["max_batch"] = 8;
    b.write_manifest_only(m);
    CHECK_THROWS(Extractor::load(b.dir()), BundleError, "manifest.sha256: manifest.json has sha256");
    b.redigest();
    CHECK_EQ(int(Extractor::load(b.dir()).info().max_batch), 8);
    b.write("manifest.sha256", "not a digest line\n");
    CHECK_THROWS(Extractor::load(b.dir()), BundleError, "expected one line '<sha256 hex>  manifest.json'");
    fs::remove(b.path("manifest.sha256"));
    CHECK_THROWS(Extractor::load(b.dir()), BundleError, "manifest.sha256: missing");
}

TEST(a_signature_is_checked_against_the_key) {
    BundleCopy b;
    const std::string key = "0123456789abcdef-a-user-key";
    const std::string key_file = b.dir() + ".key";  // beside the bundle: the user's key is not part of it
    std::ofstream(key_file, std::ios::binary) << key;
    std::ifstream f(b.path("manifest.json"), std::ios::binary);
    const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
    dfma::Options opts;
    opts.key_file = key_file;
    CHECK_THROWS(Extractor::load(b.dir(), opts), BundleError, "manifest.sig: missing");
    b.write("manifest.sig", "hmac-sha256 " + dfma::detail::hmac_sha256_hex(key, bytes) + "\n");
    CHECK_EQ(Extractor::load(b.dir(), opts).info().labels.size(), std::size_t(4));
    CHECK_EQ(Extractor::load(b.dir()).info().labels.size(), std::size_t(4));  // no key: the signature is not needed
    b.write("manifest.sig", "hmac-sha256 " + dfma::detail::hmac_sha256_hex("another key", bytes) + "\n");
    CHECK_THROWS(Extractor::load(b.dir(), opts), BundleError, "the signature does not match");
    opts.key_file = b.dir() + ".no-such-key";
    CHECK_THROWS(Extractor::load(b.dir(), opts), BundleError, "key_file: ");
    fs::remove(key_file);
}

TEST(hmac_sha256_matches_rfc_4231) {
    // RFC 4231 test case 2 and a key longer than the block (test case 6)
    CHECK_EQ(dfma::detail::hmac_sha256_hex("Jefe", "what do ya want for nothing?"),
             std::string("5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"));
    CHECK_EQ(dfma::detail::hmac_sha256_hex(std::string(131, '\xaa'), "Test Using Larger Than Block-Size Key - Hash Key First"),
             std::string("60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"));
}

TEST(unlisted_files_are_refused_unless_allowed) {
    BundleCopy b;
    b.write("notes.txt", "not part of the bundle");
    CHECK_THROWS(Extractor::load(b.dir()), BundleError, "not listed in manifest.json: notes.txt");
    dfma::Options loose;
    loose.allow_unlisted_files = true;
    CHECK_EQ(Extractor::load(b.dir(), loose).info().labels.size(), std::size_t(4));
    fs::remove(b.path("notes.txt"));
    fs::create_directories(b.path("sub"));
    fs::create_symlink("/etc", b.path("sub/link"));
    CHECK_THROWS(Extractor::load(b.dir()), BundleError, "sub/link");
}

TEST(manifest_files_that_are_links_fifos_or_too_big_are_refused) {
    BundleCopy b;
    fs::rename(b.path("manifest.json"), b.dir() + ".outside.json");
    fs::create_symlink(b.dir() + ".outside.json", b.path("manifest.json"));
    CHECK_THROWS(Extractor::load(b.dir()), BundleError, "manifest.json: a link");
    fs::remove(b.path("manifest.json"));
    fs::remove(b.dir() + ".outside.json");
    CHECK(::mkfifo(b.path("manifest.json").c_str(), 0600) == 0);
    CHECK_THROWS(Extractor::load(b.dir()), BundleError, "manifest.json: not a regular file");
    fs::remove(b.path("manifest.json"));
    b.write("manifest.json", std::string((16 << 20) + 1, ' '));
    CHECK_THROWS(Extractor::load(b.dir()), BundleError, "more than the 16777216 allowed");
}

TEST(deep_nesting_is_a_bundle_error) {
    BundleCopy b;
    auto m = b.manifest();
    b.write("manifest.json", m.dump().substr(0, m.dump().size() - 1) + ", \"deep\": " + std::string(100000, '[') +
                                 std::string(100000, ']') + "}");
    b.redigest();
    CHECK_THROWS(Extractor::load(b.dir()), BundleError, "nested more than 64 levels deep");
}

TEST(no_graphs_negative_sizes_and_bad_hashes_are_refused) {
    const auto original = BundleCopy().manifest();
    BundleCopy b;
    auto expect = [&](nlohmann::json m, const std::string& needle) {
        b.write_manifest(m);
        CHECK_THROWS(Extractor::load(b.dir()), BundleError, needle);
    };
    auto m = original;
    m["graphs"] = nlohmann::json::object();
    expect(m, "field 'graphs' is empty");
    m = original;
    m["files"]["vocab.txt"]["bytes"] = -1;
    expect(m, "field 'files.vocab.txt.bytes' is -1, must be >= 0");
    m = original;
    m["files"]["vocab.txt"]["bytes"] = 18446744073709551615ULL;
    expect(m, "field 'files.vocab.txt.bytes'");
    m = original;
    m["files"]["vocab.txt"]["sha256"] = "XYZ";
    expect(m, "field 'files.vocab.txt.sha256'");
    m = original;
    m["files"]["manifest.sha256"] = {{"sha256", std::string(64, '0')}, {"bytes", 1}};
    expect(m, "field 'files.manifest.sha256' lists manifest.sha256");
    m = original;
    m["graphs"]["portable"]["file"] = "other.onnx";
    expect(m, "field 'graphs.portable.file' is \"other.onnx\", not listed in files");
    m = original;
    m.erase("parity");
    expect(m, "field 'parity' missing");
}

TEST(preprocess_constants_and_limits_must_be_consistent) {
    const auto original = BundleCopy().manifest();
    BundleCopy b;
    auto expect = [&](const nlohmann::json& m, const std::string& needle) {
        b.write_manifest(m);
        CHECK_THROWS(Extractor::load(b.dir()), BundleError, needle);
    };
    auto m = original;
    m["limits"]["max_batch"] = -3;
    expect(m, "field 'limits.max_batch' is -3, must be in 1..4096");
    m = original;
    m["limits"]["max_batch"] = 2.5;
    expect(m, "field 'limits.max_batch' must be an integer");
    m = original;
    m["preprocess"]["max_length"] = original["limits"]["max_length"].get<int>() + 1;
    expect(m, "field 'preprocess.max_length' is 17, past limits.max_length 16");
    m = original;
    m["model"]["config"] = {{"max_position_embeddings", 12}};
    expect(m, "field 'limits.max_length' is 16, past the model's position embeddings");
    m = original;
    m["model"]["config"] = {{"image_size", 9}};
    expect(m, "field 'preprocess.image_size' is 8, but model.config.image_size is 9");
    m = original;
    m["io"] = {{"inputs", nlohmann::json::array({
                              {{"name", "input_ids"}, {"dtype", "int64"}, {"shape", {"batch", "sequence"}}},
                              {{"name", "attention_mask"}, {"dtype", "int64"}, {"shape", {"batch", "sequence"}}},
                              {{"name", "pixel_values"}, {"dtype", "float32"}, {"shape", {"batch", 4, 3, 8, 8}}},
                              {{"name", "image_mask"}, {"dtype", "int64"}, {"shape", {"batch", 4}}}})},
               {"outputs", nlohmann::json::array({{{"name", "logits"}, {"dtype", "float32"}, {"shape", {"batch", 4}}}})}};
    b.write_manifest(m);
    CHECK_EQ(Extractor::load(b.dir()).info().labels.size(), std::size_t(4));  // the contract's io for the toy
    m["io"]["inputs"][2]["shape"][1] = 5;
    expect(m, "field 'io.inputs.pixel_values.shape' is [\"batch\",5,3,8,8]");
    m["io"]["inputs"][2]["shape"][1] = 4;
    m["io"]["outputs"][0]["shape"][1] = 7;
    expect(m, "field 'io.outputs.logits.shape'");
    m = original;
    m["preprocess"]["std"] = {0.2, 0.0, 0.2};
    expect(m, "field 'preprocess.std' must be 3 finite numbers > 0");
    m = original;
    m["preprocess"]["resize_size"] = 4;
    expect(m, "field 'preprocess.resize_size' is 4, must be in 8..4096");
    m = original;
    m["labels"] = {"a", "a", "b", "c"};
    expect(m, "field 'labels' repeats a name");
}
