#include "text_rules.hpp"

#include <algorithm>
#include <map>
#include <set>
#include <tuple>

#include "dfma/errors.hpp"
#include "unicode.hpp"

namespace dfma::detail {

std::string span_text(Span s) { return "(" + std::to_string(s.start) + ", " + std::to_string(s.end) + ")"; }

void check_span(Span s, std::size_t limit, const std::string& field, const char* unit) {
    if (!(0 <= s.start && s.start < s.end && static_cast<std::size_t>(s.end) <= limit))
        throw InputError(field + ": span " + span_text(s) + " must satisfy 0 <= start < end <= " +
                         std::to_string(limit) + " (" + unit + ")", field);
}

bool all_space(const std::u32string& s) {
    return std::all_of(s.begin(), s.end(), is_python_space);
}

void validate_words(const std::vector<std::string>& words, Span head, Span tail) {
    if (words.empty()) throw InputError("words: the word list is empty");
    for (const auto& [field, span] : {std::pair<const char*, Span>{"head", head}, {"tail", tail}}) {
        check_span(span, words.size(), field, "word indices");
        std::u32string joined;
        for (int i = span.start; i < span.end; ++i) {
            if (!utf8_decode(words[i], joined))
                throw InputError("words: word " + std::to_string(i) + " is not valid UTF-8");
        }
        if (all_space(joined))
            throw InputError(std::string(field) + ": span " + span_text(span) + " covers only whitespace");
    }
}

std::vector<MarkerEvent> marker_plan(Span head, Span tail) {
    // (boundary, closers before openers, later start closes first / later end opens first, tie-break)
    using Key = std::tuple<int, int, int, int, int>;
    std::vector<Key> ev = {
        {head.end, 0, -head.start, 1, 1},   // </s>
        {tail.end, 0, -tail.start, 0, 3},   // </o>
        {head.start, 1, -head.end, 0, 0},   // <s>
        {tail.start, 1, -tail.end, 1, 2},   // <o>
    };
    std::sort(ev.begin(), ev.end());
    std::vector<MarkerEvent> out;
    for (const auto& k : ev) out.push_back({std::get<0>(k), std::get<4>(k)});
    return out;
}

std::vector<std::pair<int, int>> truncation_segments(int n, int max_length, int head_open, int tail_open,
                                                     int head_close, int tail_close) {
    const int m = max_length - 2;
    if (m < kMinMaxLength - 2)
        throw InputError("max_length: must be at least " + std::to_string(kMinMaxLength) + ", got " +
                         std::to_string(max_length));
    if (n <= m) return {{0, n}};
    const int lo = std::min(head_open, tail_open);
    const int hi = 1 + std::max(head_close, tail_close);
    auto floor_div2 = [](int x) { return x >= 0 ? x / 2 : -((-x + 1) / 2); };
    if (hi - lo <= m) {
        const int a = std::min(std::max(lo - floor_div2(m - (hi - lo)), 0), n - m);
        return {{a, a + m}};
    }
    const int h1 = m - m / 2, h2 = m / 2;
    const int lo1 = std::min(head_open, tail_open), lo2 = std::max(head_open, tail_open);
    const int s2 = std::min(std::max(lo2, lo1 + h1), n - h2);
    return {{lo1, lo1 + h1}, {s2, s2 + h2}};
}

}  // namespace dfma::detail

namespace dfma {

WordsAndSpans text_to_words(const std::string& text, Span head_chars, Span tail_chars) {
    std::u32string chars;
    if (!detail::utf8_decode(text, chars)) throw InputError("text: not valid UTF-8");
    if (std::all_of(chars.begin(), chars.end(), detail::is_python_space))
        throw InputError("text: the text is empty or whitespace only");
    for (const auto& [field, span] : {std::pair<const char*, Span>{"head", head_chars}, {"tail", tail_chars}}) {
        detail::check_span(span, chars.size(), field, "character offsets");
        if (detail::all_space(chars.substr(span.start, span.end - span.start)))
            throw InputError(std::string(field) + ": span " + detail::span_text(span) + " covers only whitespace");
    }
    std::set<int> cut_set = {0, static_cast<int>(chars.size()), head_chars.start, head_chars.end,
                             tail_chars.start, tail_chars.end};
    std::vector<int> cuts(cut_set.begin(), cut_set.end());
    WordsAndSpans out;
    std::map<int, int> word_at = {{0, 0}};
    for (std::size_t k = 0; k + 1 < cuts.size(); ++k) {
        std::string word;
        bool in_word = false;
        for (int i = cuts[k]; i < cuts[k + 1]; ++i) {
            if (detail::is_python_space(chars[i])) {
                if (in_word) out.words.push_back(std::move(word)), word.clear();
                in_word = false;
            } else {
                detail::utf8_append(word, chars[i]);
                in_word = true;
            }
        }
        if (in_word) out.words.push_back(std::move(word));
        word_at[cuts[k + 1]] = static_cast<int>(out.words.size());
    }
    out.head = {word_at[head_chars.start], word_at[head_chars.end]};
    out.tail = {word_at[tail_chars.start], word_at[tail_chars.end]};
    return out;
}

}  // namespace dfma
