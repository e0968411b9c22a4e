#include "tokenizer_files.hpp"

#include <nlohmann/json.hpp>

#include "bundle.hpp"
#include "dfma/errors.hpp"

namespace dfma::detail {
namespace {

using nlohmann::json;

std::vector<std::string> read_vocab_lines(const std::string& path) {
    const std::string text = read_file(path);
    std::vector<std::string> lines;
    std::size_t start = 0;
    while (start < text.size()) {
        std::size_t nl = text.find('\n', start);
        if (nl == std::string::npos) nl = text.size();
        std::string line = text.substr(start, nl - start);
        if (!line.empty() && line.back() == '\r') line.pop_back();
        lines.push_back(std::move(line));
        start = nl + 1;
    }
    return lines;
}

[[noreturn]] void bad(const std::string& where, const std::string& what) { throw BundleError(where + ": " + what); }

}  // namespace

std::vector<std::string> special_tokens(const TextConfig& c) {
    return {c.pad_token, c.unk_token, c.cls_token, c.sep_token, "[MASK]",
            c.head_open, c.head_close, c.tail_open, c.tail_close};
}

TokenizerFiles read_vocab_txt(const std::string& path, TextConfig config) {
    TokenizerFiles t;
    const auto lines = read_vocab_lines(path);
    for (std::size_t i = 0; i < lines.size(); ++i) {
        const std::string where = path + ":" + std::to_string(i + 1);
        if (lines[i].empty()) bad(where, "empty vocabulary entry");
        if (!t.model_vocab.emplace(lines[i], static_cast<std::int64_t>(i)).second)
            bad(where, "duplicate piece \"" + lines[i] + "\" (also line " +
                           std::to_string(t.model_vocab[lines[i]] + 1) + ")");
    }
    for (const auto* tok : {&config.pad_token, &config.unk_token, &config.cls_token, &config.sep_token})
        if (!t.model_vocab.count(*tok)) bad(path, "the vocabulary lacks " + *tok);
    if (!t.model_vocab.count("[MASK]")) bad(path, "the vocabulary lacks [MASK]");
    // Like tokenizers' add_special_tokens: pieces already in the vocabulary keep their id; the
    // others get the next ids, in order.
    std::int64_t next = static_cast<std::int64_t>(lines.size());
    for (const auto& tok : special_tokens(config)) {
        auto it = t.model_vocab.find(tok);
        t.special_ids[tok] = it != t.model_vocab.end() ? it->second : next++;
    }
    t.config = std::move(config);
    return t;
}

TokenizerFiles read_tokenizer_json(const std::string& json_path, const std::string& vocab_path,
                                   TextConfig config) {
    json j;
    try {
        j = json::parse(read_file(json_path));
    } catch (const json::exception& e) {
        bad(json_path, std::string("not valid JSON (") + e.what() + ")");
    }
    try {
        const json& norm = j.at("normalizer");
        if (norm.is_null() || norm.value("type", "") != "BertNormalizer")
            bad(json_path, "normalizer must be BertNormalizer (the C++ runtime implements only that), got " +
                               norm.dump().substr(0, 120));
        config.clean_text = norm.value("clean_text", true);
        config.handle_chinese_chars = norm.value("handle_chinese_chars", true);
        config.lowercase = norm.value("lowercase", true);
        const json& sa = norm.contains("strip_accents") ? norm["strip_accents"] : json();
        config.strip_accents = sa.is_null() ? std::nullopt : std::optional<bool>(sa.get<bool>());
        const json& pre = j.at("pre_tokenizer");
        if (pre.is_null() || pre.value("type", "") != "BertPreTokenizer")
            bad(json_path, "pre_tokenizer must be BertPreTokenizer, got " + pre.dump().substr(0, 120));
        const json& model = j.at("model");
        if (model.value("type", "") != "WordPiece")
            bad(json_path, "model must be WordPiece, got " + model.value("type", std::string("?")));
        config.unk_token = model.value("unk_token", std::string("[UNK]"));
        config.continuing_prefix = model.value("continuing_subword_prefix", std::string("##"));
        config.max_input_chars_per_word = model.value("max_input_chars_per_word", 100);

        TokenizerFiles t;
        for (const auto& [piece, id] : model.at("vocab").items()) t.model_vocab.emplace(piece, id.get<std::int64_t>());
        std::unordered_map<std::string, std::int64_t> all = t.model_vocab;
        for (const auto& at : j.at("added_tokens")) {
            const std::string content = at.at("content").get<std::string>();
            if (!at.value("special", false))
                bad(json_path, "added token \"" + content + "\" is not special; the C++ runtime matches no "
                               "added tokens inside words");
            all[content] = at.at("id").get<std::int64_t>();
        }
        config.unk_token = config.unk_token.empty() ? "[UNK]" : config.unk_token;
        for (const auto& tok : special_tokens(config)) {
            auto it = all.find(tok);
            if (it == all.end()) bad(json_path, "the tokenizer has no " + tok + " token");
            t.special_ids[tok] = it->second;
        }
        if (t.special_ids[config.pad_token] != 0)
            bad(json_path, config.pad_token + " must be id 0, got " + std::to_string(t.special_ids[config.pad_token]));
        if (!vocab_path.empty()) {
            const auto lines = read_vocab_lines(vocab_path);
            if (lines.size() != all.size())
                bad(vocab_path, std::to_string(lines.size()) + " lines but tokenizer.json has " +
                                    std::to_string(all.size()) + " ids");
            for (std::size_t i = 0; i < lines.size(); ++i) {
                auto it = all.find(lines[i]);
                if (it == all.end() || it->second != static_cast<std::int64_t>(i))
                    bad(vocab_path + ":" + std::to_string(i + 1),
                        "piece \"" + lines[i] + "\" does not have id " + std::to_string(i) + " in tokenizer.json");
            }
        }
        t.config = std::move(config);
        return t;
    } catch (const json::exception& e) {
        bad(json_path, std::string("unexpected structure (") + e.what() + ")");
    }
}

}  // namespace dfma::detail
