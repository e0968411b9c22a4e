#include "bundle.hpp"

#include <sys/stat.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>

#include "dfma/errors.hpp"
#include "manifest_checks.hpp"
#include "manifest_digest.hpp"
#include "digests.hpp"

namespace dfma::detail {
namespace fs = std::filesystem;

namespace {

std::string join(const std::string& dir, const std::string& rel) { return (fs::path(dir) / rel).string(); }

// A manifest file name must stay inside the folder: relative, no "..", no empty parts.
bool safe_relative(const std::string& rel) {
    if (rel.empty() || rel.front() == '/' || rel.find('\\') != std::string::npos ||
        rel.find('\0') != std::string::npos)
        return false;
    for (const auto& part : fs::path(rel)) {
        if (part == ".." || part == "." || part.empty()) return false;
    }
    return true;
}

template <typename T>
T get_number(const nlohmann::json& v, const std::string& where) {
    if (!v.is_number()) throw BundleError("manifest.json: " + where + " must be a number, got " + v.dump());
    return v.get<T>();
}

}  // namespace

std::string read_file(const std::string& path) {
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
    if (!f) throw BundleError(path + ": cannot open (" + std::strerror(errno) + ")");
    std::string data;
    char buf[1 << 16];
    std::size_t n;
    while ((n = std::fread(buf, 1, sizeof buf, f.get())) > 0) data.append(buf, n);
    if (std::ferror(f.get())) throw BundleError(path + ": read error");
    return data;
}

namespace {

// The required top-level keys and their JSON types, in the order of dfma.contract.bundle.REQUIRED_KEYS.
enum class Kind { string, integer, object, array };
const std::pair<const char*, Kind> kRequired[] = {
    {"format", Kind::string},  {"format_version", Kind::integer}, {"created", Kind::string},
    {"model", Kind::object},   {"labels", Kind::array},           {"preprocess", Kind::object},
    {"io", Kind::object},      {"limits", Kind::object},          {"opset", Kind::integer},
    {"graphs", Kind::object},  {"files", Kind::object},           {"tools", Kind::object},
    {"parity", Kind::object}};
const char* const kKindName[] = {"str", "int", "dict", "list"};
const char* const kOwnFiles[] = {"manifest.json", "manifest.sha256", "manifest.sig"};
const char* const kStages[] = {"vision", "text"};

bool has_kind(const nlohmann::json& v, Kind k) {
    switch (k) {
        case Kind::string: return v.is_string();
        case Kind::integer: return v.is_number_integer();
        case Kind::object: return v.is_object();
        case Kind::array: return v.is_array();
    }
    return false;
}

std::string type_name(const nlohmann::json& v) {
    if (v.is_null()) return "NoneType";
    if (v.is_boolean()) return "bool";
    if (v.is_number_integer()) return "int";
    if (v.is_number()) return "float";
    if (v.is_string()) return "str";
    if (v.is_array()) return "list";
    return "dict";
}

bool is_hex64(const std::string& s) {
    if (s.size() != 64) return false;
    for (char c : s)
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    return true;
}

[[noreturn]] void fail(const std::string& mpath, const std::string& field, const std::string& message) {
    throw BundleError(mpath + ": field '" + field + "' " + message);
}

// A graph's stage graphs (`graphs.<key>.stages`): {"vision": {"file"}, "text": {"file"}, ...}, both
// files listed in `files` (dfma.contract.graphs.STAGES; other keys, e.g. "parity", are not read here).
void check_stage_entry(const std::string& mpath, const std::string& field, const nlohmann::json& stages,
                       const nlohmann::json& files) {
    if (!stages.is_object()) fail(mpath, field, "must be of type dict, got " + type_name(stages));
    for (const char* stage : kStages) {
        const std::string at = field + "." + stage;
        if (!stages.contains(stage)) fail(mpath, at, "missing (the stage graphs are a vision and a text stage)");
        const auto& entry = stages[stage];
        if (!entry.is_object() || !entry.contains("file")) fail(mpath, at + ".file", "missing");
        if (!entry["file"].is_string()) fail(mpath, at + ".file", "must be a string, got " + short_json(entry["file"]));
        if (!files.contains(entry["file"].get<std::string>()))
            fail(mpath, at + ".file", "is " + short_json(entry["file"]) + ", not listed in files");
    }
}

nlohmann::json parse_bounded(const std::string& data, const std::string& mpath) {
    // The callback sees every container as it opens: refuse the one past kMaxDepth before it is built.
    auto depth_limit = [&](int depth, nlohmann::json::parse_event_t event, nlohmann::json&) {
        if ((event == nlohmann::json::parse_event_t::object_start || event == nlohmann::json::parse_event_t::array_start) &&
            depth >= kMaxDepth)
            throw BundleError(mpath + ": nested more than " + std::to_string(kMaxDepth) + " levels deep");
        return true;
    };
    try {
        return nlohmann::json::parse(data, depth_limit);
    } catch (const nlohmann::json::exception& e) {
        throw BundleError(mpath + ": not valid JSON (" + e.what() + ")");
    }
}

}  // namespace

Bundle Bundle::open(const std::string& dir, const std::string& key_file) {
    Bundle b;
    b.dir_ = dir;
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) throw BundleError(dir + ": not a bundle folder (no such directory)");
    const std::string mpath = join(dir, "manifest.json");
    const std::string data = read_small_file(mpath, kMaxManifestBytes, "every bundle has a manifest");
    check_digest(dir, data);
    std::string key_path = key_file, key_where = "key_file";
    if (key_path.empty()) {
        const char* env = std::getenv(kKeyEnv);
        if (env && *env) key_path = env, key_where = kKeyEnv;
    }
    if (!key_path.empty()) check_signature(dir, data, load_key(key_path, key_where));
    b.manifest_ = parse_bounded(data, mpath);
    const auto& m = b.manifest_;
    if (!m.is_object() || m.value("format", "") != "dfma-bundle")
        throw BundleError(mpath + ": not a dfma-bundle manifest (\"format\" must be \"dfma-bundle\")");
    if (!m.contains("format_version") || m["format_version"] != 1 || m["format_version"].is_boolean())
        throw BundleError(mpath + ": field 'format_version' is " + (m.contains("format_version") ? short_json(m["format_version"]) : "missing") +
                          "; this reader understands 1");
    for (const auto& [key, kind] : kRequired) {
        if (!m.contains(key)) fail(mpath, key, "missing");
        if (!has_kind(m[key], kind))
            fail(mpath, key, std::string("must be of type ") + kKindName[static_cast<int>(kind)] + ", got " + type_name(m[key]));
    }
    const auto& files = m["files"];
    for (const auto& [rel, meta] : files.items()) {
        if (!safe_relative(rel)) throw BundleError(mpath + ": file name " + rel + " points outside the bundle");
        for (const char* own : kOwnFiles)
            if (rel == own) fail(mpath, "files." + rel, "lists " + rel + ", which is not a file the manifest can list");
        FileEntry e;
        if (!meta.is_object() || !meta.contains("sha256") || !meta["sha256"].is_string() || !meta.contains("bytes") ||
            !meta["bytes"].is_number_integer())
            fail(mpath, "files." + rel, "needs 'sha256' (str) and 'bytes' (int)");
        e.sha256 = meta["sha256"].get<std::string>();
        if (!is_hex64(e.sha256)) fail(mpath, "files." + rel + ".sha256", "is " + short_json(meta["sha256"]) + ", expected 64 lower-case hex digits");
        if (!as_int64(meta["bytes"], e.bytes) || e.bytes < 0)
            fail(mpath, "files." + rel + ".bytes", "is " + short_json(meta["bytes"]) + ", must be >= 0");
        b.files_.emplace(rel, std::move(e));
    }
    const auto& graphs = m["graphs"];
    if (graphs.empty()) fail(mpath, "graphs", "is empty (every bundle holds at least one graph)");
    for (const auto& [key, g] : graphs.items()) {
        if (!g.is_object() || !g.contains("file") || !g.contains("precision") || !g.contains("kind"))
            fail(mpath, "graphs." + key, "needs ['file', 'precision', 'kind']");
        for (const char* k : {"file", "precision", "kind"})
            if (!g[k].is_string()) fail(mpath, "graphs." + key + "." + k, "must be a string, got " + short_json(g[k]));
        if (!files.contains(g["file"].get<std::string>()))
            fail(mpath, "graphs." + key + ".file", "is " + short_json(g["file"]) + ", not listed in files");
        if (g.contains("stages") && !g["stages"].is_null()) check_stage_entry(mpath, "graphs." + key + ".stages", g["stages"], files);
    }
    if (m.contains("stages") && !m["stages"].is_null() && !m["stages"].is_object())
        fail(mpath, "stages", "must be of type dict, got " + type_name(m["stages"]));
    check_consistency(m, mpath);
    return b;
}

std::vector<std::string> Bundle::unlisted_files() const {
    std::vector<std::string> out;
    std::error_code ec;
    const fs::path root(dir_);
    for (auto it = fs::recursive_directory_iterator(root, fs::directory_options::none, ec);
         !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
        const auto status = it->symlink_status(ec);
        if (ec) break;
        if (fs::is_directory(status)) continue;  // a folder (a link to one is not followed, and counts below)
        const std::string rel = it->path().lexically_relative(root).generic_string();
        bool own = false;
        for (const char* f : kOwnFiles) own = own || rel == f;
        if (!own && !files_.count(rel)) out.push_back(rel);
    }
    std::sort(out.begin(), out.end());
    return out;
}

void Bundle::check_no_unlisted() const {
    const auto extra = unlisted_files();
    if (extra.empty()) return;
    std::string list;
    for (std::size_t i = 0; i < extra.size() && i < 5; ++i) list += (i ? ", " : "") + extra[i];
    throw BundleError(dir_ + ": file(s) not listed in manifest.json: " + list +
                      " (a bundle holds only what its manifest lists; DFMA_BUNDLE_ALLOW_UNLISTED=1 or "
                      "Options::allow_unlisted_files accepts them)");
}

std::string Bundle::verified_path(const std::string& rel) const {
    auto it = files_.find(rel);
    if (it == files_.end())
        throw BundleError(join(dir_, rel) + ": not listed in manifest.json \"files\" (no hash to verify it)");
    const std::string path = join(dir_, rel);
    if (verified_.count(rel)) return path;
    std::error_code ec;
    if (fs::is_symlink(fs::symlink_status(path, ec)))
        throw BundleError(path + ": a link (listed in manifest.json); bundle files must be plain files");
    if (!fs::exists(path, ec)) throw BundleError(path + ": missing (listed in manifest.json)");
    fs::path real = fs::weakly_canonical(path, ec), root = fs::weakly_canonical(dir_, ec);
    auto rel_real = real.lexically_relative(root);
    if (rel_real.empty() || *rel_real.begin() == "..")
        throw BundleError(path + ": resolves outside the bundle folder (" + real.string() + ")");
    if (!fs::is_regular_file(path, ec)) throw BundleError(path + ": not a regular file");
    const auto size = static_cast<std::int64_t>(fs::file_size(path, ec));
    if (size != it->second.bytes)
        throw BundleError(path + ": size " + std::to_string(size) + " bytes does not match the manifest (" +
                          std::to_string(it->second.bytes) + " bytes)");
    const std::string actual = sha256_file(path);
    if (!equal_constant_time(actual, it->second.sha256))
        throw BundleError(path + ": sha256 " + actual + " does not match the manifest (" + it->second.sha256 + ")");
    verified_.insert(rel);
    return path;
}

void Bundle::verify_all() const {
    for (const auto& kv : files_) verified_path(kv.first);
}

const nlohmann::json* Bundle::find(const std::string& key_path) const {
    const nlohmann::json* cur = &manifest_;
    std::size_t start = 0;
    while (start <= key_path.size()) {
        std::size_t slash = key_path.find('/', start);
        std::string key = key_path.substr(start, slash == std::string::npos ? std::string::npos : slash - start);
        if (!cur->is_object()) return nullptr;
        auto it = cur->find(key);
        if (it == cur->end()) return nullptr;
        cur = &*it;
        if (slash == std::string::npos) break;
        start = slash + 1;
    }
    return cur;
}

const nlohmann::json& Bundle::at(const std::string& key_path) const {
    const auto* v = find(key_path);
    if (!v || v->is_null()) throw BundleError(join(dir_, "manifest.json") + ": no \"" + key_path + "\"");
    return *v;
}

ImageConfig Bundle::image_config() const {
    ImageConfig c;
    c.image_size = get_number<int>(at("preprocess/image_size"), "preprocess/image_size");
    c.resize_size = get_number<int>(at("preprocess/resize_size"), "preprocess/resize_size");
    for (const char* key : {"mean", "std"}) {
        const auto& v = at(std::string("preprocess/") + key);
        if (!v.is_array() || v.size() != 3)
            throw BundleError("manifest.json: preprocess/" + std::string(key) + " must be 3 numbers, got " + v.dump());
        auto& dst = std::string(key) == "mean" ? c.mean : c.std;
        for (int i = 0; i < 3; ++i) dst[i] = get_number<float>(v[i], std::string("preprocess/") + key);
    }
    if (const auto* v = find("preprocess/max_image_pixels"); v && !v->is_null())
        c.max_image_pixels = get_number<std::int64_t>(*v, "preprocess/max_image_pixels");
    return c;
}

std::vector<std::string> Bundle::labels() const {
    const auto& v = at("labels");
    if (!v.is_array() || v.empty()) throw BundleError("manifest.json: labels must be a non-empty list");
    std::vector<std::string> out;
    for (const auto& x : v) {
        if (!x.is_string()) throw BundleError("manifest.json: labels must be strings, got " + x.dump());
        out.push_back(x.get<std::string>());
    }
    return out;
}

}  // namespace dfma::detail
