// Text side of the DFMA contract (docs/contract.md section 2): entity markers, BERT WordPiece
// tokenization from the bundle's vocab.txt, truncation around the entities, [CLS]/[SEP].
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace dfma {

namespace detail {
class Bundle;
}

/// A word range [start, end) (end exclusive), 0 <= start < end <= number of words.
struct Span {
    int start = 0;
    int end = 0;
};

/// Token ids of one sample and where the first head and tail markers are.
struct Encoded {
    std::vector<std::int64_t> input_ids;  ///< [CLS] ... [SEP], no padding
    int head_pos = -1;                    ///< index of the first `<s>` in input_ids
    int tail_pos = -1;                    ///< index of the first `<o>` in input_ids
};

/// A sentence as words with word spans (what text_to_words returns).
struct WordsAndSpans {
    std::vector<std::string> words;
    Span head, tail;
};

/// Raw UTF-8 text with character spans [start, end) in code points -> words and word spans, as the
/// Python runtime does: cut at the span boundaries, split each piece on whitespace. Throws InputError
/// for empty text, spans out of range or covering only whitespace, invalid UTF-8.
WordsAndSpans text_to_words(const std::string& text, Span head_chars, Span tail_chars);

/// Tokenizer settings; a bundle's manifest (and tokenizer.json, when present) fills them in.
struct TextConfig {
    int max_length = 80;                 ///< pieces per row including [CLS] and [SEP]
    bool lowercase = true;               ///< BertNormalizer lowercase
    std::optional<bool> strip_accents;   ///< BertNormalizer strip_accents; unset = follow lowercase
    bool clean_text = true;              ///< BertNormalizer clean_text
    bool handle_chinese_chars = true;    ///< BertNormalizer handle_chinese_chars
    std::string unk_token = "[UNK]", cls_token = "[CLS]", sep_token = "[SEP]", pad_token = "[PAD]";
    std::string head_open = "<s>", head_close = "</s>", tail_open = "<o>", tail_close = "</o>";
    std::string continuing_prefix = "##";
    int max_input_chars_per_word = 100;
    /// Added tokens matched verbatim inside words before normalization (as Hugging Face `tokenizers`
    /// does). Empty: the special tokens above.
    std::vector<std::string> added_tokens;
};

/// Turns a word list and two entity spans into input ids, exactly as the Python runtime does.
/// Immutable after construction; encode() is safe to call from many threads.
class TextEncoder {
public:
    /// Reads a vocabulary file (one piece per line, line number = id). Throws BundleError when the file
    /// is missing, or a special token of `config` is not in it.
    static TextEncoder from_vocab_file(const std::string& vocab_path, const TextConfig& config);
    /// Builds from an in-memory vocabulary (index = id).
    static TextEncoder from_vocab(std::vector<std::string> vocab, const TextConfig& config);
    /// Loads a tokenizer folder as dfma.tokenizer.load_tokenizer does: tokenizer.json (checked against
    /// vocab.txt when both exist), else vocab.txt. No hashes are checked. Throws BundleError.
    static TextEncoder from_folder(const std::string& folder, int max_length);
    /// Loads the tokenizer of a bundle folder (manifest.json, vocab.txt, tokenizer.json), verifying
    /// their sha256. Throws BundleError.
    static TextEncoder from_bundle(const std::string& bundle_dir);

    /// Marked, tokenized, truncated ids with [CLS]/[SEP]. Throws InputError for bad spans or words
    /// that are not valid UTF-8.
    Encoded encode(const std::vector<std::string>& words, Span head, Span tail) const;
    /// Word pieces of the marked word list before truncation (no [CLS]/[SEP]); for tests and tools.
    std::vector<std::int64_t> tokenize_words(const std::vector<std::string>& words) const;
    /// Id of a vocabulary entry, or -1.
    std::int64_t token_id(const std::string& piece) const;
    /// The configuration in use.
    const TextConfig& config() const;

    TextEncoder(const TextEncoder&) = default;
    TextEncoder& operator=(const TextEncoder&) = default;
    ~TextEncoder();

private:
    friend class Extractor;
    static TextEncoder from_opened_bundle(const detail::Bundle& bundle);
    struct Impl;
    explicit TextEncoder(std::shared_ptr<const Impl> impl);
    std::shared_ptr<const Impl> impl_;
};

}  // namespace dfma
