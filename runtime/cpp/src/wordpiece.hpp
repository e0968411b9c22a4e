// BERT tokenization of one word: BertNormalizer -> BertPreTokenizer -> WordPiece, as in Hugging Face
// `tokenizers` with special-token matching switched off (the Python runtime's encode_special_tokens=True).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

namespace dfma::detail {

/// Normalizer and model settings (tokenizer.json `normalizer` and `model`).
struct WordPieceSettings {
    bool clean_text = true;
    bool handle_chinese_chars = true;
    bool strip_accents = true;
    bool lowercase = true;
    std::int64_t unk_id = 0;
    std::string continuing_prefix = "##";
    std::size_t max_input_chars_per_word = 100;
};

/// Immutable WordPiece tokenizer over a piece -> id vocabulary.
class WordPiece {
public:
    WordPiece(std::unordered_map<std::string, std::int64_t> vocab, WordPieceSettings settings);

    /// Appends the ids of one pre-tokenized input word to `out`. Returns false when the word is not
    /// valid UTF-8 (nothing appended). A word that normalizes to nothing contributes no id.
    bool encode_word(std::string_view word, std::vector<std::int64_t>& out) const;
    /// Normalized text of a word (for tests and debugging); empty when not valid UTF-8.
    std::u32string normalize(std::string_view word) const;
    /// Id of a piece, or -1.
    std::int64_t id(const std::string& piece) const;
    const WordPieceSettings& settings() const { return settings_; }

private:
    void normalize_into(const std::u32string& in, std::u32string& out) const;
    void encode_pretoken(const std::u32string& chars, std::size_t begin, std::size_t end,
                         std::vector<std::int64_t>& out) const;

    std::unordered_map<std::string, std::int64_t> vocab_;
    WordPieceSettings settings_;
};

}  // namespace dfma::detail
