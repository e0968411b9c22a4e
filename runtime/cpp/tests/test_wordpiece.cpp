// BERT normalization + pre-tokenization + WordPiece, on an in-memory vocabulary and on the toy bundle.
#include <fstream>

#include <nlohmann/json.hpp>

#include "check.hpp"
#include "dfma/errors.hpp"
#include "dfma/text.hpp"
#include "unicode.hpp"
#include "wordpiece.hpp"

namespace {

const std::vector<std::string> kVocab = {
    "[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "<s>", "</s>", "<o>", "</o>",
    "hello", "world", "cafe", "##s", "un", "##aff", "##able", "!", ",", "#", "@", "中", "文",
    "σ", "i", "obama", "'", "s", "x", "##x", "ᄒ", "##ᅡ", "##ᆫ", "a"};

dfma::TextEncoder encoder(int max_length = 32) {
    dfma::TextConfig cfg;
    cfg.max_length = max_length;
    return dfma::TextEncoder::from_vocab(kVocab, cfg);
}

std::vector<std::string> pieces(const dfma::TextEncoder& enc, const std::vector<std::string>& words) {
    std::vector<std::string> out;
    for (auto id : enc.tokenize_words(words)) out.push_back(kVocab.at(static_cast<std::size_t>(id)));
    return out;
}

std::string joined(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : " ") + x;
    return s;
}

}  // namespace

TEST(normalize_lowercase_accents_punctuation) {
    auto enc = encoder();
    CHECK_EQ(joined(pieces(enc, {"Hello,", "WORLD!"})), std::string("hello , world !"));
    CHECK_EQ(joined(pieces(enc, {"Café"})), std::string("cafe"));                  // NFD + strip accent
    CHECK_EQ(joined(pieces(enc, {"CAFE\xCC\x81S"})), std::string("cafe ##s"));     // combining mark dropped
    CHECK_EQ(joined(pieces(enc, {"unaffable"})), std::string("un ##aff ##able"));  // greedy longest match
    CHECK_EQ(joined(pieces(enc, {"#Obama"})), std::string("# obama"));
    CHECK_EQ(joined(pieces(enc, {"@hello"})), std::string("@ hello"));
    CHECK_EQ(joined(pieces(enc, {"Obama's"})), std::string("obama ' s"));
    CHECK_EQ(joined(pieces(enc, {"中文"})), std::string("中 文"));                  // CJK split
    CHECK_EQ(joined(pieces(enc, {"\xCE\xA3"})), std::string("σ"));                 // Σ -> σ
    CHECK_EQ(joined(pieces(enc, {"\xC4\xB0"})), std::string("i"));                 // İ -> I + dot -> i
    CHECK_EQ(joined(pieces(enc, {"한"})), std::string("ᄒ ##ᅡ ##ᆫ"));               // Hangul NFD (jamo)
}

TEST(clean_text_and_whitespace) {
    auto enc = encoder();
    CHECK_EQ(joined(pieces(enc, {std::string("hel\x00lo", 6)})), std::string("hello"));  // NUL removed
    CHECK_EQ(joined(pieces(enc, {"hel\xE2\x80\x8Blo"})), std::string("hello"));          // U+200B removed
    CHECK_EQ(joined(pieces(enc, {"hello\xEF\xBF\xBDworld"})), std::string("[UNK]"));     // U+FFFD removed
    CHECK_EQ(joined(pieces(enc, {"hello\tworld"})), std::string("hello world"));         // split on tab
    CHECK_EQ(joined(pieces(enc, {"hello\xE3\x80\x80world"})), std::string("hello world"));  // U+3000
    CHECK(pieces(enc, {"\x01\x02"}).empty());                                              // nothing left
    CHECK(pieces(enc, {""}).empty());
}

TEST(unknown_and_long_words) {
    auto enc = encoder();
    CHECK_EQ(joined(pieces(enc, {"zzz"})), std::string("[UNK]"));
    CHECK_EQ(joined(pieces(enc, {"hello", "zzz,", "world"})), std::string("hello [UNK] , world"));
    CHECK_EQ(joined(pieces(enc, {std::string(100, 'x')})).size(), std::string("x").size() + 99 * 4);
    CHECK_EQ(joined(pieces(enc, {std::string(101, 'x')})), std::string("[UNK]"));  // > 100 characters
    CHECK_EQ(joined(pieces(enc, {"😀"})), std::string("[UNK]"));
    CHECK_THROWS(enc.tokenize_words({"ok", "\xC3"}), dfma::InputError, "word 1 is not valid UTF-8");
    CHECK_THROWS(enc.tokenize_words({"\xED\xA0\x80"}), dfma::InputError, "UTF-8");  // surrogate
    CHECK_THROWS(enc.tokenize_words({"\xC0\xAF"}), dfma::InputError, "UTF-8");      // overlong
}

TEST(markers_are_never_forged_by_text) {
    auto enc = encoder();
    // A literal "<s>" in the text is tokenized as text, so the real head marker stays the first <s>.
    auto e = enc.encode({"<s>", "hello", "world"}, {1, 2}, {2, 3});
    CHECK_EQ(e.input_ids.front(), 2);  // [CLS]
    CHECK_EQ(e.input_ids.back(), 3);   // [SEP]
    CHECK_EQ(e.input_ids[static_cast<std::size_t>(e.head_pos)], 5);
    CHECK_EQ(e.input_ids[static_cast<std::size_t>(e.tail_pos)], 7);
    CHECK_EQ(e.head_pos, 4);  // [CLS] [UNK](<) s [UNK](>) <s>: "<" and ">" are punctuation pieces
}

TEST(encode_matches_python_on_toy_samples) {
    nlohmann::json expected;
    std::ifstream(check::data_dir() + "/expected.json") >> expected;
    auto enc = dfma::TextEncoder::from_bundle(check::data_dir() + "/toy_bundle");
    for (const auto& s : expected["samples"]) {
        std::vector<std::string> words = s["words"];
        auto e = enc.encode(words, {s["head"][0], s["head"][1]}, {s["tail"][0], s["tail"][1]});
        CHECK(e.input_ids == s["input_ids"].get<std::vector<std::int64_t>>());
        CHECK_EQ(e.head_pos, s["head_pos"].get<int>());
        CHECK_EQ(e.tail_pos, s["tail_pos"].get<int>());
        CHECK(e.input_ids.size() <= 16u);
    }
}

TEST(vocab_file_errors) {
    dfma::TextConfig cfg;
    CHECK_THROWS(dfma::TextEncoder::from_vocab_file("no/such/vocab.txt", cfg), dfma::BundleError, "no/such/vocab.txt");
    const std::string path = "wordpiece_test_vocab.txt";
    std::ofstream(path) << "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\nhello\n";
    CHECK_THROWS(dfma::TextEncoder::from_vocab_file(path, cfg), dfma::BundleError, ":7: duplicate piece");
    std::ofstream(path) << "[PAD]\n[UNK]\n[CLS]\n[MASK]\nhello\n";
    CHECK_THROWS(dfma::TextEncoder::from_vocab_file(path, cfg), dfma::BundleError, "lacks [SEP]");
    // markers missing from vocab.txt are appended after the last id, as dfma.tokenizer does
    std::ofstream(path) << "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\nhello\n";
    auto enc = dfma::TextEncoder::from_vocab_file(path, cfg);
    auto e = enc.encode({"hello"}, {0, 1}, {0, 1});
    CHECK(e.input_ids == std::vector<std::int64_t>({2, 6, 8, 5, 9, 7, 3}));
    std::remove(path.c_str());
}

TEST(tables_version_recorded) { CHECK(std::string(dfma::detail::unicode_tables_version()).size() > 0); }

TEST(normalizer_matches_tokenizers_including_nfd_reordering) {
    nlohmann::json expected;
    std::ifstream(check::data_dir() + "/expected.json") >> expected;
    for (const char* name : {"uncased", "cased"}) {
        dfma::detail::WordPieceSettings s;
        s.lowercase = s.strip_accents = std::string(name) == "uncased";
        const dfma::detail::WordPiece wp({{"[UNK]", 0}}, s);
        int bad = 0;
        for (const auto& c : expected["normalize"][name]) {
            std::string got;
            for (char32_t ch : wp.normalize(c[0].get<std::string>())) dfma::detail::utf8_append(got, ch);
            bad += got != c[1].get<std::string>();
        }
        if (bad) check::fail(__FILE__, __LINE__, std::string(name) + ": " + std::to_string(bad) + " words differ");
    }
}
