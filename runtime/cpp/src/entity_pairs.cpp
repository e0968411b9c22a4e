#include "entity_pairs.hpp"

#include <map>
#include <utility>

#include "text_rules.hpp"
#include "unicode.hpp"

namespace dfma::detail {
namespace {

std::string entity(std::size_t i) { return "entities[" + std::to_string(i) + "]"; }

// Checks every span against `limit` units whose non-whitespace count up to each unit is `solid` (size
// limit + 1), and that no span repeats (Python's order: range, whitespace, repeat; entity by entity).
void check_spans(const std::vector<Span>& entities, const std::vector<std::size_t>& solid, const char* unit) {
    std::map<std::pair<int, int>, std::size_t> seen;  // span -> first entity with it
    for (std::size_t i = 0; i < entities.size(); ++i) {
        const Span s = entities[i];
        check_span(s, solid.size() - 1, entity(i), unit);
        if (solid[static_cast<std::size_t>(s.end)] == solid[static_cast<std::size_t>(s.start)])
            throw InputError(entity(i) + ": span " + span_text(s) + " covers only whitespace", entity(i));
        const auto [at, fresh] = seen.emplace(std::make_pair(s.start, s.end), i);
        if (!fresh)
            throw InputError(entity(i) + ": span " + span_text(s) + " is given twice (also " + entity(at->second) + ")",
                             entity(i));
    }
}

}  // namespace

InputError with_field(const InputError& e, const std::string& field) {
    std::string message = e.what();
    const std::string old = e.field() + ": ";
    if (!e.field().empty() && message.compare(0, old.size(), old) == 0) message = message.substr(old.size());
    return InputError(field + ": " + message, field);
}

void check_entity_count(std::size_t entities, std::int64_t max_entities) {
    if (entities < 2)
        throw InputError("entities: needs at least two entities to pair, got " + std::to_string(entities), "entities");
    if (static_cast<std::int64_t>(entities) > max_entities)
        throw InputError("entities: " + std::to_string(entities) + " entities exceeds max_batch_requests " +
                         std::to_string(max_entities), "entities");
}

void check_entities_in_words(const std::vector<std::string>& words, const std::vector<Span>& entities) {
    if (words.empty()) throw InputError("sentence: the word list is empty", "sentence");
    std::vector<std::size_t> solid(words.size() + 1, 0);  // words that are not whitespace only, before each word
    std::u32string chars;
    for (std::size_t w = 0; w < words.size(); ++w) {
        chars.clear();
        if (!utf8_decode(words[w], chars))
            throw InputError("sentence: word " + std::to_string(w) + " is not valid UTF-8", "sentence");
        solid[w + 1] = solid[w] + (all_space(chars) ? 0 : 1);
    }
    check_spans(entities, solid, "word indices");
}

void check_entities_in_text(const std::u32string& chars, const std::vector<Span>& entities) {
    std::vector<std::size_t> solid(chars.size() + 1, 0);
    for (std::size_t c = 0; c < chars.size(); ++c) solid[c + 1] = solid[c] + (is_python_space(chars[c]) ? 0 : 1);
    check_spans(entities, solid, "characters");
}

std::vector<EntityPair> expand_pairs(std::size_t entities, const std::optional<std::vector<EntityPair>>& pairs,
                                     std::int64_t max_pairs) {
    const auto n = static_cast<std::int64_t>(entities);
    if (!pairs) {
        if (n * (n - 1) > max_pairs)
            throw InputError("pairs: " + std::to_string(n) + " entities make " + std::to_string(n * (n - 1)) +
                             " ordered pairs, over max_batch_requests " + std::to_string(max_pairs) +
                             "; give a list of pairs", "pairs");
        std::vector<EntityPair> out;
        for (int h = 0; h < static_cast<int>(n); ++h)
            for (int t = 0; t < static_cast<int>(n); ++t)
                if (h != t) out.push_back({h, t});
        return out;
    }
    if (pairs->empty())
        throw InputError("pairs: is empty: give at least one [head, tail] pair, or 'all'", "pairs");
    if (static_cast<std::int64_t>(pairs->size()) > max_pairs)
        throw InputError("pairs: " + std::to_string(pairs->size()) + " pairs exceeds max_batch_requests " +
                         std::to_string(max_pairs), "pairs");
    for (std::size_t k = 0; k < pairs->size(); ++k) {
        const EntityPair p = (*pairs)[k];
        const std::string field = "pairs[" + std::to_string(k) + "]";
        if (p.head < 0 || p.head >= n || p.tail < 0 || p.tail >= n)
            throw InputError(field + ": entity indices (" + std::to_string(p.head) + ", " + std::to_string(p.tail) +
                             ") out of range: there are " + std::to_string(n) + " entities", field);
        if (p.head == p.tail)
            throw InputError(field + ": head and tail are the same entity (" + std::to_string(p.head) +
                             "); a pair needs two", field);
    }
    return *pairs;
}

}  // namespace dfma::detail
