// The two-stage path: the manifest's `stages` entries, the grouping of a batch's rows by image set
// (image_groups.hpp), the stage graphs' runner (vision once per distinct set) and its parity with the whole graph
// on the toy bundles (toy_two_stage = toy_bundle + the stage graphs of make_toy_stages.py).
#include <cmath>
#include <cstring>

#include "bundle_copy.hpp"
#include "check.hpp"
#include "dfma/errors.hpp"
#include "dfma/extractor.hpp"
#include "graph_runner.hpp"
#include "image_groups.hpp"
#include "toy_samples.hpp"

using dfma::BundleError;
using dfma::Extractor;

namespace {

constexpr std::size_t kSlots = 4, kPlane = 6;  // a tiny "image": 6 floats per slot

// Row r of a batch: pixels (slots x plane) of `seed` in the present slots, `junk` in the absent ones.
void fill_row(std::vector<float>& px, std::vector<std::int64_t>& mask, std::size_t r, float seed,
              std::vector<std::int64_t> present, float junk = 0.f) {
    for (std::size_t k = 0; k < kSlots; ++k) {
        mask[r * kSlots + k] = present[k];
        for (std::size_t i = 0; i < kPlane; ++i)
            px[(r * kSlots + k) * kPlane + i] = present[k] ? seed + 0.25f * static_cast<float>(k * kPlane + i) : junk;
    }
}

Extractor load(const std::string& dir, dfma::Stages stages) {
    dfma::Options o;
    o.stages = stages;
    return Extractor::load(dir, o);
}

}  // namespace

TEST(rows_group_by_mask_and_present_pixels) {
    const std::size_t rows = 7;
    std::vector<float> px(rows * kSlots * kPlane);
    std::vector<std::int64_t> mask(rows * kSlots);
    fill_row(px, mask, 0, 1.f, {1, 1, 0, 0});
    fill_row(px, mask, 1, 2.f, {1, 0, 0, 0});
    fill_row(px, mask, 2, 1.f, {1, 1, 0, 0}, std::nanf(""));  // = row 0: absent slots do not count
    fill_row(px, mask, 3, 1.f, {1, 1, 1, 0});                 // same pixels in 0-1, another mask
    fill_row(px, mask, 4, 0.f, {0, 0, 0, 0});                 // no image at all
    fill_row(px, mask, 5, 7.f, {0, 0, 0, 0}, 3.f);            // = row 4
    fill_row(px, mask, 6, 1.f, {1, 1, 0, 0});
    float& last = px[(6 * kSlots + 1) * kPlane + 5];
    last = std::nextafter(last, 100.f);                       // one float one step off: another set
    const auto g = dfma::detail::group_image_rows(px.data(), mask.data(), rows, kSlots, kPlane);
    const std::vector<std::size_t> want_group = {0, 1, 0, 2, 3, 3, 4}, want_first = {0, 1, 3, 4, 6};
    CHECK(g.group_of_row == want_group);
    CHECK(g.first_row == want_first);
    CHECK_EQ(g.groups(), 5u);
    using dfma::detail::image_set_digest;
    CHECK_EQ(image_set_digest(&px[0], &mask[0], kSlots, kPlane), image_set_digest(&px[2 * kSlots * kPlane], &mask[2 * kSlots], kSlots, kPlane));
    CHECK(image_set_digest(&px[0], &mask[0], kSlots, kPlane) != image_set_digest(&px[6 * kSlots * kPlane], &mask[6 * kSlots], kSlots, kPlane));
    const auto one = dfma::detail::group_image_rows(px.data(), mask.data(), 1, kSlots, kPlane);
    CHECK(one.groups() == 1 && one.group_of_row.size() == 1 && one.group_of_row[0] == 0);
}

TEST(a_digest_collision_does_not_merge_different_sets) {
    // same_image_set is what decides; the digest only buckets. Two sets differing in one slot:
    std::vector<float> a(kSlots * kPlane, 1.f), b = a;
    std::vector<std::int64_t> m = {1, 0, 1, 0};
    b[2 * kPlane] = 2.f;
    CHECK(!dfma::detail::same_image_set(a.data(), m.data(), b.data(), m.data(), kSlots, kPlane));
    b[2 * kPlane] = 1.f;
    b[1 * kPlane] = 9.f;  // an absent slot
    CHECK(dfma::detail::same_image_set(a.data(), m.data(), b.data(), m.data(), kSlots, kPlane));
}

TEST(two_stage_equals_whole_on_the_toy_samples) {
    const auto staged = load(check::data_dir() + "/toy_two_stage", dfma::Stages::automatic);
    const auto whole = load(check::data_dir() + "/toy_two_stage", dfma::Stages::whole);
    CHECK_EQ(staged.info().stages, std::string("two-stage"));
    CHECK_EQ(staged.info().stages_reason, std::string("auto: the stage graphs of model.onnx"));
    CHECK_EQ(staged.info().vision_file, std::string("model.vision.onnx"));
    CHECK_EQ(staged.info().text_file, std::string("model.text.onnx"));
    CHECK_EQ(whole.info().stages, std::string("whole"));
    CHECK_EQ(whole.info().stages_reason, std::string("stages='whole' asked for"));
    CHECK(whole.info().vision_file.empty());
    const auto cases = toy_cases();
    std::vector<dfma::Sample> samples;
    for (const auto& c : cases) samples.push_back(c.sample);
    // repeats, so that a chunk holds rows sharing an image set (max_batch 4)
    samples.push_back(cases[2].sample);
    samples.push_back(cases[3].sample);
    samples.push_back(cases[2].sample);
    const auto a = staged.predict_batch(samples), b = whole.predict_batch(samples);
    CHECK_EQ(a.size(), samples.size());
    for (std::size_t i = 0; i < a.size() && i < b.size(); ++i) {
        const float err = max_abs_diff(a[i].logits, b[i].logits);
        const float exp = max_abs_diff(a[i].logits, cases[i < cases.size() ? i : (i == 8 ? 3 : 2)].logits);
        if (!(err <= 1e-5f && exp <= 1e-5f))
            check::fail(__FILE__, __LINE__, "sample " + std::to_string(i) + ": vs whole " + std::to_string(err) +
                                                ", vs Python " + std::to_string(exp));
    }
    for (const auto& c : cases) CHECK(max_abs_diff(staged.predict(c.sample).logits, c.logits) <= 1e-5f);
}

TEST(a_packed_bundle_gives_the_inline_bundles_logits) {
    // toy_packed = toy_two_stage with its tensors in weights.bin (make_toy_packed.py, contract 4.3): ONNX Runtime
    // opens each graph by its path and reads the store beside it; the logits are the inline bundle's, bit for bit
    const auto cases = toy_cases();
    for (const auto stages : {dfma::Stages::automatic, dfma::Stages::whole}) {
        const auto packed = load(check::data_dir() + "/toy_packed", stages);
        const auto inline_ = load(check::data_dir() + "/toy_two_stage", stages);
        CHECK_EQ(packed.info().stages, inline_.info().stages);
        for (const auto& c : cases) {
            const auto a = packed.predict(c.sample).logits, b = inline_.predict(c.sample).logits;
            CHECK_EQ(a.size(), b.size());
            CHECK(std::memcmp(a.data(), b.data(), a.size() * sizeof(float)) == 0);
        }
    }
}

TEST(the_runner_encodes_each_distinct_image_set_once) {
    const std::string dir = check::data_dir() + "/toy_two_stage/";
    using dfma::detail::GraphPart;
    using dfma::detail::OnnxSession;
    dfma::detail::GraphRunner staged(std::make_unique<OnnxSession>(dir + "model.vision.onnx", 1, GraphPart::vision),
                                     std::make_unique<OnnxSession>(dir + "model.text.onnx", 1, GraphPart::text));
    const OnnxSession whole(dir + "model.onnx", 1);
    const std::int64_t rows = 5, seq = 3, slots = 4, size = 8;
    const std::size_t plane = 3 * size * size;
    std::vector<float> px(rows * slots * plane, 0.f);
    std::vector<std::int64_t> mask(rows * slots, 0), ids(rows * seq, 7), att(rows * seq, 1);
    for (std::int64_t r = 0; r < rows; ++r) {
        const std::int64_t set = r % 2;  // rows 0, 2, 4 share a set, rows 1, 3 another
        for (std::int64_t k = 0; k <= set; ++k) {
            mask[r * slots + k] = 1;
            for (std::size_t i = 0; i < plane; ++i) px[(r * slots + k) * plane + i] = 0.01f * (i % 13) - 0.3f * set;
        }
        ids[r * seq + 1] = 5 + r;
    }
    for (std::size_t i = 0; i < plane; ++i) px[(4 * slots + 3) * plane + i] = std::nanf("");  // absent: ignored
    dfma::detail::BatchInputs b;
    b.rows = rows, b.seq = seq, b.slots = slots, b.image_size = size;
    b.input_ids = ids.data(), b.attention_mask = att.data(), b.pixel_values = px.data(), b.image_mask = mask.data();
    std::int64_t labels_a = 0, labels_b = 0;
    const auto got = staged.run(b, labels_a);
    CHECK_EQ(staged.vision_rows(), 2u);
    const auto want = whole.run(b, labels_b);
    CHECK_EQ(labels_a, labels_b);
    CHECK(max_abs_diff(got, want) <= 1e-5f);
    for (float v : got) CHECK(std::isfinite(v));
    // one shared set for many rows (predict_pairs): encoded once
    std::vector<float> one(px.begin(), px.begin() + static_cast<std::ptrdiff_t>(slots * plane));
    std::vector<std::int64_t> one_mask(mask.begin(), mask.begin() + slots);
    const auto shared = staged.share(one, one_mask, slots, size);
    CHECK_EQ(staged.vision_rows(), 3u);
    dfma::detail::BatchInputs t;
    t.rows = rows, t.seq = seq, t.slots = slots, t.image_size = size, t.input_ids = ids.data(), t.attention_mask = att.data();
    std::int64_t labels_c = 0;
    const auto from_shared = staged.run_shared(shared, t, labels_c);
    CHECK_EQ(staged.vision_rows(), 3u);
    for (std::int64_t r = 0; r < rows; r += 2)  // rows 0, 2, 4 hold that set
        CHECK(max_abs_diff(std::vector<float>(from_shared.begin() + r * labels_c, from_shared.begin() + (r + 1) * labels_c),
                           std::vector<float>(want.begin() + r * labels_b, want.begin() + (r + 1) * labels_b)) <= 1e-5f);
}

TEST(stage_sessions_check_their_inputs) {
    const std::string dir = check::data_dir() + "/toy_two_stage/";
    using dfma::detail::GraphPart;
    using dfma::detail::OnnxSession;
    CHECK_THROWS(OnnxSession(dir + "model.onnx", 1, GraphPart::vision), BundleError,
                 "the vision stage needs inputs pixel_values, image_mask and output image_features");
    CHECK_THROWS(OnnxSession(dir + "model.vision.onnx", 1, GraphPart::text), BundleError, "the text stage needs inputs");
    CHECK_THROWS(OnnxSession(dir + "model.text.onnx", 1), BundleError, "the contract needs inputs");
}

TEST(stages_option_and_a_bundle_without_stage_graphs) {
    const auto whole = load(check::data_dir() + "/toy_bundle", dfma::Stages::automatic);
    CHECK_EQ(whole.info().stages, std::string("whole"));
    CHECK_EQ(whole.info().stages_reason, std::string("auto: whole graph (graph 'portable' (model.onnx) has no stage "
                                                     "graphs in the bundle (graphs.portable.stages))"));
    CHECK_THROWS(load(check::data_dir() + "/toy_bundle", dfma::Stages::two_stage), BundleError,
                 "stages='two-stage': graph 'portable' (model.onnx) has no stage graphs in the bundle "
                 "(graphs.portable.stages); use stages='auto' or 'whole'");
    // with verify_all_files off, only the files that run are read: the stage graphs, not the whole graph
    BundleCopy copy;
    std::filesystem::copy(check::data_dir() + "/toy_two_stage", copy.dir(),
                          std::filesystem::copy_options::recursive | std::filesystem::copy_options::overwrite_existing);
    copy.write("model.onnx", "not the graph any more");
    dfma::Options o;
    o.verify_all_files = false;
    CHECK_EQ(std::string(Extractor::load(copy.dir(), o).info().stages), std::string("two-stage"));
    o.stages = dfma::Stages::whole;
    CHECK_THROWS(Extractor::load(copy.dir(), o), BundleError, "model.onnx: size");
}

TEST(auto_serves_the_whole_graph_when_the_stage_graphs_do_not_load) {
    BundleCopy copy;
    std::filesystem::copy(check::data_dir() + "/toy_two_stage", copy.dir(),
                          std::filesystem::copy_options::recursive | std::filesystem::copy_options::overwrite_existing);
    auto m = copy.manifest();  // the stages swapped: each file is the other stage's graph (listed, hashed)
    std::swap(m["graphs"]["portable"]["stages"]["vision"]["file"], m["graphs"]["portable"]["stages"]["text"]["file"]);
    copy.write_manifest(m);
    const auto ex = load(copy.dir(), dfma::Stages::automatic);
    CHECK_EQ(ex.info().stages, std::string("whole"));
    CHECK(ex.info().stages_reason.rfind("auto: whole graph (its stage graphs do not load (", 0) == 0);
    CHECK(ex.info().stages_reason.find("the vision stage needs inputs pixel_values, image_mask") != std::string::npos);
    CHECK(max_abs_diff(ex.predict(toy_cases()[2].sample).logits, toy_cases()[2].logits) <= 1e-5f);
    CHECK_THROWS(load(copy.dir(), dfma::Stages::two_stage), BundleError, "the vision stage needs inputs");
    m.erase("stages");  // stage files but no stages io: no stage graphs, as in Python
    copy.write_manifest(m);
    const auto no_io = load(copy.dir(), dfma::Stages::automatic);
    CHECK_EQ(no_io.info().stages_reason,
             std::string("auto: whole graph (graph 'portable' has stage files but the manifest has no stages.vision / "
                         "stages.text io)"));
}

TEST(manifest_stage_entries_are_checked) {
    BundleCopy copy;
    std::filesystem::copy(check::data_dir() + "/toy_two_stage", copy.dir(),
                          std::filesystem::copy_options::recursive | std::filesystem::copy_options::overwrite_existing);
    const auto good = copy.manifest();
    CHECK(good["graphs"]["portable"].contains("stages"));
    auto edited = [&](auto&& edit) {
        auto m = good;
        edit(m);
        copy.write_manifest(m);
        return copy.dir();
    };
    CHECK_THROWS(Extractor::load(edited([](auto& m) { m["graphs"]["portable"]["stages"]["vision"]["file"] = "model.gone.onnx"; })),
                 BundleError, "field 'graphs.portable.stages.vision.file' is \"model.gone.onnx\", not listed in files");
    CHECK_THROWS(Extractor::load(edited([](auto& m) { m["graphs"]["portable"]["stages"]["text"]["file"] = 7; })),
                 BundleError, "field 'graphs.portable.stages.text.file' must be a string, got 7");
    CHECK_THROWS(Extractor::load(edited([](auto& m) { m["graphs"]["portable"]["stages"]["text"].erase("file"); })),
                 BundleError, "field 'graphs.portable.stages.text.file' missing");
    CHECK_THROWS(Extractor::load(edited([](auto& m) { m["graphs"]["portable"]["stages"].erase("vision"); })),
                 BundleError, "field 'graphs.portable.stages.vision' missing");
    CHECK_THROWS(Extractor::load(edited([](auto& m) { m["graphs"]["portable"]["stages"] = "model.vision.onnx"; })),
                 BundleError, "field 'graphs.portable.stages' must be of type dict, got str");
    CHECK_THROWS(Extractor::load(edited([](auto& m) { m["stages"] = nlohmann::json::array(); })), BundleError,
                 "field 'stages' must be of type dict, got list");
    CHECK_THROWS(Extractor::load(edited([](auto& m) { m["files"].erase("model.text.onnx"); })), BundleError,
                 "field 'graphs.portable.stages.text.file' is \"model.text.onnx\", not listed in files");
    // the stage graphs' files are hashed like every file
    copy.write_manifest(good);
    CHECK_EQ(std::string(Extractor::load(copy.dir()).info().stages), std::string("two-stage"));
    copy.write("model.vision.onnx", "tampered");
    CHECK_THROWS(Extractor::load(copy.dir()), BundleError, "model.vision.onnx: size");
}
