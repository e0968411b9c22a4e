// dfma_cli: example program of the DFMA C++ runtime, and the tool the parity tests drive.
//
//   dfma_cli predict  --bundle DIR [--graph auto] [--stages auto|two-stage|whole] [--threads N] [--batch N] [--input FILE.jsonl]
//   dfma_cli tokenize --bundle DIR --input FILE.jsonl
//   dfma_cli tokenize (--tokenizer DIR | --vocab vocab.txt) [--max-length 80] --input FILE.jsonl
//   dfma_cli image    (--bundle DIR | --image-size S --resize-size R) --image FILE [--image FILE ...] [--out FILE.f32]
//   dfma_cli info     --bundle DIR [--graph auto] [--stages auto|two-stage|whole] [--self-check auto|always|never]
//   dfma_cli verify   --bundle DIR [--threads N]
//
// verify prints {"cpu_class", "bundle", "golden_samples"}, then one line per graph ONNX Runtime's CPU
// provider runs ({"graph", "file", "precision", "top1_agreement", "max_abs_error", "mean_abs_error",
// "nonfinite_rows", "ms_per_sample", "passed", "reason"}; errors that are not finite print as null);
// exit status 0 when every graph passes, 1 when one fails, 2 on a usage or bundle error.
//
// Sample lines: {"words": [...], "head": [s, e], "tail": [s, e], "image": "path", "crops": ["path", ...]}
// or MNRE records {"token": [...], "h": {"pos": [s, e]}, "t": {"pos": [s, e]}} or raw text
// {"text": "...", "head": [s, e], "tail": [s, e]} (character spans), read as they stream (stdin, a pipe or
// a file). predict prints one line per request line: {"line", "label", ...} or {"line", "error": {"type",
// "field", "message"}} (the Python runtime's error kinds and fields); a bad line or a failed run never ends
// the stream. A line with "entities": [[s, e], ...] (and optional "pairs": "all" | [[h, t], ...]) instead
// of "head"/"tail" gives one line per ordered entity pair, {"line", "pair": [h, t], "label", ...}, or one
// error line. Request limits: --max-image-side N and the other fields of dfma/limits.hpp ('_' as '-').
// A fatal error (usage, bundle) is one line on stderr; exit code 2.
#include <iostream>
#include <stdexcept>
#include <string>

#include "cli_modes.hpp"
#include "dfma/errors.hpp"

namespace {

const char* kUsage =
    "usage: dfma_cli {predict|tokenize|image|info|verify} --bundle DIR [options]\n"
    "  predict  [--graph auto] [--stages auto|two-stage|whole] [--self-check auto|always|never]\n"
    "           [--allow-batch-dependent true|false (default false: auto passes over a batch-dependent graph)]\n"
    "           [--threads N] [--batch N] [--input FILE.jsonl (default stdin)]\n"
    "           (a line with \"entities\" [and \"pairs\"] gives one line per entity pair)\n"
    "  tokenize --input FILE.jsonl   (or --tokenizer DIR | --vocab vocab.txt, with [--max-length N])\n"
    "  image    --image FILE [--image FILE ...] [--out FILE.f32]   (or --image-size S --resize-size R)\n"
    "  info     [--graph auto] [--stages auto|two-stage|whole] [--self-check auto|always|never]\n"
    "           [--allow-batch-dependent true|false]\n"
    "  verify   [--threads N]   (the golden set on every CPU graph; exit 0 all pass, 1 one fails)\n"
    "  request limits (predict, tokenize, image): --max-image-bytes --max-image-pixels --max-image-side\n"
    "           --max-aspect-ratio --max-resized-pixels --max-chunk-bytes --max-ancillary-bytes --max-jpeg-scans\n"
    "           --max-text-chars --max-words --max-batch-requests --max-line-bytes --max-json-depth N\n";

// A message on one line (a fatal error is always one line of stderr).
std::string one_line(std::string text) {
    for (char& c : text)
        if (c == '\n' || c == '\r') c = ' ';
    return text;
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2 || std::string(argv[1]) == "-h" || std::string(argv[1]) == "--help") {
        std::cerr << kUsage;
        return argc < 2 ? 2 : 0;
    }
    const std::string mode = argv[1];
    dfma::cli::Args args;
    for (int i = 2; i < argc; ++i) {
        std::string key = argv[i];
        if (key.rfind("--", 0) != 0 || i + 1 >= argc) {
            std::cerr << "dfma_cli: usage error: expected --option value, got '" << key << "' (dfma_cli --help)\n";
            return 2;
        }
        args.values[key.substr(2)].push_back(argv[++i]);
    }
    try {
        if (mode == "predict") return dfma::cli::run_predict(args);
        if (mode == "tokenize") return dfma::cli::run_tokenize(args);
        if (mode == "image") return dfma::cli::run_image(args);
        if (mode == "info") return dfma::cli::run_info(args);
        if (mode == "verify") return dfma::cli::run_verify(args);
        std::cerr << "dfma_cli: usage error: unknown mode '" << mode << "' (dfma_cli --help)\n";
        return 2;
    } catch (const dfma::Error& e) {
        std::cerr << "dfma_cli: " << one_line(e.what()) << "\n";
        return 2;
    } catch (const std::invalid_argument& e) {
        std::cerr << "dfma_cli: usage error: " << one_line(e.what()) << " (dfma_cli --help)\n";
        return 2;
    } catch (const std::exception& e) {
        std::cerr << "dfma_cli: " << one_line(e.what()) << "\n";
        return 2;
    }
}
