#include "manifest_checks.hpp"

#include <cmath>
#include <limits>
#include <map>
#include <optional>
#include <set>
#include <vector>

#include "dfma/errors.hpp"

namespace dfma::detail {
namespace {

using nlohmann::json;

std::string short_dump(const json& v) { return short_json(v); }

}  // namespace

std::string short_json(const json& v) {
    const std::string text = v.dump(-1, ' ', false, json::error_handler_t::replace);
    if (text.size() <= 80) return text;
    std::size_t cut = 77;
    while (cut > 0 && (static_cast<unsigned char>(text[cut]) & 0xC0) == 0x80) --cut;  // not inside a UTF-8 character
    return text.substr(0, cut) + "...";
}

namespace {

struct Checker {
    std::string where;

    [[noreturn]] void fail(const std::string& field, const std::string& message) const {
        throw BundleError(where + ": field '" + field + "' " + message);
    }

    std::optional<std::int64_t> integer(const json& section, const std::string& name, const std::string& field,
                                        std::int64_t lo, std::optional<std::int64_t> hi, bool optional = false) const {
        const auto it = section.find(name);
        if (it == section.end() || (optional && it->is_null())) {
            if (optional) return std::nullopt;
            fail(field, "missing");
        }
        std::int64_t v = 0;
        if (!as_int64(*it, v)) fail(field, "must be an integer, got " + short_dump(*it));
        if (v < lo || (hi && v > *hi))
            fail(field, hi ? "is " + std::to_string(v) + ", must be in " + std::to_string(lo) + ".." + std::to_string(*hi)
                           : "is " + std::to_string(v) + ", must be >= " + std::to_string(lo));
        return v;
    }

    std::int64_t required(const json& section, const std::string& name, const std::string& field, std::int64_t lo,
                          std::optional<std::int64_t> hi) const {
        return *integer(section, name, field, lo, hi);
    }

    void numbers3(const json& section, const std::string& name, const std::string& field, bool positive) const {
        const auto it = section.find(name);
        bool ok = it != section.end() && it->is_array() && it->size() == 3;
        if (ok)
            for (const auto& x : *it)
                ok = ok && x.is_number() && std::isfinite(x.get<double>()) && (!positive || x.get<double>() > 0);
        if (!ok)
            fail(field, std::string("must be 3 finite numbers") + (positive ? " > 0" : "") + ", got " +
                            (it == section.end() ? std::string("null") : short_dump(*it)));
    }
};

struct Spec {
    std::string name, dtype;
    json shape;
};

void check_labels(const Checker& c, const json& labels) {
    if (labels.empty()) c.fail("labels", "is empty");
    std::set<std::string> seen;
    for (std::size_t i = 0; i < labels.size(); ++i) {
        if (!labels[i].is_string() || labels[i].get<std::string>().empty())
            c.fail("labels[" + std::to_string(i) + "]", "must be a non-empty string, got " + short_dump(labels[i]));
        seen.insert(labels[i].get<std::string>());
    }
    if (seen.size() != labels.size()) c.fail("labels", "repeats a name");
    if (!seen.count("None")) c.fail("labels", "has no 'None' (no relation) label");
}

struct Pre {
    std::int64_t max_length, image_size, resize_size, num_crops;
};

Pre check_preprocess(const Checker& c, const json& pre, const json& files) {
    Pre p{};
    p.max_length = c.required(pre, "max_length", "preprocess.max_length", kMinMaxLength, kMaxLength);
    p.image_size = c.required(pre, "image_size", "preprocess.image_size", 1, kMaxImageSize);
    p.resize_size = c.required(pre, "resize_size", "preprocess.resize_size", p.image_size, kMaxResizeSize);
    p.num_crops = c.required(pre, "num_crops", "preprocess.num_crops", 0, kMaxCrops);
    c.numbers3(pre, "mean", "preprocess.mean", false);
    c.numbers3(pre, "std", "preprocess.std", true);
    c.integer(pre, "max_image_pixels", "preprocess.max_image_pixels", 1, std::nullopt, true);
    if (pre.contains("lowercase") && !pre["lowercase"].is_boolean())
        c.fail("preprocess.lowercase", "must be true or false, got " + short_dump(pre["lowercase"]));
    if (pre.contains("special_tokens")) {
        const auto& special = pre["special_tokens"];
        if (!special.is_object()) c.fail("preprocess.special_tokens", "must be an object, got " + short_dump(special));
        for (const auto& [key, entry] : special.items()) {
            const std::string field = "preprocess.special_tokens." + key;
            if (!entry.is_object() || !entry.contains("token") || !entry["token"].is_string())
                c.fail(field, "must be {token: str, id: int}, got " + short_dump(entry));
            c.integer(entry, "id", field + ".id", 0, std::nullopt);
        }
    }
    for (const char* name : {"tokenizer", "vocab"}) {
        if (!pre.contains(name)) continue;
        const auto& v = pre[name];
        if (!v.is_string() || !files.contains(v.get<std::string>()))
            c.fail(std::string("preprocess.") + name, "is " + short_dump(v) + ", not a file the manifest lists");
    }
    return p;
}

void check_model_config(const Checker& c, const json& cfg, const Pre& p, std::int64_t limits_max_length,
                        const json& labels, const json& pre) {
    const auto mpe = c.integer(cfg, "max_position_embeddings", "model.config.max_position_embeddings", 1, std::nullopt, true);
    if (mpe && limits_max_length > *mpe)
        c.fail("limits.max_length", "is " + std::to_string(limits_max_length) +
                                        ", past the model's position embeddings (model.config.max_position_embeddings " +
                                        std::to_string(*mpe) + ")");
    const std::pair<const char*, std::int64_t> same[] = {
        {"image_size", p.image_size}, {"resize_size", p.resize_size}, {"num_crops", p.num_crops}};
    for (const auto& [name, have] : same) {
        if (cfg.contains(name) && !cfg[name].is_null() && cfg[name] != json(have))
            c.fail(std::string("preprocess.") + name, "is " + std::to_string(have) + ", but model.config." + name +
                                                          " is " + short_dump(cfg[name]));
    }
    if (cfg.contains("num_labels") && !cfg["num_labels"].is_null() && cfg["num_labels"] != json(labels.size()))
        c.fail("labels", "has " + std::to_string(labels.size()) + " names, but model.config.num_labels is " +
                             short_dump(cfg["num_labels"]));
    const auto vocab = c.integer(cfg, "vocab_size", "model.config.vocab_size", 1, std::nullopt, true);
    if (vocab && pre.contains("special_tokens")) {
        for (const auto& [key, entry] : pre["special_tokens"].items()) {
            std::int64_t id = 0;
            as_int64(entry["id"], id);
            if (id >= *vocab)
                c.fail("preprocess.special_tokens." + key + ".id",
                       "is " + std::to_string(id) + ", past model.config.vocab_size " + std::to_string(*vocab));
        }
    }
}

void check_io(const Checker& c, const json& io, const Pre& p, std::size_t num_labels) {
    const std::int64_t slots = 1 + p.num_crops, s = p.image_size;
    const std::vector<std::pair<std::string, std::vector<Spec>>> sections = {
        {"inputs",
         {{"input_ids", "int64", json::array({"batch", "sequence"})},
          {"attention_mask", "int64", json::array({"batch", "sequence"})},
          {"pixel_values", "float32", json::array({"batch", slots, 3, s, s})},
          {"image_mask", "int64", json::array({"batch", slots})}}},
        {"outputs", {{"logits", "float32", json::array({"batch", num_labels})}}}};
    for (const auto& [section, specs] : sections) {
        const json* entries = io.contains(section) ? &io[section] : nullptr;
        bool ok = entries && entries->is_array();
        if (ok)
            for (const auto& e : *entries) ok = ok && e.is_object();
        if (!ok)
            c.fail("io." + section, "must be a list of {name, dtype, shape}, got " +
                                        (entries ? short_dump(*entries) : std::string("null")));
        std::map<std::string, const json*> by_name;
        std::vector<std::string> names;
        bool all_strings = true;
        for (const auto& e : *entries) {
            const auto n = e.find("name");
            if (n == e.end() || !n->is_string()) {
                all_strings = false;
                continue;
            }
            by_name[n->get<std::string>()] = &e;
        }
        std::set<std::string> wanted, have;
        for (const auto& spec : specs) wanted.insert(spec.name);
        for (const auto& kv : by_name) have.insert(kv.first);
        if (!all_strings || have != wanted || by_name.size() != entries->size()) {
            json listed = json::array(), want = json::array();
            for (const auto& e : *entries) listed.push_back(e.contains("name") ? e["name"] : json());
            for (const auto& spec : specs) want.push_back(spec.name);
            c.fail("io." + section, "names are " + short_dump(listed) + ", the contract's are " + short_dump(want));
        }
        for (const auto& spec : specs) {
            const json& e = *by_name[spec.name];
            const std::string field = "io." + section + "." + spec.name;
            if (!e.contains("dtype") || e["dtype"] != json(spec.dtype))
                c.fail(field + ".dtype", "is " + (e.contains("dtype") ? short_dump(e["dtype"]) : std::string("null")) +
                                             ", the contract's is '" + spec.dtype + "'");
            bool same = e.contains("shape") && e["shape"].is_array() && e["shape"].size() == spec.shape.size();
            for (std::size_t i = 0; same && i < spec.shape.size(); ++i) {
                const auto& d = e["shape"][i];
                same = !d.is_boolean() && d == spec.shape[i];
            }
            if (!same)
                c.fail(field + ".shape", "is " + (e.contains("shape") ? short_dump(e["shape"]) : std::string("null")) +
                                             ", but the preprocess section (image_size " + std::to_string(s) +
                                             ", num_crops " + std::to_string(p.num_crops) + ") and " +
                                             std::to_string(num_labels) + " labels give " + short_dump(spec.shape));
        }
    }
}

bool strings(const json& v) {
    if (!v.is_array()) return false;
    for (const auto& x : v)
        if (!x.is_string()) return false;
    return true;
}

bool finite_number(const json& v) { return v.is_number() && std::isfinite(v.get<double>()); }

const json* member(const json& obj, const char* name) {
    const auto it = obj.find(name);
    return it == obj.end() ? nullptr : &*it;
}

void check_graph_entries(const Checker& c, const json& graphs) {
    for (const auto& [key, entry] : graphs.items()) {
        if (const auto* v = member(entry, "ops"); v && !v->is_string())
            c.fail("graphs." + key + ".ops", "must be a string, got " + short_dump(*v));
        if (const auto* v = member(entry, "devices"); v && !strings(*v))
            c.fail("graphs." + key + ".devices", "must be a list of strings, got " + short_dump(*v));
        if (const auto* v = member(entry, "cpu_classes"); v && !v->is_null() && !strings(*v))
            c.fail("graphs." + key + ".cpu_classes", "must be null or a list of strings, got " + short_dump(*v));
    }
}

void check_defaults(const Checker& c, const json& defaults) {
    if (!defaults.is_object()) c.fail("defaults", "must be an object, got " + short_dump(defaults));
    const auto* auto_ = member(defaults, "auto");
    if (!auto_) return;
    if (!auto_->is_object()) c.fail("defaults.auto", "must be an object, got " + short_dump(*auto_));
    for (const auto& [scope, rec] : auto_->items()) {
        const std::string field = "defaults.auto." + scope;
        if (!rec.is_object()) c.fail(field, "must be an object, got " + short_dump(rec));
        for (const char* name : {"graph", "precision"}) {
            const auto* v = member(rec, name);
            if (!v || !v->is_string())
                c.fail(field + "." + name, "must be a string, got " + (v ? short_dump(*v) : std::string("null")));
        }
        const std::pair<const char*, bool (*)(const json&)> typed[] = {
            {"backend", [](const json& v) { return v.is_null() || v.is_string(); }},
            {"reason", [](const json& v) { return v.is_string(); }},
            {"host", [](const json& v) { return v.is_object(); }},
            {"ranked", [](const json& v) { return v.is_array(); }}};
        for (const auto& [name, ok] : typed)
            if (const auto* v = member(rec, name); v && !ok(*v))
                c.fail(field + "." + name, "has the wrong type: " + short_dump(*v));
        if (const auto* ranked = member(rec, "ranked")) {
            for (std::size_t i = 0; i < ranked->size(); ++i) {
                const auto& e = (*ranked)[i];
                const auto* backend = e.is_object() ? member(e, "backend") : nullptr;
                const auto* graph = e.is_object() ? member(e, "graph") : nullptr;
                if (!e.is_object() || !member(e, "precision") || !e["precision"].is_string() ||
                    (backend && !backend->is_null() && !backend->is_string()) || (graph && !graph->is_null() && !graph->is_string()))
                    c.fail(field + ".ranked[" + std::to_string(i) + "]",
                           "must be {precision: str, backend, graph}, got " + short_dump(e));
            }
        }
    }
}

void check_golden(const Checker& c, const json& golden, const json& files) {
    if (!golden.is_object()) c.fail("golden", "must be an object, got " + short_dump(golden));
    const json rel = golden.contains("file") ? golden["file"] : json("golden.safetensors");
    if (!rel.is_string() || !files.contains(rel.get<std::string>()))
        c.fail("golden.file", "is " + short_dump(rel) + ", not a file the manifest lists");
    if (const auto* tol = member(golden, "tolerance")) {
        bool ok = tol->is_object();
        if (ok)
            for (const auto& kv : tol->items()) ok = ok && finite_number(kv.value());
        if (!ok) c.fail("golden.tolerance", "must be an object of numbers, got " + short_dump(*tol));
    }
    const auto* expected = member(golden, "expected");
    if (!expected) return;
    if (!expected->is_object()) c.fail("golden.expected", "must be an object, got " + short_dump(*expected));
    for (const auto& [key, e] : expected->items()) {
        const std::string field = "golden.expected." + key;
        if (!e.is_object() || !member(e, "top1_agreement") || !finite_number(e["top1_agreement"]) ||
            !member(e, "max_abs_error") || !finite_number(e["max_abs_error"]))
            c.fail(field, "needs numeric top1_agreement and max_abs_error, got " + short_dump(e));
        if (const auto* host = member(e, "host"); host && !host->is_object())
            c.fail(field + ".host", "must be an object, got " + short_dump(*host));
    }
}

}  // namespace

bool as_int64(const json& v, std::int64_t& out) {
    if (v.is_number_unsigned()) {
        const auto u = v.get<std::uint64_t>();
        if (u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) return false;
        out = static_cast<std::int64_t>(u);
        return true;
    }
    if (v.is_number_integer()) {
        out = v.get<std::int64_t>();
        return true;
    }
    return false;
}

void check_consistency(const json& m, const std::string& where) {
    const Checker c{where};
    check_labels(c, m["labels"]);
    const Pre p = check_preprocess(c, m["preprocess"], m["files"]);
    const auto& limits = m["limits"];
    c.required(limits, "max_batch", "limits.max_batch", 1, kMaxBatch);
    const std::int64_t max_length = c.required(limits, "max_length", "limits.max_length", 1, kMaxLength);
    if (max_length < p.max_length)
        c.fail("preprocess.max_length", "is " + std::to_string(p.max_length) + ", past limits.max_length " +
                                            std::to_string(max_length) +
                                            " (the longest row the graphs were traced and validated for)");
    const auto& model = m["model"];
    if (model.contains("config")) {
        const auto& cfg = model["config"];
        if (cfg.is_object())
            check_model_config(c, cfg, p, max_length, m["labels"], m["preprocess"]);
        else if (!cfg.is_null())
            c.fail("model.config", "must be an object, got " + short_dump(cfg));
    }
    const auto& io = m["io"];
    if (io.contains("inputs") || io.contains("outputs")) check_io(c, io, p, m["labels"].size());
    check_graph_entries(c, m["graphs"]);
    if (m.contains("defaults")) check_defaults(c, m["defaults"]);
    if (m.contains("golden")) check_golden(c, m["golden"], m["files"]);
}

}  // namespace dfma::detail
