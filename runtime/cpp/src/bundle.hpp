// A bundle folder (docs/contract.md section 4): manifest.json, the file table with sha256, and typed
// access to the sections the C++ runtime needs.
#pragma once

#include <cstdint>
#include <map>
#include <set>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "dfma/image.hpp"
#include "dfma/text.hpp"

namespace dfma::detail {

/// One entry of the manifest's `files` table.
struct FileEntry {
    std::string sha256;
    std::int64_t bytes = 0;  ///< >= 0 (open() refuses anything else)
};

/// Containers nested deeper than this (the top object is level 1) are refused while parsing.
constexpr int kMaxDepth = 64;

/// An opened bundle: parsed manifest and file table; nothing outside `dir` is ever read.
class Bundle {
public:
    /// Reads manifest.json (a regular file of at most 16 MiB, nested at most kMaxDepth deep), checks it
    /// against manifest.sha256 and, with a key (`key_file`, else $DFMA_BUNDLE_KEY_FILE), manifest.sig,
    /// then its structure (format, version, required keys, files, graphs) and its consistency
    /// (manifest_checks.hpp). Throws BundleError naming the file and field.
    static Bundle open(const std::string& dir, const std::string& key_file = "");

    /// Absolute-ish path of a file listed in `files`, after checking its size and sha256.
    /// Throws BundleError when unlisted, missing, outside the folder, of the wrong size or hash.
    std::string verified_path(const std::string& rel) const;
    /// Checks the size and sha256 of every listed file.
    void verify_all() const;
    /// Entries under the folder (links not followed) that are neither folders nor listed files, the
    /// manifest's own files (manifest.json, manifest.sha256, manifest.sig) excepted; sorted.
    std::vector<std::string> unlisted_files() const;
    /// Throws BundleError when unlisted_files() is not empty.
    void check_no_unlisted() const;
    /// Whether `files` lists `rel`.
    bool has_file(const std::string& rel) const { return files_.count(rel) != 0; }

    const std::string& dir() const { return dir_; }
    const nlohmann::json& manifest() const { return manifest_; }
    /// Manifest value at a '/'-separated path; throws BundleError naming the key when absent.
    const nlohmann::json& at(const std::string& key_path) const;
    /// Same, or nullptr when absent.
    const nlohmann::json* find(const std::string& key_path) const;

    /// Image settings from `preprocess`.
    ImageConfig image_config() const;
    /// `labels`, index = class id.
    std::vector<std::string> labels() const;

private:
    std::string dir_;
    nlohmann::json manifest_;
    std::map<std::string, FileEntry> files_;
    mutable std::set<std::string> verified_;  // files already hashed (a Bundle lives during one load)
};

/// Reads a whole file (binary); throws BundleError with the path and the reason.
std::string read_file(const std::string& path);

}  // namespace dfma::detail
