// A writable copy of the toy bundle in a fresh temporary folder, removed at scope exit.
#pragma once

#include <filesystem>
#include <fstream>
#include <iterator>
#include <random>
#include <string>

#include <nlohmann/json.hpp>

#include "check.hpp"
#include "digests.hpp"

class BundleCopy {
public:
    BundleCopy() {
        namespace fs = std::filesystem;
        std::random_device rd;
        dir_ = (fs::temp_directory_path() / ("dfma_test_" + std::to_string(rd()) + std::to_string(rd()))).string();
        fs::create_directories(dir_);
        fs::copy(check::data_dir() + "/toy_bundle", dir_, fs::copy_options::recursive);
    }
    ~BundleCopy() {
        std::error_code ec;
        std::filesystem::remove_all(dir_, ec);
    }
    BundleCopy(const BundleCopy&) = delete;
    BundleCopy& operator=(const BundleCopy&) = delete;

    const std::string& dir() const { return dir_; }
    std::string path(const std::string& rel) const { return dir_ + "/" + rel; }

    nlohmann::json manifest() const {
        nlohmann::json j;
        std::ifstream(path("manifest.json")) >> j;
        return j;
    }
    /// Writes manifest.json and its digest manifest.sha256 (a deliberate edit, re-digested).
    void write_manifest(const nlohmann::json& j) const {
        write_manifest_only(j);
        redigest();
    }
    /// Writes manifest.json alone (its digest left stale: an edit the runtime must detect).
    void write_manifest_only(const nlohmann::json& j) const { std::ofstream(path("manifest.json")) << j.dump(2); }
    /// Re-writes manifest.sha256 for manifest.json as it is now.
    void redigest() const {
        std::ifstream f(path("manifest.json"), std::ios::binary);
        const std::string bytes((std::istreambuf_iterator<char>(f)), std::istreambuf_iterator<char>());
        std::ofstream(path("manifest.sha256"), std::ios::binary) << dfma::detail::sha256_hex(bytes) << "  manifest.json\n";
    }
    void write(const std::string& rel, const std::string& content) const {
        std::ofstream(path(rel), std::ios::binary) << content;
    }

private:
    std::string dir_;
};
