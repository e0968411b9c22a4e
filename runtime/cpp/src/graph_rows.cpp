#include "graph_rows.hpp"

#include <algorithm>
#include <cctype>

#include "bundle.hpp"

namespace dfma::detail {
namespace {

// The entry's string field, or "" when absent or not a string.
std::string str_of(const nlohmann::json& entry, const char* key) {
    auto it = entry.find(key);
    return it != entry.end() && it->is_string() ? it->get<std::string>() : std::string();
}

bool ends_with(const std::string& s, const std::string& tail) {
    return s.size() >= tail.size() && s.compare(s.size() - tail.size(), tail.size(), tail) == 0;
}

}  // namespace

bool is_engine(const nlohmann::json& entry) {
    std::string kind = str_of(entry, "kind");
    std::transform(kind.begin(), kind.end(), kind.begin(), [](unsigned char c) { return std::tolower(c); });
    return kind == "tensorrt" || ends_with(str_of(entry, "file"), ".plan");
}

bool runs_on_ort_cpu(const nlohmann::json& entry) {
    if (!entry.is_object() || is_engine(entry)) return false;
    auto devices = entry.find("devices");
    if (devices == entry.end() || devices->is_null()) return true;
    if (!devices->is_array()) return false;
    return std::any_of(devices->begin(), devices->end(), [](const nlohmann::json& d) { return d == "cpu"; });
}

int host_rank(const nlohmann::json& entry, const std::string& cpu_class) {
    auto classes = entry.find("cpu_classes");
    if (classes == entry.end() || classes->is_null()) return 1;
    if (!classes->is_array()) return 2;
    return std::any_of(classes->begin(), classes->end(), [&](const nlohmann::json& c) { return c == cpu_class; }) ? 0 : 2;
}

bool is_fused(const nlohmann::json& entry) {
    if (entry.contains("ops") && entry["ops"].is_string()) return entry["ops"] == "com.microsoft";
    return str_of(entry, "kind") == "onnxruntime";
}

std::optional<StageFiles> stage_files(const Bundle& b, const std::string& key) {
    const auto* graphs = b.find("graphs");
    if (!graphs || !graphs->is_object() || !graphs->contains(key)) return std::nullopt;
    const auto stages = (*graphs)[key].find("stages");
    if (stages == (*graphs)[key].end() || !stages->is_object()) return std::nullopt;
    std::string files[2];
    const char* names[2] = {"vision", "text"};
    for (int i = 0; i < 2; ++i) {
        const auto s = stages->find(names[i]);
        if (s == stages->end() || !s->is_object()) return std::nullopt;
        files[i] = str_of(*s, "file");
        if (files[i].empty() || !b.has_file(files[i])) return std::nullopt;
    }
    return StageFiles{files[0], files[1]};
}

std::vector<std::string> ort_cpu_graphs(const Bundle& b) {
    std::vector<std::string> out;
    const auto* graphs = b.find("graphs");
    if (!graphs || !graphs->is_object()) return out;
    for (const auto& [key, entry] : graphs->items()) {
        if (!entry.is_object() || !runs_on_ort_cpu(entry)) continue;
        const std::string file = str_of(entry, "file");
        if (!file.empty() && b.has_file(file)) out.push_back(key);
    }
    return out;
}

std::vector<std::string> ort_cpu_ordered(const Bundle& b, const std::string& precision, const std::string& cpu_class) {
    const auto& graphs = b.at("graphs");
    std::vector<std::string> keys;
    for (const auto& key : ort_cpu_graphs(b))
        if (str_of(graphs[key], "precision") == precision) keys.push_back(key);
    std::stable_sort(keys.begin(), keys.end(), [&](const std::string& x, const std::string& y) {
        const auto& gx = graphs[x];
        const auto& gy = graphs[y];
        const int rx = host_rank(gx, cpu_class), ry = host_rank(gy, cpu_class);
        if (rx != ry) return rx < ry;
        return is_fused(gx) && !is_fused(gy);
    });
    return keys;
}

}  // namespace dfma::detail
