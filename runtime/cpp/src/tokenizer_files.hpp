// Reading a tokenizer folder the way dfma/tokenizer.py does: tokenizer.json (normalizer flags, WordPiece
// settings, vocabulary, special tokens) checked against vocab.txt, or vocab.txt alone.
#pragma once

#include <cstdint>
#include <string>
#include <unordered_map>

#include "dfma/text.hpp"

namespace dfma::detail {

/// Everything needed to build the WordPiece tokenizer and the marker logic.
struct TokenizerFiles {
    TextConfig config;
    std::unordered_map<std::string, std::int64_t> model_vocab;  ///< WordPiece lookups
    std::unordered_map<std::string, std::int64_t> special_ids;  ///< token string -> id (all 9 specials)
};

/// The 9 special tokens of the config, in dfma.tokenizer.SPECIAL_TOKENS order.
std::vector<std::string> special_tokens(const TextConfig& config);

/// vocab.txt alone (dfma.tokenizer.tokenizer_from_bert_vocab): line k = id k; specials the file lacks
/// are appended after the last id. Throws BundleError naming the file and line.
TokenizerFiles read_vocab_txt(const std::string& path, TextConfig config);

/// tokenizer.json, with vocab.txt (when non-empty path) required to agree with it id for id.
/// Throws BundleError for unsupported pipelines (non-BERT normalizer, non-special added tokens...).
TokenizerFiles read_tokenizer_json(const std::string& json_path, const std::string& vocab_path,
                                   TextConfig config);

}  // namespace dfma::detail
