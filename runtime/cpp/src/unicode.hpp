// UTF-8 coding and the per-character Unicode properties the BERT tokenizer needs.
#pragma once

#include <string>
#include <string_view>

namespace dfma::detail {

/// Decodes UTF-8 into code points. Returns false (and leaves `out` partial) on malformed input:
/// bad continuation, overlong form, surrogate, value above U+10FFFF, truncated sequence.
bool utf8_decode(std::string_view text, std::u32string& out);
/// Appends the UTF-8 encoding of a valid code point.
void utf8_append(std::string& out, char32_t cp);

/// BertNormalizer clean_text: removed (control/format/private use, NUL, U+FFFD).
bool is_removed(char32_t cp);
/// BertNormalizer clean_text: replaced by a space.
bool is_bert_whitespace(char32_t cp);
/// BertPreTokenizer: splits on it (Rust char::is_whitespace).
bool is_split_whitespace(char32_t cp);
/// BertNormalizer handle_chinese_chars: CJK ideograph, padded with spaces.
bool is_chinese(char32_t cp);
/// BertPreTokenizer: punctuation, a piece of its own.
bool is_punctuation(char32_t cp);
/// Python's str.isspace() (used to reject spans that cover only whitespace).
bool is_python_space(char32_t cp);

/// strip_accents of one character (NFD, non-spacing marks dropped), appended to `out`. Returns false
/// when nothing is left of a character that is a starter (combining class 0): it still ends a run of
/// characters that NFD reorders.
bool append_strip_accents(char32_t cp, std::u32string& out);
/// Rank of the canonical combining class of a character kept by strip_accents (0 = starter).
unsigned combining_rank(char32_t cp);
/// lowercase of one character (Rust char::to_lowercase), appended to `out`.
void append_lowercase(char32_t cp, std::u32string& out);
/// Version of Hugging Face `tokenizers` the tables were measured on.
const char* unicode_tables_version();

}  // namespace dfma::detail
