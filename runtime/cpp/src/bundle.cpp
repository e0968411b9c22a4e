#include "bundle.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <memory>

#include "dfma/errors.hpp"
#include "sha256.hpp"

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

Bundle Bundle::open(const std::string& dir) {
    Bundle b;
    b.dir_ = dir;
    std::error_code ec;
    if (!fs::is_directory(dir, ec)) throw BundleError(dir + ": not a bundle folder (no such directory)");
    const std::string mpath = join(dir, "manifest.json");
    if (!fs::is_regular_file(mpath, ec)) throw BundleError(mpath + ": missing");
    try {
        b.manifest_ = nlohmann::json::parse(read_file(mpath));
    } catch (const nlohmann::json::exception& e) {
        throw BundleError(mpath + ": not valid JSON (" + e.what() + ")");
    }
    const auto& m = b.manifest_;
    if (!m.is_object() || m.value("format", "") != "dfma-bundle")
        throw BundleError(mpath + ": not a dfma-bundle manifest (\"format\" must be \"dfma-bundle\")");
    if (!m.contains("format_version") || m["format_version"] != 1)
        throw BundleError(mpath + ": field 'format_version' is " + (m.contains("format_version") ? m["format_version"].dump() : "missing") +
                          "; this reader understands 1");
    auto files = m.find("files");
    if (files == m.end() || !files->is_object() || files->empty())
        throw BundleError(mpath + ": no \"files\" table");
    for (const auto& [rel, meta] : files->items()) {
        if (!safe_relative(rel)) throw BundleError(mpath + ": file name " + rel + " points outside the bundle");
        FileEntry e;
        if (!meta.is_object() || !meta.contains("sha256") || !meta["sha256"].is_string())
            throw BundleError(mpath + ": files[\"" + rel + "\"] has no sha256");
        e.sha256 = meta["sha256"].get<std::string>();
        if (!meta.contains("bytes") || !meta["bytes"].is_number_integer())
            throw BundleError(mpath + ": files[\"" + rel + "\"] needs 'bytes' (an integer)");
        e.bytes = meta["bytes"].get<std::int64_t>();
        b.files_.emplace(rel, std::move(e));
    }
    return b;
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
    if (it->second.bytes >= 0 && size != it->second.bytes)
        throw BundleError(path + ": size " + std::to_string(size) + " bytes does not match the manifest (" +
                          std::to_string(it->second.bytes) + " bytes)");
    const std::string actual = sha256_file(path);
    if (actual != it->second.sha256)
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
