// End to end on the toy bundle: C++ logits equal the Python pipeline's (onnxruntime on the same graph),
// batching, chunking by max_batch, and bad input that leaves the extractor usable.
// With DFMA_TEST_BUNDLE=<folder> set, also smoke-tests that bundle.
#include <cmath>
#include <cstdlib>

#include "check.hpp"
#include "dfma/errors.hpp"
#include "dfma/extractor.hpp"
#include "toy_samples.hpp"

using dfma::Extractor;

namespace {
const Extractor& toy() {
    static const Extractor ex = Extractor::load(check::data_dir() + "/toy_bundle");
    return ex;
}
}  // namespace

TEST(single_predictions_match_python) {
    for (const auto& c : toy_cases()) {
        const auto p = toy().predict(c.sample);
        const float err = max_abs_diff(p.logits, c.logits);
        if (!(err <= 1e-5f)) check::fail(__FILE__, __LINE__, "logits differ by " + std::to_string(err));
        const int best = static_cast<int>(std::max_element(c.logits.begin(), c.logits.end()) - c.logits.begin());
        CHECK_EQ(p.label_id, best);
        CHECK_EQ(p.label, toy().info().labels[static_cast<std::size_t>(best)]);
        float sum = 0.f;
        for (float v : p.probabilities) sum += v;
        CHECK(std::fabs(sum - 1.f) < 1e-5f);
        CHECK_EQ(p.probability, p.probabilities[static_cast<std::size_t>(p.label_id)]);
    }
}

TEST(batch_equals_single_and_chunks_by_max_batch) {
    const auto cases = toy_cases();  // 7 samples, max_batch 4: chunks of 4 and 3
    std::vector<dfma::Sample> samples;
    for (const auto& c : cases) samples.push_back(c.sample);
    const auto preds = toy().predict_batch(samples);
    CHECK_EQ(preds.size(), cases.size());
    for (std::size_t i = 0; i < preds.size() && i < cases.size(); ++i) {
        const float err = max_abs_diff(preds[i].logits, cases[i].logits);
        if (!(err <= 1e-5f)) check::fail(__FILE__, __LINE__, "sample " + std::to_string(i) + " differs by " + std::to_string(err));
    }
    CHECK(toy().predict_batch({}).empty());
}

TEST(bad_input_is_reported_and_the_extractor_stays_usable) {
    auto s = toy_cases()[1].sample;
    auto bad = s;
    bad.head = {3, 40};
    CHECK_THROWS(toy().predict(bad), dfma::InputError, "head: span (3, 40) must satisfy 0 <= start < end <= 9");
    bad = s;
    bad.tail = {2, 2};
    CHECK_THROWS(toy().predict(bad), dfma::InputError, "tail: span (2, 2)");
    bad = s;
    bad.words.clear();
    CHECK_THROWS(toy().predict(bad), dfma::InputError, "empty");
    bad = s;
    bad.crops.assign(4, s.image);
    CHECK_THROWS(toy().predict(bad), dfma::InputError, "got 4 crops, at most 3");
    bad = s;
    bad.image = dfma::Image::from_encoded({0xFF, 0xD8, 0xFF, 0xE0, 0, 0x10});
    CHECK_THROWS(toy().predict(bad), dfma::ImageError, "truncated or corrupt");
    bad.image = dfma::Image::from_file("/no/such/image.jpg");
    CHECK_THROWS(toy().predict(bad), dfma::ImageError, "/no/such/image.jpg: no such image file");
    CHECK_THROWS(toy().predict_batch({s, s, bad}), dfma::ImageError, "samples[2].");
    bad = s;
    bad.words[0] = "\xC3";
    CHECK_THROWS(toy().predict_batch({bad}), dfma::InputError, "samples[0].words: word 0 is not valid UTF-8");
    // still fine afterwards
    CHECK(max_abs_diff(toy().predict(s).logits, toy_cases()[1].logits) <= 1e-5f);
}

TEST(images_change_the_logits_absent_slots_do_not) {
    auto s = toy_cases()[0].sample;  // no image
    const auto base = toy().predict(s).logits;
    s.image = dfma::Image::from_rgb(12, 9, std::vector<std::uint8_t>(12 * 9 * 3, 200));
    CHECK(max_abs_diff(toy().predict(s).logits, base) > 1e-3f);
}

TEST(real_bundle_from_environment) {
    const char* dir = std::getenv("DFMA_TEST_BUNDLE");
    if (!dir || !*dir) {
        std::cout << "     (DFMA_TEST_BUNDLE not set: real-bundle smoke test skipped)\n";
        return;
    }
    const auto ex = Extractor::load(dir);
    dfma::Sample s;
    s.words = {"RT", "@AFP", ":", "UN", "says", "ceasefire", "agreed", "in", "Libya"};
    s.head = {3, 4};
    s.tail = {8, 9};
    s.image = dfma::Image::from_rgb(64, 48, std::vector<std::uint8_t>(64 * 48 * 3, 90));
    const auto p = ex.predict(s);
    CHECK_EQ(p.logits.size(), ex.info().labels.size());
    for (float v : p.logits) CHECK(std::isfinite(v));
}
