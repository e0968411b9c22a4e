// predict_pairs: the pair expansion and its errors (entity_pairs.hpp, no bundle), then on the toy bundles
// (whole graph and stage graphs): one prediction per ordered pair, each equal to the single request.
#include <cmath>
#include <string>

#include "check.hpp"
#include "dfma/errors.hpp"
#include "dfma/extractor.hpp"
#include "entity_pairs.hpp"
#include "toy_samples.hpp"
#include "unicode.hpp"

using dfma::EntityPair;
using dfma::InputError;
using dfma::Span;
using dfma::detail::expand_pairs;

namespace {

// The field() of the InputError `f` throws ("" when it throws nothing, "?" for another type).
template <typename F>
std::string field_of(F&& f) {
    try {
        f();
    } catch (const InputError& e) {
        return e.field();
    } catch (...) {
        return "?";
    }
    return "";
}

const std::vector<std::string> kWords = {"Barack", "Obama", "visits", "Paris", "with", "Michelle", "and", "the", "UN", "."};
const std::vector<Span> kEntities = {{0, 2}, {3, 4}, {5, 6}, {8, 9}};

dfma::Image image(std::uint8_t shade) {
    std::vector<std::uint8_t> rgb(13 * 11 * 3);
    for (std::size_t i = 0; i < rgb.size(); ++i) rgb[i] = static_cast<std::uint8_t>(shade + 7 * i);
    return dfma::Image::from_rgb(13, 11, std::move(rgb));
}

}  // namespace

TEST(all_pairs_in_order) {
    const auto pairs = expand_pairs(4, std::nullopt, 4096);
    CHECK_EQ(pairs.size(), 12u);
    std::vector<std::pair<int, int>> got;
    for (const auto& p : pairs) got.emplace_back(p.head, p.tail);
    const std::vector<std::pair<int, int>> want = {{0, 1}, {0, 2}, {0, 3}, {1, 0}, {1, 2}, {1, 3},
                                                   {2, 0}, {2, 1}, {2, 3}, {3, 0}, {3, 1}, {3, 2}};
    CHECK(got == want);
    CHECK_EQ(expand_pairs(2, std::nullopt, 4096).size(), 2u);
}

TEST(listed_pairs_are_kept_in_order) {
    const std::vector<EntityPair> listed = {{2, 0}, {0, 1}, {2, 0}};  // a repeat is predicted twice
    const auto pairs = expand_pairs(3, listed, 4096);
    CHECK_EQ(pairs.size(), 3u);
    CHECK(pairs[0].head == 2 && pairs[0].tail == 0 && pairs[1].head == 0 && pairs[2].head == 2);
}

TEST(pair_errors_name_the_field) {
    CHECK_THROWS(expand_pairs(3, std::vector<EntityPair>{}, 4096), InputError, "pairs: is empty");  // as Python: a line never vanishes
    CHECK_THROWS(expand_pairs(3, std::vector<EntityPair>{{0, 1}, {1, 3}}, 4096), InputError,
                 "pairs[1]: entity indices (1, 3) out of range: there are 3 entities");
    CHECK_EQ(field_of([] { expand_pairs(3, std::vector<EntityPair>{{0, 1}, {1, 3}}, 4096); }), std::string("pairs[1]"));
    CHECK_THROWS(expand_pairs(3, std::vector<EntityPair>{{-1, 0}}, 4096), InputError, "pairs[0]: entity indices (-1, 0) out of range");
    CHECK_THROWS(expand_pairs(3, std::vector<EntityPair>{{0, 1}, {0, 2}, {2, 2}}, 4096), InputError,
                 "pairs[2]: head and tail are the same entity (2); a pair needs two");
    CHECK_EQ(field_of([] { expand_pairs(3, std::vector<EntityPair>{{2, 2}}, 4096); }), std::string("pairs[0]"));
    // bounded: every pair is a row
    CHECK_THROWS(expand_pairs(65, std::nullopt, 4096), InputError,
                 "pairs: 65 entities make 4160 ordered pairs, over max_batch_requests 4096; give a list of pairs");
    CHECK_EQ(field_of([] { expand_pairs(65, std::nullopt, 4096); }), std::string("pairs"));
    CHECK_EQ(expand_pairs(65, std::vector<EntityPair>{{64, 0}}, 4096).size(), 1u);
    CHECK_THROWS(expand_pairs(3, std::vector<EntityPair>(5, EntityPair{0, 1}), 4), InputError,
                 "pairs: 5 pairs exceeds max_batch_requests 4");
}

TEST(entity_errors_name_the_field) {
    using dfma::detail::check_entities_in_text;
    using dfma::detail::check_entities_in_words;
    using dfma::detail::check_entity_count;
    CHECK_THROWS(check_entity_count(1, 4096), InputError, "entities: needs at least two entities to pair, got 1");
    CHECK_EQ(field_of([] { check_entity_count(0, 4096); }), std::string("entities"));
    CHECK_THROWS(check_entity_count(5, 4), InputError, "entities: 5 entities exceeds max_batch_requests 4");
    CHECK_THROWS(check_entities_in_words(kWords, {{0, 2}, {3, 4}, {9, 11}}), InputError,
                 "entities[2]: span (9, 11) must satisfy 0 <= start < end <= 10 (word indices)");
    CHECK_EQ(field_of([] { check_entities_in_words(kWords, {{0, 2}, {4, 4}}); }), std::string("entities[1]"));
    CHECK_THROWS(check_entities_in_words(kWords, {{0, 2}, {3, 4}, {5, 6}, {3, 4}}), InputError,
                 "entities[3]: span (3, 4) is given twice (also entities[1])");
    CHECK_EQ(field_of([] { check_entities_in_words(kWords, {{0, 2}, {3, 4}, {0, 2}}); }), std::string("entities[2]"));
    // overlapping but different spans are fine, as head and tail may overlap in a single request
    check_entities_in_words(kWords, {{0, 2}, {1, 3}, {0, 1}});
    std::vector<std::string> spaced = {"a", " ", "\t", "b"};
    CHECK_THROWS(check_entities_in_words(spaced, {{0, 1}, {1, 3}}), InputError, "entities[1]: span (1, 3) covers only whitespace");
    spaced[2] = "\xC3";
    CHECK_THROWS(check_entities_in_words(spaced, {{0, 1}, {3, 4}}), InputError, "sentence: word 2 is not valid UTF-8");
    CHECK_THROWS(check_entities_in_words({}, {{0, 1}, {1, 2}}), InputError, "sentence: the word list is empty");
    std::u32string chars;
    dfma::detail::utf8_decode("Obama met Macron  in Paris", chars);
    check_entities_in_text(chars, {{0, 5}, {10, 16}, {21, 26}});
    CHECK_THROWS(check_entities_in_text(chars, {{0, 5}, {16, 18}}), InputError, "entities[1]: span (16, 18) covers only whitespace");
    CHECK_THROWS(check_entities_in_text(chars, {{0, 5}, {21, 27}}), InputError,
                 "entities[1]: span (21, 27) must satisfy 0 <= start < end <= 26 (characters)");
    CHECK_THROWS(check_entities_in_text(chars, {{0, 5}, {0, 5}}), InputError, "entities[1]: span (0, 5) is given twice (also entities[0])");
}

namespace {

// predict_pairs of a 4-entity sentence equals the 12 single requests, on `ex`.
void pairs_equal_singles(const dfma::Extractor& ex) {
    dfma::PairsSample ps;
    ps.words = kWords;
    ps.entities = kEntities;
    ps.image = image(10);
    ps.crops = {std::nullopt, image(90)};
    const auto preds = ex.predict_pairs(ps);
    CHECK_EQ(preds.size(), 12u);
    std::vector<dfma::Sample> singles;
    for (const auto& p : preds) {
        dfma::Sample s;
        s.words = kWords;
        s.head = kEntities[static_cast<std::size_t>(p.head)];
        s.tail = kEntities[static_cast<std::size_t>(p.tail)];
        s.image = ps.image;
        s.crops = ps.crops;
        singles.push_back(s);
    }
    for (std::size_t i = 0; i < preds.size(); ++i) {
        const auto one = ex.predict(singles[i]);
        const float err = max_abs_diff(preds[i].logits, one.logits);
        if (!(err <= 1e-5f)) check::fail(__FILE__, __LINE__, "pair " + std::to_string(i) + " differs by " + std::to_string(err));
        CHECK_EQ(preds[i].label, one.label);
        CHECK(std::fabs(preds[i].probability - one.probability) <= 1e-6f);
    }
    CHECK(preds[0].head == 0 && preds[0].tail == 1 && preds[3].head == 1 && preds[3].tail == 0 && preds[11].head == 3);
    // listed pairs, in the listed order
    ps.pairs = std::vector<EntityPair>{{3, 1}, {0, 2}};
    const auto two = ex.predict_pairs(ps);
    CHECK_EQ(two.size(), 2u);
    CHECK(two.size() == 2 && two[0].head == 3 && two[0].tail == 1 && max_abs_diff(two[0].logits, preds[10].logits) <= 1e-5f);
    CHECK(two.size() == 2 && max_abs_diff(two[1].logits, preds[1].logits) <= 1e-5f);
}

// The raw-text form: each pair equals the single text request (the text cut at that pair's spans).
void text_pairs_equal_singles(const dfma::Extractor& ex) {
    dfma::PairsSample ps;
    ps.text = "Barack Obama visits Paris with Michelle and the UN.";
    ps.entities = {{0, 12}, {20, 25}, {31, 39}, {48, 50}};
    ps.crops = {image(40)};
    const auto preds = ex.predict_pairs(ps);
    CHECK_EQ(preds.size(), 12u);
    for (const auto& p : preds) {
        const auto ws = dfma::text_to_words(*ps.text, ps.entities[static_cast<std::size_t>(p.head)],
                                            ps.entities[static_cast<std::size_t>(p.tail)]);
        dfma::Sample s;
        s.words = ws.words;
        s.head = ws.head;
        s.tail = ws.tail;
        s.crops = ps.crops;
        CHECK(max_abs_diff(p.logits, ex.predict(s).logits) <= 1e-5f);
    }
}

}  // namespace

TEST(pairs_equal_single_requests_whole_graph) {
    dfma::Options o;
    o.stages = dfma::Stages::whole;
    const auto ex = dfma::Extractor::load(check::data_dir() + "/toy_bundle", o);  // max_batch 4: 3 chunks of texts
    CHECK_EQ(ex.info().stages, std::string("whole"));
    pairs_equal_singles(ex);
    text_pairs_equal_singles(ex);
}

TEST(pairs_equal_single_requests_two_stage) {
    dfma::Options o;
    o.stages = dfma::Stages::two_stage;
    const auto ex = dfma::Extractor::load(check::data_dir() + "/toy_two_stage", o);
    CHECK_EQ(ex.info().stages, std::string("two-stage"));
    pairs_equal_singles(ex);
    text_pairs_equal_singles(ex);
}

TEST(predict_pairs_checks_everything_first_and_keeps_serving) {
    const auto ex = dfma::Extractor::load(check::data_dir() + "/toy_two_stage");
    dfma::PairsSample good;
    good.words = kWords;
    good.entities = kEntities;
    auto field = [&](const dfma::PairsSample& s) { return field_of([&] { ex.predict_pairs(s); }); };
    auto bad = good;
    bad.entities.resize(1);
    CHECK_EQ(field(bad), std::string("entities"));
    bad = good;
    bad.entities[2] = bad.entities[0];
    CHECK_EQ(field(bad), std::string("entities[2]"));
    bad = good;
    bad.entities[1] = {3, 40};
    CHECK_EQ(field(bad), std::string("entities[1]"));
    bad = good;
    bad.pairs = std::vector<EntityPair>{{0, 1}, {1, 1}};
    CHECK_EQ(field(bad), std::string("pairs[1]"));
    bad.pairs = std::vector<EntityPair>{{0, 4}};
    CHECK_EQ(field(bad), std::string("pairs[0]"));
    bad.pairs = std::vector<EntityPair>{};
    CHECK_EQ(field(bad), std::string("pairs"));  // no pairs: refused, as in Python
    bad = good;
    bad.text = "Barack Obama";
    CHECK_EQ(field(bad), std::string("sentence"));  // text and words
    bad = good;
    bad.words.clear();
    CHECK_EQ(field(bad), std::string("sentence"));
    bad = good;
    bad.words.assign(20000, "w");  // over max_words
    CHECK_THROWS(ex.predict_pairs(bad), InputError, "sentence: 20000 words exceeds max_words");
    bad = good;
    bad.words = {};
    bad.text = "   ";
    CHECK_THROWS(ex.predict_pairs(bad), InputError, "sentence: the text is empty or whitespace only");
    bad = good;
    bad.crops.assign(4, std::nullopt);
    CHECK_EQ(field(bad), std::string("crops"));
    bad = good;
    bad.pairs = std::vector<EntityPair>{{0, 9}};
    bad.image = dfma::Image::from_file("/no/such/image.jpg");
    CHECK_EQ(field(bad), std::string("pairs[0]"));  // the request's fields before its images
    bad.pairs.reset();
    CHECK_THROWS(ex.predict_pairs(bad), dfma::ImageError, "/no/such/image.jpg: no such image file");
    CHECK_EQ(ex.predict_pairs(good).size(), 12u);  // still serving
}
