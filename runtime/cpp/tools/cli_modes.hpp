// The sub-commands of dfma_cli (example program and parity tool).
#pragma once

#include <map>
#include <string>
#include <vector>

#include "dfma/limits.hpp"

namespace dfma::cli {

/// Parsed command line: --key value pairs (a key may repeat) and flags.
struct Args {
    std::map<std::string, std::vector<std::string>> values;
    /// The last value of --key, or `fallback`; throws std::invalid_argument when required and absent.
    std::string get(const std::string& key, const std::string& fallback = "", bool required = false) const;
    /// --key as an int >= minimum (fallback when absent); std::invalid_argument naming the flag otherwise.
    int get_int(const std::string& key, int fallback, int minimum) const;
    /// The --max-* flags (dfma/limits.hpp names, '_' as '-') over the defaults; std::invalid_argument
    /// naming the flag for a bad value.
    Limits limits() const;
    bool has(const std::string& key) const { return values.count(key) != 0; }
};

/// predict: JSON-lines samples -> JSON-lines predictions ({"line", "label", ...}) or errors
/// ({"line", "error": {"type", "field", "message"}}); one bad line, or a failed run, never ends the stream.
int run_predict(const Args& args);
/// tokenize: JSON-lines word lists with spans -> JSON-lines input ids.
int run_tokenize(const Args& args);
/// image: one image -> float32 3 x S x S file (+ a JSON summary line).
int run_image(const Args& args);
/// info: what a bundle holds, the graph `auto` chose and why, the CPU class, the ONNX Runtime loaded.
int run_info(const Args& args);
/// verify: the golden set on every CPU graph, one JSON line each; 0 all pass, 1 one fails.
int run_verify(const Args& args);

}  // namespace dfma::cli
