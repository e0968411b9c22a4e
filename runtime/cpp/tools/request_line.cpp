#include "request_line.hpp"

#include <climits>
#include <new>

#include "../src/entity_pairs.hpp"
#include "../src/request_limits.hpp"

namespace dfma::cli {
namespace {

using nlohmann::json;

const std::string kBom = "\xEF\xBB\xBF";

// A [start, end] span value (Python's _check_span, the range checked later by the text rules).
Span span_of(const json& v, const std::string& field) {
    if (!v.is_array() || v.size() != 2)
        throw InputError(field + ": expected a (start, end) pair, got " + v.dump().substr(0, 80), field);
    if (!v[0].is_number_integer() || !v[1].is_number_integer())
        throw InputError(field + ": start and end must be ints, got " + v.dump().substr(0, 80), field);
    long long bound[2];
    for (int k = 0; k < 2; ++k) {
        if (v[k].is_number_unsigned() && v[k].get<std::uint64_t>() > static_cast<std::uint64_t>(INT_MAX))
            bound[k] = LLONG_MAX;
        else
            bound[k] = v[k].get<long long>();
        if (bound[k] > INT_MAX || bound[k] < INT_MIN)  // past 2^31: never a valid offset, never wrapped
            throw InputError(field + ": span " + v.dump() + " must satisfy 0 <= start < end <= the number of "
                             "words or characters", field);
    }
    return {static_cast<int>(bound[0]), static_cast<int>(bound[1])};
}

// MNRE's {"pos": [s, e]} (or a bare pair).
const json& mnre_span(const json& entity, const std::string& key) {
    if (!entity.is_object()) return entity;
    if (!entity.contains("pos"))
        throw InputError(key + ".pos: missing 'pos' (the [start, end) word span)", key + ".pos");
    return entity["pos"];
}

std::vector<std::string> word_list(const json& words) {
    if (!words.is_array())
        throw InputError(std::string("words: expected a list of strings, got ") + words.type_name(), "words");
    std::vector<std::string> out;
    out.reserve(words.size());
    for (std::size_t i = 0; i < words.size(); ++i) {
        if (!words[i].is_string())
            throw InputError("words: word " + std::to_string(i) + " is " + words[i].type_name() + ", not a string",
                             "words");
        out.push_back(words[i].get<std::string>());
    }
    return out;
}

// "image", or crop k ("crops[k]"): a path or null.
std::optional<Image> image_of(const json& v, const std::string& field) {
    if (v.is_null()) return std::nullopt;
    if (!v.is_string())
        throw ImageError(field + ": unsupported image source " + v.type_name() + " (expected a path, or null)",
                         field);
    return Image::from_file(v.get<std::string>());
}

}  // namespace

bool read_line(std::istream& in, std::int64_t max_bytes, std::string& line, bool& too_long) {
    line.clear();
    too_long = false;
    std::streambuf* sb = in.rdbuf();
    bool any = false;
    for (;;) {
        const int c = sb->sbumpc();
        if (c == std::char_traits<char>::eof()) {
            in.setstate(std::ios::eofbit);
            break;
        }
        any = true;
        if (c == '\n') break;
        if (static_cast<std::int64_t>(line.size()) < max_bytes + 1) line.push_back(static_cast<char>(c));
        else too_long = true;
    }
    if (!line.empty() && line.back() == '\r' && !too_long) line.pop_back();
    if (static_cast<std::int64_t>(line.size()) > max_bytes) too_long = true;
    if (too_long) line.clear();
    return any;
}

namespace {

// At most one of "text", "words", "token" (Python's order of the check).
void check_one_sentence(const json& j) {
    std::vector<std::string> given;
    for (const char* key : {"text", "words", "token"})
        if (j.contains(key)) given.push_back(key);
    if (given.size() > 1) {
        std::string both;
        for (const auto& k : given) both += (both.empty() ? "'" : " and '") + k + "'";
        throw InputError(given[0] + ": got " + both + "; give one of 'text' (character spans), 'words' or MNRE "
                         "'token' (word spans)", given[0]);
    }
}

// "crops": absent, null or a list.
json crops_of(const json& j) {
    json crops = j.contains("crops") ? j["crops"] : json();
    if (!crops.is_null() && !crops.is_array())
        throw InputError(std::string("crops: expected a list of images (a path, or null), got ") + crops.type_name(),
                         "crops");
    return crops;
}

// A word list within max_words ("words"; MNRE's "token" too).
std::vector<std::string> bounded_words(const json& words, const Limits& limits) {
    if (words.is_array() && static_cast<std::int64_t>(words.size()) > limits.max_words)
        throw InputError("words: " + std::to_string(words.size()) + " words exceeds max_words " +
                         std::to_string(limits.max_words), "words");
    auto out = word_list(words);
    detail::check_words(out, limits);
    return out;
}

// One [head, tail] entity index pair of "pairs" (range and head != tail: Extractor::predict_pairs).
EntityPair pair_of(const json& v, const std::string& field) {
    if (!v.is_array() || v.size() != 2)
        throw InputError(field + ": expected a [head_index, tail_index] pair, got " + v.dump().substr(0, 60), field);
    if (!v[0].is_number_integer() || !v[1].is_number_integer())
        throw InputError(field + ": expected a [head_index, tail_index] pair of ints, got " + v.dump().substr(0, 60), field);
    int index[2];
    for (int k = 0; k < 2; ++k) {  // past 2^31: never an entity index, never wrapped
        const bool big = v[k].is_number_unsigned() ? v[k].get<std::uint64_t>() > static_cast<std::uint64_t>(INT_MAX)
                                                   : v[k].get<long long>() > INT_MAX || v[k].get<long long>() < INT_MIN;
        index[k] = big ? (v[k].get<long long>() < 0 ? INT_MIN : INT_MAX) : v[k].get<int>();
    }
    return {index[0], index[1]};
}

// Runs `step`; an InputError of the sentence is renamed "sentence" (Python's _check_sentence).
template <typename F>
void sentence_step(F&& step) {
    try {
        step();
    } catch (const ImageError&) {
        throw;
    } catch (const InputError& e) {
        throw detail::with_field(e, "sentence");
    }
}

}  // namespace

PairsSample parse_pairs_sample(const json& j, const Limits& limits) {
    if (!j.is_object()) throw DataError(std::string("expected a JSON object, got ") + j.type_name());
    std::string also;
    for (const char* key : {"head", "tail", "h", "t"})
        if (j.contains(key)) also += (also.empty() ? "'" : ", '") + std::string(key) + "'";
    if (!also.empty())
        throw InputError("entities: give either 'entities' (with optional 'pairs') or a head and a tail, not both "
                         "(also got [" + also + "])", "entities");
    check_one_sentence(j);
    if (!j.contains("words") && !j.contains("text") && !j.contains("token"))
        throw InputError("sentence: a request with 'entities' needs 'text' (character spans) or 'words' / 'token' "
                         "(word spans)", "sentence");
    const json crops = crops_of(j);
    PairsSample s;
    sentence_step([&] {
        const json& sentence = j.contains("text") ? j["text"] : j.contains("words") ? j["words"] : j["token"];
        if (sentence.is_string()) {
            detail::check_text(sentence.get_ref<const std::string&>(), limits);
            s.text = sentence.get<std::string>();
        } else if (sentence.is_array()) {
            s.words = bounded_words(sentence, limits);
        } else {
            throw InputError(std::string("sentence: expected a str (entities in characters) or a list of words "
                                         "(entities in words), got ") + sentence.type_name(), "sentence");
        }
    });
    const json& entities = j["entities"];
    if (!entities.is_array())
        throw InputError(std::string("entities: expected a list of [start, end) spans, got ") + entities.type_name(),
                         "entities");
    detail::check_entity_count(entities.size(), limits.max_batch_requests);
    s.entities.reserve(entities.size());
    for (std::size_t i = 0; i < entities.size(); ++i)
        s.entities.push_back(span_of(entities[i], "entities[" + std::to_string(i) + "]"));
    const json pairs = j.contains("pairs") ? j["pairs"] : json("all");
    if (pairs.is_array()) {
        if (static_cast<std::int64_t>(pairs.size()) > limits.max_batch_requests)
            throw InputError("pairs: " + std::to_string(pairs.size()) + " pairs exceeds max_batch_requests " +
                             std::to_string(limits.max_batch_requests), "pairs");
        s.pairs.emplace();
        for (std::size_t k = 0; k < pairs.size(); ++k) s.pairs->push_back(pair_of(pairs[k], "pairs[" + std::to_string(k) + "]"));
    } else if (pairs != "all") {
        throw InputError("pairs: expected 'all' or a list of [head, tail] entity indices, got " +
                         (pairs.is_string() ? pairs.dump().substr(0, 40) : std::string(pairs.type_name())), "pairs");
    }
    if (j.contains("image")) s.image = image_of(j["image"], "image");
    if (crops.is_array())
        for (std::size_t k = 0; k < crops.size(); ++k)
            s.crops.push_back(image_of(crops[k], "crops[" + std::to_string(k) + "]"));
    return s;
}

Sample parse_sample(const json& j, const Limits& limits) {
    if (!j.is_object()) throw DataError(std::string("expected a JSON object, got ") + j.type_name());
    check_one_sentence(j);
    Sample s;
    const json crops = crops_of(j);
    const bool mnre = j.contains("token");
    const char* keys[2] = {mnre ? "h" : "head", mnre ? "t" : "tail"};
    for (const char* key : keys)
        if (!j.contains(key)) throw InputError(std::string(key) + ": missing key", key);
    if (!mnre && !j.contains("words") && !j.contains("text"))
        throw InputError("text: a request needs 'text' (character spans), 'words' or MNRE 'token' (word spans)", "text");
    const json& head = mnre ? mnre_span(j["h"], "h") : j["head"];
    const json& tail = mnre ? mnre_span(j["t"], "t") : j["tail"];
    if (j.contains("text")) {
        const json& text = j["text"];
        if (!text.is_string()) throw InputError(std::string("text: expected a string, got ") + text.type_name(), "text");
        detail::check_text(text.get_ref<const std::string&>(), limits);
        auto ws = text_to_words(text.get_ref<const std::string&>(), span_of(head, "head"), span_of(tail, "tail"));
        detail::check_words(ws.words, limits, "text");
        s.words = std::move(ws.words);
        s.head = ws.head;
        s.tail = ws.tail;
    } else {
        s.words = bounded_words(mnre ? j["token"] : j["words"], limits);
        s.head = span_of(head, "head");
        s.tail = span_of(tail, "tail");
    }
    if (j.contains("image")) s.image = image_of(j["image"], "image");
    if (crops.is_array())
        for (std::size_t k = 0; k < crops.size(); ++k)
            s.crops.push_back(image_of(crops[k], "crops[" + std::to_string(k) + "]"));
    return s;
}

Request parse_request(const std::string& raw, const Limits& limits) {
    const std::string line = raw.compare(0, kBom.size(), kBom) == 0 ? raw.substr(kBom.size()) : raw;
    const auto depth = detail::json_depth(line);
    if (depth > limits.max_json_depth)
        throw DataError("nested " + std::to_string(depth) + " deep, over max_json_depth " +
                        std::to_string(limits.max_json_depth));
    json j;
    try {
        j = json::parse(line);
    } catch (const json::parse_error& e) {
        throw DataError(std::string("not valid JSON (") + e.what() + ")");
    }
    Request r;
    if (j.is_object() && j.contains("entities")) r.pairs = parse_pairs_sample(j, limits);
    else r.sample = parse_sample(j, limits);
    r.id = j.is_object() ? j.value("id", json()) : json();
    return r;
}

json error_json(const std::exception& e) {
    std::string type = "InternalError", field;
    if (const auto* d = dynamic_cast<const DataError*>(&e)) {
        type = "DataError";
        field = d->field();
    } else if (const auto* im = dynamic_cast<const ImageError*>(&e)) {
        type = "ImageError";
        field = im->field();
    } else if (const auto* in = dynamic_cast<const InputError*>(&e)) {
        type = "InputError";
        field = in->field();
    } else if (dynamic_cast<const BundleError*>(&e)) {
        type = "BundleError";
    } else if (dynamic_cast<const InferenceError*>(&e)) {
        type = "InferenceError";
    } else if (dynamic_cast<const std::bad_alloc*>(&e)) {
        type = "InputError";
        field = "sample";
    } else if (dynamic_cast<const json::exception*>(&e)) {
        type = "InputError";
        field = "sample";
    }
    return {{"type", type}, {"field", field.empty() ? json() : json(field)}, {"message", e.what()}};
}

}  // namespace dfma::cli
