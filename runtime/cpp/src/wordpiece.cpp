#include "wordpiece.hpp"

#include "unicode.hpp"

namespace dfma::detail {

WordPiece::WordPiece(std::unordered_map<std::string, std::int64_t> vocab, WordPieceSettings settings)
    : vocab_(std::move(vocab)), settings_(std::move(settings)) {}

std::int64_t WordPiece::id(const std::string& piece) const {
    auto it = vocab_.find(piece);
    return it == vocab_.end() ? -1 : it->second;
}

// BertNormalizer: clean_text, handle_chinese_chars, strip_accents (NFD + drop non-spacing marks, with
// NFD's canonical reordering of what is kept), lowercase; one character at a time.
void WordPiece::normalize_into(const std::u32string& in, std::u32string& out) const {
    std::u32string stripped;
    std::size_t run = out.size();  // start of the current run of kept non-starters (reordered by class)
    auto emit = [&](char32_t c) {
        const unsigned rank = settings_.strip_accents ? combining_rank(c) : 0;
        if (rank == 0) {
            if (settings_.lowercase) append_lowercase(c, out);
            else out.push_back(c);
            run = out.size();
            return;
        }
        std::size_t at = out.size();  // stable insertion by class (lowercase leaves these unchanged)
        while (at > run && combining_rank(out[at - 1]) > rank) --at;
        out.insert(out.begin() + static_cast<std::ptrdiff_t>(at), c);
    };
    for (char32_t cp : in) {
        if (settings_.clean_text) {
            if (is_removed(cp)) continue;
            if (is_bert_whitespace(cp)) { emit(U' '); continue; }
        }
        const bool pad = settings_.handle_chinese_chars && is_chinese(cp);
        if (pad) emit(U' ');
        stripped.clear();
        if (settings_.strip_accents) {
            if (!append_strip_accents(cp, stripped)) run = out.size();  // a dropped starter ends the run
        } else {
            stripped.push_back(cp);
        }
        for (char32_t c : stripped) emit(c);
        if (pad) emit(U' ');
    }
}

std::u32string WordPiece::normalize(std::string_view word) const {
    std::u32string chars, out;
    if (!utf8_decode(word, chars)) return {};
    normalize_into(chars, out);
    return out;
}

// Greedy longest-match-first over one pre-token [begin, end) of `chars`; [UNK] for the whole
// pre-token when it is too long or some remainder has no match.
void WordPiece::encode_pretoken(const std::u32string& chars, std::size_t begin, std::size_t end,
                                std::vector<std::int64_t>& out) const {
    if (end - begin > settings_.max_input_chars_per_word) {
        out.push_back(settings_.unk_id);
        return;
    }
    std::string utf8;
    std::vector<std::size_t> offset;  // byte offset of each character, plus the end
    for (std::size_t i = begin; i < end; ++i) {
        offset.push_back(utf8.size());
        utf8_append(utf8, chars[i]);
    }
    offset.push_back(utf8.size());
    const std::size_t n = end - begin;
    const std::size_t mark = out.size();
    std::string candidate;
    for (std::size_t start = 0; start < n;) {
        std::size_t stop = n;
        std::int64_t found = -1;
        for (; stop > start; --stop) {
            candidate.clear();
            if (start > 0) candidate = settings_.continuing_prefix;
            candidate.append(utf8, offset[start], offset[stop] - offset[start]);
            auto it = vocab_.find(candidate);
            if (it != vocab_.end()) { found = it->second; break; }
        }
        if (found < 0) {
            out.resize(mark);
            out.push_back(settings_.unk_id);
            return;
        }
        out.push_back(found);
        start = stop;
    }
}

bool WordPiece::encode_word(std::string_view word, std::vector<std::int64_t>& out) const {
    std::u32string chars, norm;
    if (!utf8_decode(word, chars)) return false;
    normalize_into(chars, norm);
    // BertPreTokenizer: split on whitespace (dropped), isolate each punctuation character.
    std::size_t start = 0;
    for (std::size_t i = 0; i <= norm.size(); ++i) {
        bool at_end = i == norm.size();
        bool ws = !at_end && is_split_whitespace(norm[i]);
        bool punct = !at_end && !ws && is_punctuation(norm[i]);
        if (at_end || ws || punct) {
            if (i > start) encode_pretoken(norm, start, i, out);
            if (punct) encode_pretoken(norm, i, i + 1, out);
            start = i + 1;
        }
    }
    return true;
}

}  // namespace dfma::detail
