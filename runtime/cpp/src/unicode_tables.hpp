// Declarations of the generated Unicode tables (unicode_tables.cpp) and lookups over them.
#pragma once

#include <cstddef>
#include <cstdint>

namespace dfma::detail::tables {

/// An inclusive run of code points [first, last].
struct CodeRange {
    char32_t first, last;
};

/// One code point mapped to `length` code points starting at `offset` in the map's pool.
struct CodeMap {
    char32_t cp;
    std::uint32_t offset, length;
};

extern const char* const kTokenizersVersion;
extern const CodeRange kRemoved[], kWhitespace[], kChinese[], kPunctuation[], kDroppedMarks[], kDroppedStarters[];
extern const std::size_t kRemovedCount, kWhitespaceCount, kChineseCount, kPunctuationCount,
    kDroppedMarksCount, kDroppedStartersCount;
extern const CodeMap kStripAccents[], kLowercase[], kCombiningRank[];
extern const std::size_t kStripAccentsCount, kLowercaseCount, kCombiningRankCount;
extern const char32_t kStripAccentsPool[], kLowercasePool[], kCombiningRankPool[];

}  // namespace dfma::detail::tables
