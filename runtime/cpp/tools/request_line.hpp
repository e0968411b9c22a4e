// One request line of dfma_cli: bounded reading, JSON parsing and the request rules of the Python
// runtime (dfma/contract/samples.py, runtime/request_file.py), with the same error kinds and fields.
#pragma once

#include <cstdint>
#include <exception>
#include <istream>
#include <string>

#include <nlohmann/json.hpp>

#include "dfma/dfma.hpp"

namespace dfma::cli {

/// A line that is not a request at all (Python's DataError, field "record"): over max_line_bytes, not
/// UTF-8, not JSON, not an object, nested deeper than max_json_depth.
class DataError : public Error {
public:
    explicit DataError(const std::string& message, std::string field = "record")
        : Error(message), field_(std::move(field)) {}
    const std::string& field() const { return field_; }

private:
    std::string field_;
};

/// Reads the next line (without "\n" / "\r\n") into `line`, at most `max_bytes` bytes: the rest of a
/// longer line is skipped and `too_long` set. Returns false at the end of the input.
bool read_line(std::istream& in, std::int64_t max_bytes, std::string& line, bool& too_long);

/// A parsed request: the sample (or, for a line with "entities", the pairs sample) and the "id" to echo
/// (null when absent).
struct Request {
    Sample sample;
    std::optional<PairsSample> pairs;  ///< set for {"entities": [...], "pairs": "all" | [[h, t], ...]}
    nlohmann::json id;
};

/// One JSON line -> Request. A UTF-8 byte order mark at the start is dropped. Throws DataError (the
/// line), InputError (a field: "text", "words", "head", "tail", "crops", "h", "t", "h.pos", "entities",
/// "entities[i]", "pairs", "pairs[k]", ...) or ImageError ("image", "crops[k]"), in the order the Python runtime
/// checks them.
Request parse_request(const std::string& line, const Limits& limits);

/// A parsed JSON object with "entities" -> PairsSample: the sentence as `text`, `words` or `token`,
/// `entities` a list of [start, end] spans, `pairs` absent, null, "all" or a list of [head, tail]
/// entity indices; "head"/"tail" ("h"/"t") are refused beside "entities". Indices are range-checked by
/// Extractor::predict_pairs.
PairsSample parse_pairs_sample(const nlohmann::json& j, const Limits& limits);

/// A parsed JSON object -> Sample (the `words`, `token` + `h`/`t`, or `text` form).
Sample parse_sample(const nlohmann::json& j, const Limits& limits);

/// {"type", "field", "message"} of an exception, with Python's type names (DataError, InputError,
/// ImageError, BundleError; InferenceError for a failed run).
nlohmann::json error_json(const std::exception& e);

}  // namespace dfma::cli
