// The pure rules of contract section 2: input validation, marker order, truncation windows, and the
// raw-text-to-words cut. No tokenizer involved.
#pragma once

#include <string>
#include <utility>
#include <vector>

#include "dfma/text.hpp"

namespace dfma::detail {

constexpr int kMinMaxLength = 4;  ///< [CLS] + two pieces + [SEP]

/// One marker emission: before word `boundary`; marker 0 = <s>, 1 = </s>, 2 = <o>, 3 = </o>.
struct MarkerEvent {
    int boundary;
    int marker;
};

/// "(start, end)", as error messages write a span.
std::string span_text(Span s);
/// Throws InputError naming `field` unless 0 <= start < end <= limit (`unit`: "word indices", ...).
void check_span(Span s, std::size_t limit, const std::string& field, const char* unit);
/// Whether every code point is whitespace (Python's str.isspace; true for an empty string).
bool all_space(const std::u32string& s);
/// Throws InputError (as the Python TextEncoder) for an empty word list, spans out of range, or spans
/// covering only whitespace.
void validate_words(const std::vector<std::string>& words, Span head, Span tail);
/// The 4 markers in emission order (contract 2.1).
std::vector<MarkerEvent> marker_plan(Span head, Span tail);
/// Half-open piece ranges kept out of `n` pieces (contract 2.3).
std::vector<std::pair<int, int>> truncation_segments(int n, int max_length, int head_open, int tail_open,
                                                     int head_close, int tail_close);

}  // namespace dfma::detail
