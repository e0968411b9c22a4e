// Contract section 2 rules without a tokenizer: markers, truncation windows, validation, raw text.
#include <vector>

#include "check.hpp"
#include "dfma/errors.hpp"
#include "dfma/text.hpp"
#include "text_rules.hpp"

using dfma::Span;
using dfma::detail::marker_plan;
using dfma::detail::truncation_segments;

namespace {
const char* kNames[] = {"<s>", "</s>", "<o>", "</o>"};

// The marked word list of w0..w3, as dfma.text.insert_markers would build it.
std::vector<std::string> marked(Span head, Span tail) {
    std::vector<std::string> out;
    int prev = 0;
    for (const auto& ev : marker_plan(head, tail)) {
        for (int i = prev; i < ev.boundary; ++i) out.push_back("w" + std::to_string(i));
        out.push_back(kNames[ev.marker]);
        prev = ev.boundary;
    }
    for (int i = prev; i < 4; ++i) out.push_back("w" + std::to_string(i));
    return out;
}

std::string join(const std::vector<std::string>& v) {
    std::string s;
    for (const auto& x : v) s += (s.empty() ? "" : " ") + x;
    return s;
}
}  // namespace

TEST(marker_order_matches_python_table) {
    // Same table as tests/contract/test_text.py::test_insert_markers.
    CHECK_EQ(join(marked({1, 2}, {3, 4})), std::string("w0 <s> w1 </s> w2 <o> w3 </o>"));
    CHECK_EQ(join(marked({3, 4}, {0, 1})), std::string("<o> w0 </o> w1 w2 <s> w3 </s>"));
    CHECK_EQ(join(marked({1, 3}, {1, 3})), std::string("w0 <s> <o> w1 w2 </o> </s> w3"));
    CHECK_EQ(join(marked({0, 4}, {0, 4})), std::string("<s> <o> w0 w1 w2 w3 </o> </s>"));
    CHECK_EQ(join(marked({0, 4}, {1, 2})), std::string("<s> w0 <o> w1 </o> w2 w3 </s>"));
    CHECK_EQ(join(marked({1, 3}, {1, 4})), std::string("w0 <o> <s> w1 w2 </s> w3 </o>"));
    CHECK_EQ(join(marked({0, 3}, {2, 3})), std::string("<s> w0 w1 <o> w2 </o> </s> w3"));
    CHECK_EQ(join(marked({0, 2}, {1, 4})), std::string("<s> w0 <o> w1 </s> w2 w3 </o>"));
    CHECK_EQ(join(marked({2, 4}, {0, 3})), std::string("<o> w0 w1 <s> w2 </o> w3 </s>"));
    CHECK_EQ(join(marked({0, 2}, {2, 4})), std::string("<s> w0 w1 </s> <o> w2 w3 </o>"));
}

TEST(truncation_windows) {
    using Seg = std::vector<std::pair<int, int>>;
    CHECK(truncation_segments(6, 8, 0, 3, 2, 5) == Seg({{0, 6}}));
    CHECK(truncation_segments(14, 10, 4, 7, 6, 9) == Seg({{3, 11}}));
    CHECK(truncation_segments(14, 9, 4, 7, 6, 9) == Seg({{4, 11}}));
    CHECK(truncation_segments(14, 10, 0, 3, 2, 5) == Seg({{0, 8}}));
    CHECK(truncation_segments(14, 10, 11, 8, 13, 10) == Seg({{6, 14}}));
    // too far apart: two segments h1 = m - m // 2, h2 = m // 2
    CHECK(truncation_segments(40, 10, 2, 30, 4, 32) == Seg({{2, 6}, {30, 34}}));
    CHECK(truncation_segments(40, 11, 30, 2, 32, 4) == Seg({{2, 7}, {30, 34}}));
    CHECK(truncation_segments(40, 10, 2, 38, 4, 39) == Seg({{2, 6}, {36, 40}}));
    CHECK_THROWS(truncation_segments(10, 3, 0, 1, 2, 3), dfma::InputError, "max_length");
}

TEST(validation_messages) {
    std::vector<std::string> w = {"a", "b", " ", "c"};
    CHECK_THROWS(dfma::detail::validate_words({}, {0, 1}, {0, 1}), dfma::InputError, "empty");
    CHECK_THROWS(dfma::detail::validate_words(w, {0, 5}, {0, 1}), dfma::InputError, "head: span (0, 5)");
    CHECK_THROWS(dfma::detail::validate_words(w, {0, 1}, {2, 2}), dfma::InputError, "tail: span (2, 2)");
    CHECK_THROWS(dfma::detail::validate_words(w, {-1, 1}, {0, 1}), dfma::InputError, "0 <= start < end <= 4");
    CHECK_THROWS(dfma::detail::validate_words(w, {2, 3}, {0, 1}), dfma::InputError, "only whitespace");
    CHECK_THROWS(dfma::detail::validate_words({"a", "\xff"}, {1, 2}, {0, 1}), dfma::InputError, "UTF-8");
}

TEST(text_to_words_cuts_at_spans) {
    // "Obama visited Paris." with head = "Obama", tail = "Paris" (character spans, code points)
    auto r = dfma::text_to_words("Obama visited Paris.", {0, 5}, {14, 19});
    CHECK_EQ(join(r.words), std::string("Obama visited Paris ."));
    CHECK_EQ(r.head.start, 0);
    CHECK_EQ(r.head.end, 1);
    CHECK_EQ(r.tail.start, 2);
    CHECK_EQ(r.tail.end, 3);
    // code points, not bytes: "é" is one character
    auto u = dfma::text_to_words("café\u3000Paris", {0, 4}, {5, 10});
    CHECK_EQ(u.words.size(), std::size_t(2));
    CHECK_EQ(u.tail.start, 1);
    CHECK_THROWS(dfma::text_to_words("  ", {0, 1}, {0, 1}), dfma::InputError, "whitespace only");
    CHECK_THROWS(dfma::text_to_words("ab cd", {0, 9}, {0, 1}), dfma::InputError, "character offsets");
    CHECK_THROWS(dfma::text_to_words("ab cd", {2, 3}, {0, 1}), dfma::InputError, "only whitespace");
}
