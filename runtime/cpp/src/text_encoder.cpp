// TextEncoder: markers (contract 2.1), word pieces (2.2), truncation (2.3), [CLS]/[SEP] (2.4).
#include <algorithm>
#include <array>
#include <filesystem>
#include <tuple>

#include <nlohmann/json.hpp>

#include "bundle.hpp"
#include "dfma/errors.hpp"
#include "dfma/text.hpp"
#include "text_rules.hpp"
#include "tokenizer_files.hpp"
#include "unicode.hpp"
#include "wordpiece.hpp"

namespace dfma {

struct TextEncoder::Impl {
    TextConfig config;
    detail::WordPiece wordpiece;
    std::int64_t cls, sep, head_open, head_close, tail_open, tail_close;

    explicit Impl(detail::TokenizerFiles t)
        : config(t.config), wordpiece(std::move(t.model_vocab), settings(t)) {
        auto id = [&](const std::string& s) { return t.special_ids.at(s); };
        cls = id(config.cls_token);
        sep = id(config.sep_token);
        head_open = id(config.head_open);
        head_close = id(config.head_close);
        tail_open = id(config.tail_open);
        tail_close = id(config.tail_close);
    }

    static detail::WordPieceSettings settings(const detail::TokenizerFiles& t) {
        detail::WordPieceSettings s;
        s.clean_text = t.config.clean_text;
        s.handle_chinese_chars = t.config.handle_chinese_chars;
        s.lowercase = t.config.lowercase;
        s.strip_accents = t.config.strip_accents.value_or(t.config.lowercase);
        s.unk_id = t.special_ids.at(t.config.unk_token);
        s.continuing_prefix = t.config.continuing_prefix;
        s.max_input_chars_per_word = static_cast<std::size_t>(t.config.max_input_chars_per_word);
        return s;
    }

    // Pieces of each word, and the index of the word each piece came from.
    void pieces(const std::vector<std::string>& words, std::vector<std::int64_t>& ids,
                std::vector<int>& word_of) const {
        for (std::size_t w = 0; w < words.size(); ++w) {
            if (!wordpiece.encode_word(words[w], ids))
                throw InputError("words: word " + std::to_string(w) + " is not valid UTF-8");
            word_of.resize(ids.size(), static_cast<int>(w));
        }
    }
};

TextEncoder::TextEncoder(std::shared_ptr<const Impl> impl) : impl_(std::move(impl)) {}
TextEncoder::~TextEncoder() = default;

namespace {
void check_max_length(int max_length) {
    if (max_length < detail::kMinMaxLength)
        throw BundleError("max_length must be at least " + std::to_string(detail::kMinMaxLength) + ", got " +
                          std::to_string(max_length));
}
}  // namespace

TextEncoder TextEncoder::from_vocab_file(const std::string& vocab_path, const TextConfig& config) {
    check_max_length(config.max_length);
    return TextEncoder(std::make_shared<const Impl>(detail::read_vocab_txt(vocab_path, config)));
}

TextEncoder TextEncoder::from_vocab(std::vector<std::string> vocab, const TextConfig& config) {
    check_max_length(config.max_length);
    detail::TokenizerFiles t;
    t.config = config;
    for (std::size_t i = 0; i < vocab.size(); ++i) t.model_vocab.emplace(vocab[i], static_cast<std::int64_t>(i));
    std::int64_t next = static_cast<std::int64_t>(vocab.size());
    for (const auto& tok : detail::special_tokens(config)) {
        auto it = t.model_vocab.find(tok);
        t.special_ids[tok] = it != t.model_vocab.end() ? it->second : next++;
    }
    if (!t.model_vocab.count(config.unk_token)) throw BundleError("the vocabulary lacks " + config.unk_token);
    return TextEncoder(std::make_shared<const Impl>(std::move(t)));
}

TextEncoder TextEncoder::from_folder(const std::string& folder, int max_length) {
    check_max_length(max_length);
    TextConfig config;
    config.max_length = max_length;
    namespace fs = std::filesystem;
    const std::string json = (fs::path(folder) / "tokenizer.json").string();
    const std::string vocab = (fs::path(folder) / "vocab.txt").string();
    std::error_code ec;
    if (fs::is_regular_file(json, ec))
        return TextEncoder(std::make_shared<const Impl>(
            detail::read_tokenizer_json(json, fs::is_regular_file(vocab, ec) ? vocab : "", config)));
    if (fs::is_regular_file(vocab, ec)) return from_vocab_file(vocab, config);
    throw BundleError(folder + ": no tokenizer.json or vocab.txt");
}

TextEncoder TextEncoder::from_bundle(const std::string& bundle_dir) {
    try {
        return from_opened_bundle(detail::Bundle::open(bundle_dir));
    } catch (const nlohmann::json::exception& e) {
        throw BundleError(bundle_dir + "/manifest.json: unexpected structure (" + e.what() + ")");
    }
}

TextEncoder TextEncoder::from_opened_bundle(const detail::Bundle& bundle) {
    TextConfig config;
    const auto& ml = bundle.at("preprocess/max_length");
    if (!ml.is_number_integer()) throw BundleError("manifest.json: preprocess/max_length must be an integer");
    config.max_length = ml.get<int>();
    check_max_length(config.max_length);
    detail::TokenizerFiles t;
    if (bundle.has_file("tokenizer.json")) {
        std::string vocab = bundle.has_file("vocab.txt") ? bundle.verified_path("vocab.txt") : "";
        t = detail::read_tokenizer_json(bundle.verified_path("tokenizer.json"), vocab, config);
    } else {
        t = detail::read_vocab_txt(bundle.verified_path("vocab.txt"), config);
    }
    // The manifest repeats the special tokens and their ids: they must be the tokenizer's.
    if (const auto* sp = bundle.find("preprocess/special_tokens"); sp && sp->is_object()) {
        for (const auto& [key, entry] : sp->items()) {
            if (!entry.is_object() || !entry.contains("token") || !entry.contains("id")) continue;
            const auto token = entry["token"].get<std::string>();
            auto it = t.special_ids.find(token);
            if (it == t.special_ids.end() || it->second != entry["id"].get<std::int64_t>())
                throw BundleError("manifest.json: preprocess/special_tokens/" + key + " says " + token + " = " +
                                  entry["id"].dump() + " but the tokenizer has " +
                                  (it == t.special_ids.end() ? std::string("no such special token") : std::to_string(it->second)));
        }
    }
    return TextEncoder(std::make_shared<const Impl>(std::move(t)));
}

const TextConfig& TextEncoder::config() const { return impl_->config; }

std::int64_t TextEncoder::token_id(const std::string& piece) const { return impl_->wordpiece.id(piece); }

std::vector<std::int64_t> TextEncoder::tokenize_words(const std::vector<std::string>& words) const {
    std::vector<std::int64_t> ids;
    std::vector<int> word_of;
    impl_->pieces(words, ids, word_of);
    return ids;
}

Encoded TextEncoder::encode(const std::vector<std::string>& words, Span head, Span tail) const {
    detail::validate_words(words, head, tail);
    const Impl& im = *impl_;
    std::vector<std::int64_t> ids;
    std::vector<int> word_of;
    im.pieces(words, ids, word_of);

    // Splice the markers in at their word boundaries (first piece of word >= boundary).
    std::vector<std::int64_t> pieces;
    pieces.reserve(ids.size() + 4);
    std::array<int, 4> at{};  // head_open, head_close, tail_open, tail_close
    std::size_t prev = 0;
    for (const auto& ev : detail::marker_plan(head, tail)) {
        std::size_t cut = std::lower_bound(word_of.begin(), word_of.end(), ev.boundary) - word_of.begin();
        pieces.insert(pieces.end(), ids.begin() + prev, ids.begin() + cut);
        at[ev.marker] = static_cast<int>(pieces.size());
        const std::int64_t marker_ids[4] = {im.head_open, im.head_close, im.tail_open, im.tail_close};
        pieces.push_back(marker_ids[ev.marker]);
        prev = cut;
    }
    pieces.insert(pieces.end(), ids.begin() + prev, ids.end());

    Encoded out;
    out.input_ids.push_back(im.cls);
    for (const auto& seg : detail::truncation_segments(static_cast<int>(pieces.size()), im.config.max_length,
                                                        at[0], at[2], at[1], at[3]))
        out.input_ids.insert(out.input_ids.end(), pieces.begin() + seg.first, pieces.begin() + seg.second);
    out.input_ids.push_back(im.sep);
    auto first = [&](std::int64_t id) {
        return static_cast<int>(std::find(out.input_ids.begin(), out.input_ids.end(), id) - out.input_ids.begin());
    };
    out.head_pos = first(im.head_open);
    out.tail_pos = first(im.tail_open);
    return out;
}

}  // namespace dfma
