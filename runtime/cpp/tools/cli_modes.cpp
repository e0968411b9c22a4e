#include "cli_modes.hpp"

#include <algorithm>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <stdexcept>

#include <nlohmann/json.hpp>

#include <sys/stat.h>

#include "../src/image_file.hpp"
#include "dfma/dfma.hpp"
#include "request_line.hpp"

namespace dfma::cli {
namespace {

using nlohmann::json;

// --input: "-" (default) is stdin; a path must be a regular file or a FIFO (a pipe), as the Python CLI.
std::istream& open_input(const Args& args, std::unique_ptr<std::ifstream>& file) {
    const std::string path = args.get("input", "-");
    if (path == "-") return std::cin;
    struct stat st {};
    if (::stat(path.c_str(), &st) != 0)
        throw std::invalid_argument("--input " + path + ": " + (errno == ENOENT ? std::string("no such file") : std::strerror(errno)));
    if (!S_ISREG(st.st_mode) && !S_ISFIFO(st.st_mode))
        throw std::invalid_argument("--input " + path + ": " + detail::file_kind(st.st_mode) + ", not a file or a pipe");
    file = std::make_unique<std::ifstream>(path, std::ios::binary);
    if (!*file) throw std::invalid_argument("cannot open --input " + path);
    return *file;
}

// One output line; invalid UTF-8 in a message (an echoed path) is replaced, never fatal.
void emit(const json& line) { std::cout << line.dump(-1, ' ', false, json::error_handler_t::replace) << '\n'; }

json prediction_json(std::int64_t line, const Prediction& p, const json& id) {
    json out = {{"line", line}, {"label", p.label}, {"label_id", p.label_id}, {"probability", p.probability},
                {"logits", p.logits}};
    if (!id.is_null()) out["id"] = id;
    return out;
}

json error_line(std::int64_t line, const std::exception& e) { return {{"line", line}, {"error", error_json(e)}}; }

// One line per entity pair: the prediction with "pair": [head, tail] (entity indices).
json pair_json(std::int64_t line, const PairPrediction& p, const json& id) {
    json out = prediction_json(line, p, id);
    out["pair"] = {p.head, p.tail};
    return out;
}

// --stages auto|two-stage|whole (Options::stages).
Stages stages_of(const Args& args) {
    const std::string v = args.get("stages", "auto");
    if (v == "auto") return Stages::automatic;
    if (v == "two-stage") return Stages::two_stage;
    if (v == "whole") return Stages::whole;
    throw std::invalid_argument("--stages must be auto, two-stage or whole, got '" + v + "'");
}

// --allow-batch-dependent true|false (Options::allow_batch_dependent; default false).
bool allow_batch_dependent_of(const Args& args) {
    const std::string v = args.get("allow-batch-dependent", "false");
    if (v == "true") return true;
    if (v == "false") return false;
    throw std::invalid_argument("--allow-batch-dependent must be true or false, got '" + v + "'");
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

int Args::get_int(const std::string& key, int fallback, int minimum) const {
    if (!has(key)) return fallback;
    const std::string v = get(key);
    char* end = nullptr;
    errno = 0;
    const long n = std::strtol(v.c_str(), &end, 10);
    if (v.empty() || end != v.c_str() + v.size() || errno != 0 || n < minimum || n > INT_MAX)
        throw std::invalid_argument("--" + key + " must be an integer >= " + std::to_string(minimum) + ", got '" + v + "'");
    return static_cast<int>(n);
}

Limits Args::limits() const {
    Limits out;
    for (const auto& name : Limits::names()) {
        std::string flag = name;
        std::replace(flag.begin(), flag.end(), '_', '-');
        if (!has(flag)) continue;
        try {
            out.set(name, get(flag));
        } catch (const InputError& e) {
            throw std::invalid_argument("--" + flag + ": " + e.what());
        }
    }
    return out;
}

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
            TextEncoder::from_folder(args.get("tokenizer"), args.get_int("max-length", 80, 1)));
    } else {
        TextConfig cfg;
        cfg.max_length = args.get_int("max-length", 80, 1);
        enc = std::make_unique<TextEncoder>(TextEncoder::from_vocab_file(args.get("vocab", "", true), cfg));
    }
    const Limits limits = args.limits();
    std::unique_ptr<std::ifstream> file;
    std::istream& in = open_input(args, file);
    std::string line;
    bool too_long = false;
    while (read_line(in, limits.max_line_bytes, line, too_long)) {
        if (!too_long && line.find_first_not_of(" \t\r\f\v") == std::string::npos) continue;
        json out;
        try {
            if (too_long) throw DataError("line is longer than " + std::to_string(limits.max_line_bytes) + " bytes (max_line_bytes)");
            const Request r = parse_request(line, limits);
            if (r.pairs) throw InputError("entities: tokenize takes requests with 'head' and 'tail', not 'entities'", "entities");
            const Sample& s = r.sample;
            const Encoded e = enc->encode(s.words, s.head, s.tail);
            out = {{"input_ids", e.input_ids}, {"head_pos", e.head_pos}, {"tail_pos", e.tail_pos}};
        } catch (const Error& e) {
            out = {{"error", e.what()}};
        } catch (const json::exception& e) {
            out = {{"error", std::string("bad JSON line: ") + e.what()}};
        }
        emit(out);
    }
    return 0;
}

int run_predict(const Args& args) {
    Options opts;
    opts.graph = args.get("graph", "auto");
    opts.intra_op_threads = args.get_int("threads", 0, 0);
    opts.self_check = self_check_of(args);
    opts.allow_batch_dependent = allow_batch_dependent_of(args);
    opts.stages = stages_of(args);
    opts.limits = args.limits();
    const int batch_flag = args.get_int("batch", 1, 1);
    if (batch_flag > opts.limits.max_batch_requests)
        throw std::invalid_argument("--batch " + std::to_string(batch_flag) + " is over max_batch_requests " +
                                    std::to_string(opts.limits.max_batch_requests));
    const std::size_t batch = static_cast<std::size_t>(batch_flag);
    std::unique_ptr<std::ifstream> file;
    std::istream& in = open_input(args, file);  // checked before the bundle loads
    const auto ex = Extractor::load(args.get("bundle", "", true), opts);
    struct Pending {
        std::int64_t line;
        Sample sample;
        json id;
    };
    std::vector<Pending> pending;
    // Runs the pending samples; when the batch fails (a bad image, a failed run), each on its own, so
    // that one bad line is that line's error and the others are still predicted.
    auto flush = [&] {
        std::vector<Sample> samples;
        for (auto& p : pending) samples.push_back(p.sample);
        std::vector<json> lines;
        try {
            auto preds = ex.predict_batch(samples);
            for (std::size_t i = 0; i < preds.size(); ++i) lines.push_back(prediction_json(pending[i].line, preds[i], pending[i].id));
        } catch (const std::exception&) {
            lines.clear();
            for (auto& p : pending) {
                try {
                    lines.push_back(prediction_json(p.line, ex.predict(p.sample), p.id));
                } catch (const std::exception& e) {
                    lines.push_back(error_line(p.line, e));
                }
            }
        }
        for (const auto& l : lines) emit(l);
        std::cout.flush();
        pending.clear();
    };
    std::string line;
    bool too_long = false;
    std::int64_t number = 0;
    while (read_line(in, opts.limits.max_line_bytes, line, too_long)) {
        ++number;
        if (!too_long && line.find_first_not_of(" \t\r\f\v") == std::string::npos) continue;
        try {
            if (too_long)
                throw DataError("line is longer than " + std::to_string(opts.limits.max_line_bytes) + " bytes (max_line_bytes)");
            Request r = parse_request(line, opts.limits);
            if (r.pairs) {  // one sentence, many pairs: a batch of its own, after the lines before it
                flush();
                std::vector<json> lines;
                try {
                    for (const auto& p : ex.predict_pairs(*r.pairs)) lines.push_back(pair_json(number, p, r.id));
                } catch (const std::exception& e) {
                    lines.assign(1, error_line(number, e));
                }
                for (const auto& l : lines) emit(l);
                std::cout.flush();
                continue;
            }
            pending.push_back({number, std::move(r.sample), std::move(r.id)});
        } catch (const std::exception& e) {
            flush();
            emit(error_line(number, e));
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
        args.get("image-size", "", true);
        args.get("resize-size", "", true);
        cfg.image_size = args.get_int("image-size", 0, 1);
        cfg.resize_size = args.get_int("resize-size", 0, 1);
    }
    const ImagePreprocessor pre(cfg, args.limits());
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
    opts.allow_batch_dependent = allow_batch_dependent_of(args);
    opts.stages = stages_of(args);
    const auto ex = Extractor::load(args.get("bundle", "", true), opts);
    const auto& i = ex.info();
    const json stage_files = i.stages == "two-stage" ? json{{"vision", i.vision_file}, {"text", i.text_file}} : json();
    json out = {{"bundle", i.dir}, {"graph", i.graph_key}, {"file", i.graph_file}, {"graph_reason", i.graph_reason},
                {"stages", i.stages}, {"stages_reason", i.stages_reason}, {"stage_files", stage_files}, {"preset", i.preset},
                {"labels", i.labels}, {"max_length", i.text.max_length}, {"image_size", i.image.image_size},
                {"num_crops", i.num_crops}, {"cpu_class", i.cpu_class}, {"onnxruntime", Extractor::onnxruntime_version()}};
    std::cout << out.dump(2) << '\n';
    return 0;
}

int run_verify(const Args& args) {
    const VerifyReport report = verify_bundle(args.get("bundle", "", true), args.get_int("threads", 0, 0));
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
