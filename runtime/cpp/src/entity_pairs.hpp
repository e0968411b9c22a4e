// The checks and the pair expansion of predict_pairs (one sentence, several entities), as the Python
// runtime's runtime/entity_pairs.py: pure functions, every error an InputError naming the field
// ("sentence", "entities", "entities[i]", "pairs", "pairs[k]") with Python's wording. The work is bounded
// by the input size: per-word and per-character facts are computed once, each span is then checked in
// constant time, repeats through a set.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "dfma/errors.hpp"
#include "dfma/extractor.hpp"

namespace dfma::detail {

/// The same message naming `field` instead (the old field's "name: " prefix replaced), as Python's
/// dfma.runtime.edge.with_field.
InputError with_field(const InputError& e, const std::string& field);

/// At least two entities, at most `max_entities` (max_batch_requests) ("entities").
void check_entity_count(std::size_t entities, std::int64_t max_entities);
/// Every entity a span of the word list that is not whitespace only, no span twice ("entities[i]", in
/// index order); a non-empty word list of valid UTF-8 ("sentence").
void check_entities_in_words(const std::vector<std::string>& words, const std::vector<Span>& entities);
/// The same for character spans over the code points of a text.
void check_entities_in_text(const std::u32string& chars, const std::vector<Span>& entities);
/// The pairs to run: `pairs` checked (an index out of range or head == tail is "pairs[k]"; an empty list
/// gives no pairs), or every ordered pair (0,1), (0,2), ..., (1,0), ... At most `max_pairs` ("pairs").
std::vector<EntityPair> expand_pairs(std::size_t entities, const std::optional<std::vector<EntityPair>>& pairs,
                                     std::int64_t max_pairs);

}  // namespace dfma::detail
