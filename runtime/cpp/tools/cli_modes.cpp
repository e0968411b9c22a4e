#include "cli_modes.hpp"

#include <algorithm>
#include <cmath>
#include <fstream>
#include <iostream>
#include <memory>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include "dfma/dfma.hpp"

namespace dfma::cli {
namespace {

using nlohmann::json;

Span span_of(const json& v, const char* field) {
    const json& pos = v.is_object() ? v.at("pos") : v;
    if (!pos.is_array() || pos.size() != 2 || !pos[0].is_number_integer() || !pos[1].is_number_integer())
        throw InputError(std::string(field) + ": expected [start, end], got " + v.dump());
    return {pos[0].get<int>(), pos[1].get<int>()};
}

// One input line -> Sample (words form, MNRE form, or raw text with character spans).
Sample parse_sample(const json& j) {
    if (!j.is_object()) throw InputError("sample: expected a JSON object");
    Sample s;
    const json* head = j.contains("head") ? &j["head"] : j.contains("h") ? &j["h"] : nullptr;
    const json* tail = j.contains("tail") ? &j["tail"] : j.contains("t") ? &j["t"] : nullptr;
    if (!head || !tail) throw InputError("sample: needs head and tail spans");
    if (j.contains("text")) {
        auto ws = text_to_words(j["text"].get<std::string>(), span_of(*head, "head"), span_of(*tail, "tail"));
        s.words = std::move(ws.words);
        s.head = ws.head;
        s.tail = ws.tail;
    } else {
        const json& words = j.contains("words") ? j["words"] : j.at("token");
        for (const auto& w : words) {
            if (!w.is_string()) throw InputError("words: every word must be a string");
            s.words.push_back(w.get<std::string>());
        }
        s.head = span_of(*head, "head");
        s.tail = span_of(*tail, "tail");
    }
    if (j.contains("image") && !j["image"].is_null()) s.image = Image::from_file(j["image"].get<std::string>());
    if (j.contains("crops"))
        for (const auto& c : j["crops"])
            s.crops.push_back(c.is_null() ? std::nullopt : std::optional<Image>(Image::from_file(c.get<std::string>())));
    return s;
}

std::istream& open_input(const Args& args, std::unique_ptr<std::ifstream>& file) {
    const std::string path = args.get("input", "-");
    if (path == "-") return std::cin;
    file = std::make_unique<std::ifstream>(path);
    if (!*file) throw std::invalid_argument("cannot open --input " + path);
    return *file;
}

json prediction_json(const Prediction& p, const json& id) {
    json out = {{"label", p.label}, {"label_id", p.label_id}, {"probability", p.probability},
                {"logits", p.logits}};
    if (!id.is_null()) out["id"] = id;
    return out;
}

// --self-check auto|always|never (Options::self_check).
SelfCheck self_check_of(const Args& args) {
    const std::string v = args.get("self-check", "auto");
    if (v == "auto") return SelfCheck::automatic;
    if (v == "always") return SelfCheck::always;
    if (v == "never") return SelfCheck::never;
    throw std::invalid_argument("--self-check must be auto, always or never, got '" + v + "'");
}

// A JSON number, or null when it is not finite (JSON has no Infinity).
nlohmann::ordered_json number_or_null(double v) {
    return std::isfinite(v) ? nlohmann::ordered_json(v) : nlohmann::ordered_json(nullptr);
}

}  // namespace

std::string Args::get(const std::string& key, const std::string& fallback, bool required) const {
    auto it = values.find(key);
    if (it == values.end()) {
        if (required) throw std::invalid_argument("missing --" + key);
        return fallback;
    }
    return it->second.back();
}

int run_tokenize(const Args& args) {
    std::unique_ptr<TextEncoder> enc;
    if (args.has("bundle")) {
        enc = std::make_unique<TextEncoder>(TextEncoder::from_bundle(args.get("bundle")));
    } else if (args.has("tokenizer")) {
        enc = std::make_unique<TextEncoder>(
            TextEncoder::from_folder(args.get("tokenizer"), std::stoi(args.get("max-length", "80"))));
    } else {
        TextConfig cfg;
        cfg.max_length = std::stoi(args.get("max-length", "80"));
        enc = std::make_unique<TextEncoder>(TextEncoder::from_vocab_file(args.get("vocab", "", true), cfg));
    }
    std::unique_ptr<std::ifstream> file;
    std::istream& in = open_input(args, file);
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty()) continue;
        json out;
        try {
            const Sample s = parse_sample(json::parse(line));
            const Encoded e = enc->encode(s.words, s.head, s.tail);
            out = {{"input_ids", e.input_ids}, {"head_pos", e.head_pos}, {"tail_pos", e.tail_pos}};
        } catch (const InputError& e) {
            out = {{"error", e.what()}};
        } catch (const json::exception& e) {
            out = {{"error", std::string("bad JSON line: ") + e.what()}};
        }
        std::cout << out.dump(-1, ' ', false, json::error_handler_t::replace) << '\n';
    }
    return 0;
}

int run_predict(const Args& args) {
    Options opts;
    opts.graph = args.get("graph", "auto");
    opts.intra_op_threads = std::stoi(args.get("threads", "0"));
    opts.self_check = self_check_of(args);
    const auto ex = Extractor::load(args.get("bundle", "", true), opts);
    const std::size_t batch = static_cast<std::size_t>(std::max(1, std::stoi(args.get("batch", "1"))));
    std::unique_ptr<std::ifstream> file;
    std::istream& in = open_input(args, file);
    std::vector<std::pair<Sample, json>> pending;
    auto flush = [&] {
        std::vector<Sample> samples;
        for (auto& p : pending) samples.push_back(p.first);
        std::vector<json> lines;
        try {
            auto preds = ex.predict_batch(samples);
            for (std::size_t i = 0; i < preds.size(); ++i) lines.push_back(prediction_json(preds[i], pending[i].second));
        } catch (const InputError&) {  // report each bad sample on its own line
            lines.clear();
            for (auto& p : pending) {
                try {
                    lines.push_back(prediction_json(ex.predict(p.first), p.second));
                } catch (const InputError& e) {
                    lines.push_back({{"error", e.what()}});
                }
            }
        }
        for (const auto& l : lines) std::cout << l.dump(-1, ' ', false, json::error_handler_t::replace) << '\n';
        pending.clear();
    };
    std::string line;
    while (std::getline(in, line)) {
        if (line.empty()) continue;
        try {
            const json j = json::parse(line);
            pending.emplace_back(parse_sample(j), j.value("id", json()));
        } catch (const std::exception& e) {
            flush();
            std::cout << json{{"error", e.what()}}.dump(-1, ' ', false, json::error_handler_t::replace) << '\n';
            continue;
        }
        if (pending.size() >= batch) flush();
    }
    if (!pending.empty()) flush();
    return 0;
}

int run_image(const Args& args) {
    ImageConfig cfg;
    if (args.has("bundle")) {
        cfg = Extractor::load(args.get("bundle"), Options{}).info().image;
    } else {
        cfg.image_size = std::stoi(args.get("image-size", "", true));
        cfg.resize_size = std::stoi(args.get("resize-size", "", true));
    }
    const ImagePreprocessor pre(cfg);
    const auto it = args.values.find("image");
    if (it == args.values.end()) throw std::invalid_argument("missing --image");
    std::unique_ptr<std::ofstream> out_file;
    if (args.has("out")) {
        out_file = std::make_unique<std::ofstream>(args.get("out"), std::ios::binary);
        if (!*out_file) throw std::invalid_argument("cannot write --out " + args.get("out"));
    }
    // Every --image in order; their 3 x S x S arrays are written one after the other to --out.
    std::vector<float> out(3 * static_cast<std::size_t>(cfg.image_size) * cfg.image_size);
    for (const auto& path : it->second) {
        json line;
        try {
            const RgbImage rgb = pre.decode(Image::from_file(path));
            pre.preprocess_into(rgb, out.data());
            line = {{"image", path}, {"width", rgb.width}, {"height", rgb.height}, {"size", cfg.image_size}};
        } catch (const ImageError& e) {
            std::fill(out.begin(), out.end(), 0.f);
            line = {{"image", path}, {"error", e.what()}};
        }
        if (out_file)
            out_file->write(reinterpret_cast<const char*>(out.data()), static_cast<std::streamsize>(out.size() * sizeof(float)));
        std::cout << line.dump(-1, ' ', false, json::error_handler_t::replace) << '\n';
    }
    return 0;
}

int run_info(const Args& args) {
    Options opts;
    opts.graph = args.get("graph", "auto");
    opts.self_check = self_check_of(args);
    const auto ex = Extractor::load(args.get("bundle", "", true), opts);
    const auto& i = ex.info();
    json out = {{"bundle", i.dir}, {"graph", i.graph_key}, {"file", i.graph_file}, {"graph_reason", i.graph_reason}, {"preset", i.preset},
                {"labels", i.labels}, {"max_length", i.text.max_length}, {"image_size", i.image.image_size},
                {"num_crops", i.num_crops}, {"cpu_class", i.cpu_class}, {"onnxruntime", Extractor::onnxruntime_version()}};
    std::cout << out.dump(2) << '\n';
    return 0;
}

int run_verify(const Args& args) {
    const VerifyReport report = verify_bundle(args.get("bundle", "", true), std::stoi(args.get("threads", "0")));
    using ordered = nlohmann::ordered_json;  // the fields in the documented order
    std::cout << ordered{{"cpu_class", report.cpu_class}, {"bundle", report.bundle}, {"golden_samples", report.golden_samples}}
                     .dump(-1, ' ', false, json::error_handler_t::replace)
              << '\n';
    for (const auto& g : report.graphs) {
        const ordered line = {{"graph", g.graph}, {"file", g.file}, {"precision", g.precision},
                           {"top1_agreement", g.top1_agreement}, {"max_abs_error", number_or_null(g.max_abs_error)},
                           {"mean_abs_error", number_or_null(g.mean_abs_error)}, {"nonfinite_rows", g.nonfinite_rows},
                           {"ms_per_sample", g.ms_per_sample}, {"passed", g.passed}, {"reason", g.reason}};
        std::cout << line.dump(-1, ' ', false, json::error_handler_t::replace) << '\n';
    }
    return report.passed() ? 0 : 1;
}

}  // namespace dfma::cli
