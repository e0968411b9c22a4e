// Relation extraction from a DFMA bundle folder: load once, predict many times (from any thread).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "dfma/image.hpp"
#include "dfma/limits.hpp"
#include "dfma/text.hpp"

namespace dfma {

/// One request: a sentence as words, the head and tail entity spans (word indices, end exclusive),
/// the post's image (optional) and up to `num_crops` object crops (slot k = crops[k]; an empty entry
/// leaves its slot absent, like None in the Python runtime).
struct Sample {
    std::vector<std::string> words;
    Span head, tail;
    std::optional<Image> image;
    std::vector<std::optional<Image>> crops;
};

/// The relation for one sample.
struct Prediction {
    std::string label;                 ///< labels()[label_id]
    int label_id = -1;                 ///< argmax of the logits (first maximum)
    float probability = 0.f;           ///< softmax probability of label_id
    std::vector<float> probabilities;  ///< softmax over all labels
    std::vector<float> logits;         ///< the graph's raw output row
};

/// An ordered entity pair of a PairsSample: indices into its `entities` (head != tail).
struct EntityPair {
    int head = 0;
    int tail = 0;
};

/// One sentence with several entities, for predict_pairs() (Python's predict_pairs): every ordered pair
/// (or the listed ones) is one relation to predict, all with the same image and crops.
struct PairsSample {
    std::vector<std::string> words;   ///< the sentence as words: `entities` are word spans; or
    std::optional<std::string> text;  ///< raw UTF-8 text: `entities` are character spans (code points)
    std::vector<Span> entities;       ///< at least two, no span twice
    std::optional<Image> image;
    std::vector<std::optional<Image>> crops;
    /// The pairs to predict, in this order; unset = all ordered pairs (head != tail) in the order
    /// (0,1), (0,2), ..., (1,0), (1,2), ...
    std::optional<std::vector<EntityPair>> pairs;
};

/// The relation of one entity pair: a Prediction and the pair's entity indices.
struct PairPrediction : Prediction {
    int head = -1;  ///< index into PairsSample::entities
    int tail = -1;
};

/// When `auto` runs the bundle's golden set on a graph before serving it (Python's self_check=).
enum class SelfCheck {
    automatic,  ///< a non-fp32 graph whose expected golden result was recorded on another CPU class
    always,     ///< every non-fp32 graph
    never,      ///< trust the record
};

/// Whether the extractor runs a graph whole or as its stage graphs (Python's load(stages=)).
enum class Stages {
    automatic,  ///< the stage graphs where the chosen graph's entry lists them (`graphs.<key>.stages`), else whole
    two_stage,  ///< the stage graphs: vision once per distinct image set of a batch, then text; else BundleError
    whole,      ///< the whole graph
};

/// Load-time options.
struct Options {
    /// "auto" (the bundle's recorded CPU default: the fastest graph that met the accuracy guard, else
    /// fp32), a manifest `graphs` key ("portable", "ort", ...) or a precision: "fp32" = the fp32 graph of
    /// kind portable (standard ops), "fp32-ort" = the ONNX Runtime fused one, "fp16", "int8", ...
    /// With a `ranked` record, "auto" walks it: per precision the graph this CPU prefers (the row meant
    /// for its class, then fused kernels), checked on the golden set per `self_check`; fp32 last.
    std::string graph = "auto";
    int intra_op_threads = 0;        ///< ONNX Runtime intra-op threads; 0 = its default
    bool verify_all_files = true;    ///< sha256 of every file in the manifest (as the Python runtime);
                                     ///< false: only the files this runtime reads (faster on big bundles)
    SelfCheck self_check = SelfCheck::automatic;  ///< golden check of a ranked `auto` choice (see SelfCheck)
    /// Whether "auto" may serve a graph the precision step marked batch-dependent
    /// (`graphs.<key>.batch_dependent`: dynamic INT8, whose answer to a request changes with the other
    /// requests in its batch); false: auto passes over it (Python's load(allow_batch_dependent=)). A graph
    /// asked for by key or precision is served either way, with a warning in graph_reason.
    bool allow_batch_dependent = false;
    /// Whole graph or stage graphs (see Stages); both give the whole graph's logits (1e-5, fp32).
    Stages stages = Stages::automatic;
    /// The bounds of one request (dfma/limits.hpp; the Python runtime's load(limits=)).
    Limits limits;
    /// Accept files the manifest does not list (default: refuse them, as the Python runtime; the
    /// environment variable DFMA_BUNDLE_ALLOW_UNLISTED=1 opts out too).
    bool allow_unlisted_files = false;
    /// HMAC-SHA256 key file: the bundle's manifest.sig must match it (empty: $DFMA_BUNDLE_KEY_FILE when
    /// set, else no signature is required). The digest manifest.sha256 is always checked.
    std::string key_file;
};

/// What a loaded bundle says about itself.
struct BundleInfo {
    std::string dir, graph_key, graph_file, graph_reason, preset;  ///< graph_key: the manifest `graphs` key
    std::string cpu_class;  ///< this host's CPU class (dfma/host.hpp), what `auto` compared with the record
    std::string stages;        ///< what runs: "two-stage" (the stage graphs) or "whole"
    std::string stages_reason; ///< why, e.g. "auto: the stage graphs of model.ort.onnx"
    std::string vision_file, text_file;  ///< the stage graphs' files (empty when whole)
    std::vector<std::string> labels;
    int max_batch = 0;     ///< manifest limits.max_batch (0 = no limit); predict_batch splits larger batches
    int num_crops = 3;
    TextConfig text;
    ImageConfig image;
    Limits limits;         ///< Options::limits, what every request is checked against
};

/// A loaded bundle: verified files, tokenizer, image preprocessing and one ONNX Runtime session (two for
/// the stage graphs: vision, text; Options::stages). Immutable after load(); predict(), predict_batch()
/// and predict_pairs() may be called concurrently.
class Extractor {
public:
    /// Reads manifest.json (checked against its digest, and signature with a key), checks its
    /// consistency, verifies file hashes and that nothing unlisted is there, loads the tokenizer and the graph.
    /// Throws BundleError (missing/corrupt/mismatched files, edited manifest) or InferenceError (ONNX Runtime).
    static Extractor load(const std::string& bundle_dir, const Options& options = {});

    /// Predicts one sample. Throws InputError / ImageError for bad input (field() names the field: "image"
    /// for the post's image, "crops[k]" for crop k), InferenceError if the run fails; the extractor goes
    /// on serving either way.
    Prediction predict(const Sample& sample) const;
    /// Predicts many samples (at most limits.max_batch_requests; padded batches of at most max_batch
    /// rows), results in input order. Errors name the sample: field() "samples[i].head",
    /// "samples[i].crops[k]". With the stage graphs, the vision stage runs once per distinct image set
    /// of each batch (same image mask, bit-identical preprocessed pixels in the present slots).
    std::vector<Prediction> predict_batch(const std::vector<Sample>& samples) const;
    /// Logits of a batch exactly as the graph returns them ([n][num_labels]), for parity tools.
    std::vector<std::vector<float>> logits_batch(const std::vector<Sample>& samples) const;
    /// One prediction per ordered entity pair of one sentence (PairsSample::pairs, default all), in pair
    /// order; each equals predict() of that pair as a single request. The image set is preprocessed once
    /// and, with the stage graphs, encoded once; the texts run in batches of at most max_batch rows.
    /// Everything is checked before anything runs, with the Python runtime's fields and wording
    /// (runtime/entity_pairs.py): InputError "sentence" (text and words both, empty, over a limit),
    /// "entities" (fewer than two, more than max_batch_requests), "entities[i]" (out of range,
    /// whitespace only, given twice), "pairs" (all pairs or the list over max_batch_requests), "pairs[k]"
    /// (an index out of range, head == tail), "crops"; ImageError ("image", "crops[k]") for an image that
    /// cannot be used. An empty list of pairs returns no predictions (and checks no images), as in Python.
    std::vector<PairPrediction> predict_pairs(const PairsSample& sample) const;

    /// The bundle's text encoder (same object the extractor uses).
    const TextEncoder& text_encoder() const;
    /// The bundle's image preprocessor.
    const ImagePreprocessor& image_preprocessor() const;
    /// Labels, limits and preprocessing constants of the loaded bundle.
    const BundleInfo& info() const;
    /// Version of the ONNX Runtime library in use (e.g. "1.32.0").
    static std::string onnxruntime_version();

    Extractor(Extractor&&) noexcept;
    Extractor& operator=(Extractor&&) noexcept;
    ~Extractor();

private:
    static Extractor load_checked(const std::string& bundle_dir, const Options& options);
    struct Impl;
    explicit Extractor(std::unique_ptr<Impl> impl);
    std::unique_ptr<Impl> impl_;
};

}  // namespace dfma
