// Extractor::predict_pairs: one sentence, several entities, one prediction per ordered pair. Every check
// runs first (entity_pairs.hpp); the image set is preprocessed once and, with the stage graphs, encoded
// once (GraphRunner::share); the pairs' texts then run in chunks of max_batch rows.
#include <algorithm>

#include "entity_pairs.hpp"
#include "extractor_impl.hpp"
#include "request_limits.hpp"
#include "unicode.hpp"

namespace dfma {
namespace {

// Runs `step`; an InputError of the sentence ("text", "words") is renamed "sentence", as Python's.
template <typename F>
auto sentence_step(F&& step) {
    try {
        return step();
    } catch (const ImageError&) {
        throw;
    } catch (const InputError& e) {
        throw detail::with_field(e, "sentence");
    }
}

// The text of a raw-text request as code points (the checks of text_to_words, field "sentence").
std::u32string text_chars(const std::string& text, const Limits& limits) {
    sentence_step([&] { detail::check_text(text, limits); return 0; });
    std::u32string chars;
    if (!detail::utf8_decode(text, chars)) throw InputError("sentence: not valid UTF-8", "sentence");
    if (std::all_of(chars.begin(), chars.end(), detail::is_python_space))
        throw InputError("sentence: the text is empty or whitespace only", "sentence");
    return chars;
}

// A per-pair error renamed to the request's fields (Python's pair_field): the sentence's "text" /
// "words" -> "sentence", "head" -> "entities[h]", "tail" -> "entities[t]".
InputError pair_field(const InputError& e, const EntityPair& p) {
    if (e.field() == "text" || e.field() == "words") return detail::with_field(e, "sentence");
    if (e.field() == "head") return detail::with_field(e, "entities[" + std::to_string(p.head) + "]");
    if (e.field() == "tail") return detail::with_field(e, "entities[" + std::to_string(p.tail) + "]");
    return e;
}

}  // namespace

std::vector<PairPrediction> Extractor::Impl::predict_pairs(const PairsSample& s) const {
    if (s.text && !s.words.empty())
        throw InputError("sentence: got a text and words; give one: a text (character spans) or words (word spans)",
                         "sentence");
    if (s.text) {
        const std::u32string chars = text_chars(*s.text, info.limits);
        detail::check_entity_count(s.entities.size(), info.limits.max_batch_requests);
        detail::check_entities_in_text(chars, s.entities);
    } else {
        if (s.words.empty()) throw InputError("sentence: the word list is empty", "sentence");
        sentence_step([&] { detail::check_words(s.words, info.limits); return 0; });
        detail::check_entity_count(s.entities.size(), info.limits.max_batch_requests);
        detail::check_entities_in_words(s.words, s.entities);
    }
    const std::vector<EntityPair> pairs = detail::expand_pairs(s.entities.size(), s.pairs, info.limits.max_batch_requests);
    std::vector<Encoded> enc;
    enc.reserve(pairs.size());
    for (const auto& p : pairs) {
        const Span head = s.entities[static_cast<std::size_t>(p.head)], tail = s.entities[static_cast<std::size_t>(p.tail)];
        try {
            if (s.text) {  // cut at this pair's spans only, exactly as a single request with this head and tail
                const WordsAndSpans ws = text_to_words(*s.text, head, tail);
                detail::check_words(ws.words, info.limits, "text");
                enc.push_back(text.encode(ws.words, ws.head, ws.tail));
            } else {
                enc.push_back(text.encode(s.words, head, tail));
            }
        } catch (const ImageError&) {
            throw;
        } catch (const InputError& e) {
            throw pair_field(e, p);
        }
    }
    if (enc.empty()) return {};  // an empty list of pairs: nothing to run (as the Python runtime)
    check_crops(s.crops.size());
    const std::int64_t slots = 1 + info.num_crops, size = info.image.image_size;
    std::vector<float> pixels(static_cast<std::size_t>(slots) * 3 * static_cast<std::size_t>(size * size), 0.f);
    std::vector<std::int64_t> mask(static_cast<std::size_t>(slots), 0);
    load_images(s.image, s.crops, pixels.data(), mask.data());
    const detail::SharedImages shared = runner.share(std::move(pixels), std::move(mask), slots, size);
    std::vector<std::vector<float>> rows;
    const std::size_t chunk_max = chunk_rows();
    for (std::size_t start = 0; start < enc.size(); start += chunk_max) {
        const std::size_t n = std::min(chunk_max, enc.size() - start);
        std::vector<std::int64_t> ids, att;
        std::size_t seq = 0;
        pack_text(enc, start, n, ids, att, seq);
        detail::BatchInputs b;
        b.rows = static_cast<std::int64_t>(n);
        b.seq = static_cast<std::int64_t>(seq);
        b.slots = slots;
        b.image_size = size;
        b.input_ids = ids.data();
        b.attention_mask = att.data();
        std::int64_t num_labels = 0;
        const auto flat = runner.run_shared(shared, b, num_labels);  // sets num_labels
        append_rows(flat, num_labels, n, rows);
    }
    std::vector<PairPrediction> out;
    out.reserve(rows.size());
    for (std::size_t i = 0; i < rows.size(); ++i) {
        PairPrediction p;
        static_cast<Prediction&>(p) = to_prediction(std::move(rows[i]));
        p.head = pairs[i].head;
        p.tail = pairs[i].tail;
        out.push_back(std::move(p));
    }
    return out;
}

}  // namespace dfma
