#include "unicode.hpp"

#include <algorithm>

#include "unicode_tables.hpp"

namespace dfma::detail {
namespace {

using tables::CodeMap;
using tables::CodeRange;

bool in_ranges(const CodeRange* r, std::size_t n, char32_t cp) {
    const CodeRange* end = r + n;
    const CodeRange* it = std::upper_bound(r, end, cp, [](char32_t c, const CodeRange& x) { return c < x.first; });
    return it != r && cp <= (it - 1)->last;
}

bool append_mapped(const CodeMap* m, std::size_t n, const char32_t* pool, char32_t cp, std::u32string& out) {
    const CodeMap* end = m + n;
    const CodeMap* it = std::lower_bound(m, end, cp, [](const CodeMap& x, char32_t c) { return x.cp < c; });
    if (it == end || it->cp != cp) return false;
    out.append(pool + it->offset, it->length);
    return true;
}

}  // namespace

bool utf8_decode(std::string_view s, std::u32string& out) {
    std::size_t i = 0, n = s.size();
    while (i < n) {
        unsigned char c = static_cast<unsigned char>(s[i]);
        char32_t cp;
        int extra;
        if (c < 0x80) { out.push_back(c); ++i; continue; }
        if (c >= 0xC2 && c <= 0xDF) { cp = c & 0x1F; extra = 1; }
        else if (c >= 0xE0 && c <= 0xEF) { cp = c & 0x0F; extra = 2; }
        else if (c >= 0xF0 && c <= 0xF4) { cp = c & 0x07; extra = 3; }
        else return false;
        for (int k = 1; k <= extra; ++k) {
            if (i + static_cast<std::size_t>(k) >= n) return false;
            unsigned char cc = static_cast<unsigned char>(s[i + k]);
            if ((cc & 0xC0) != 0x80) return false;
            cp = (cp << 6) | (cc & 0x3F);
        }
        if ((extra == 2 && cp < 0x800) || (extra == 3 && cp < 0x10000) || cp > 0x10FFFF ||
            (cp >= 0xD800 && cp <= 0xDFFF))
            return false;
        out.push_back(cp);
        i += 1 + extra;
    }
    return true;
}

void utf8_append(std::string& out, char32_t cp) {
    if (cp < 0x80) {
        out.push_back(static_cast<char>(cp));
    } else if (cp < 0x800) {
        out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else if (cp < 0x10000) {
        out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    } else {
        out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
        out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
    }
}

bool is_removed(char32_t cp) { return in_ranges(tables::kRemoved, tables::kRemovedCount, cp); }

bool is_bert_whitespace(char32_t cp) {
    return cp == U' ' || in_ranges(tables::kWhitespace, tables::kWhitespaceCount, cp);
}

bool is_split_whitespace(char32_t cp) {
    // Rust's White_Space also holds VT, FF and NEL, which clean_text removes before splitting.
    return is_bert_whitespace(cp) || cp == 0x0B || cp == 0x0C || cp == 0x85;
}

bool is_chinese(char32_t cp) { return in_ranges(tables::kChinese, tables::kChineseCount, cp); }

bool is_punctuation(char32_t cp) {
    if (cp < 0x80) {
        return (cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) ||
               (cp >= 123 && cp <= 126);
    }
    return in_ranges(tables::kPunctuation, tables::kPunctuationCount, cp);
}

bool is_python_space(char32_t cp) {
    return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
           cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
           cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

bool append_strip_accents(char32_t cp, std::u32string& out) {
    if (cp < 0x80) { out.push_back(cp); return true; }
    if (cp >= 0xAC00 && cp <= 0xD7A3) {  // Hangul syllable: algorithmic NFD
        char32_t s = cp - 0xAC00;
        out.push_back(0x1100 + s / 588);
        out.push_back(0x1161 + (s % 588) / 28);
        if (s % 28) out.push_back(0x11A7 + s % 28);
        return true;
    }
    if (in_ranges(tables::kDroppedMarks, tables::kDroppedMarksCount, cp))
        return !in_ranges(tables::kDroppedStarters, tables::kDroppedStartersCount, cp);
    if (!append_mapped(tables::kStripAccents, tables::kStripAccentsCount, tables::kStripAccentsPool, cp, out))
        out.push_back(cp);
    return true;
}

unsigned combining_rank(char32_t cp) {
    if (cp < 0x300) return 0;
    std::u32string r;
    if (!append_mapped(tables::kCombiningRank, tables::kCombiningRankCount, tables::kCombiningRankPool, cp, r)) return 0;
    return static_cast<unsigned>(r[0]);
}

void append_lowercase(char32_t cp, std::u32string& out) {
    if (cp < 0x80) { out.push_back(cp >= 'A' && cp <= 'Z' ? cp + 32 : cp); return; }
    if (!append_mapped(tables::kLowercase, tables::kLowercaseCount, tables::kLowercasePool, cp, out))
        out.push_back(cp);
}

const char* unicode_tables_version() { return tables::kTokenizersVersion; }

}  // namespace dfma::detail
