#include "manifest_digest.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "dfma/errors.hpp"
#include "digests.hpp"

namespace dfma::detail {
namespace {

bool is_hex64(const std::string& s, std::size_t at) {
    if (s.size() < at + 64) return false;
    for (std::size_t i = at; i < at + 64; ++i) {
        const char c = s[i];
        if (!((c >= '0' && c <= '9') || (c >= 'a' && c <= 'f'))) return false;
    }
    return true;
}

std::string strip_newline(const std::string& s) {
    return !s.empty() && s.back() == '\n' ? s.substr(0, s.size() - 1) : s;
}

std::string quoted_head(const std::string& s) {
    std::string out;
    for (char c : s.substr(0, 100)) out += std::isprint(static_cast<unsigned char>(c)) ? std::string(1, c) : "?";
    return "'" + out + "'";
}

}  // namespace

std::string read_small_file(const std::string& path, std::size_t limit, const std::string& missing) {
    struct stat st {};
    if (::lstat(path.c_str(), &st) != 0) {
        if (errno == ENOENT) throw BundleError(path + ": missing (" + missing + ")");
        throw BundleError(path + ": cannot be read (" + std::strerror(errno) + ")");
    }
    if (S_ISLNK(st.st_mode)) throw BundleError(path + ": a link; bundle files must be regular files inside the folder");
    if (!S_ISREG(st.st_mode)) throw BundleError(path + ": not a regular file");
    if (static_cast<std::size_t>(st.st_size) > limit)
        throw BundleError(path + ": " + std::to_string(st.st_size) + " bytes, more than the " + std::to_string(limit) +
                          " allowed");
    const int fd = ::open(path.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
    if (fd < 0) throw BundleError(path + ": cannot be read (" + std::strerror(errno) + ")");
    std::string data;
    struct stat fst {};
    if (::fstat(fd, &fst) != 0 || !S_ISREG(fst.st_mode)) {
        ::close(fd);
        throw BundleError(path + ": not a regular file");
    }
    char buf[1 << 16];
    while (data.size() <= limit) {
        const ssize_t n = ::read(fd, buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) {
            const std::string why = std::strerror(errno);
            ::close(fd);
            throw BundleError(path + ": cannot be read (" + why + ")");
        }
        if (n == 0) break;
        data.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    if (data.size() > limit) throw BundleError(path + ": more than the " + std::to_string(limit) + " bytes allowed");
    return data;
}

void check_digest(const std::string& dir, const std::string& manifest_bytes) {
    const std::string path = dir + "/manifest.sha256";
    const std::string raw = read_small_file(path, kMaxSidecarBytes,
                                            "every bundle has the digest of its manifest.json; after an intended edit run "
                                            "`python export/sign_bundle.py digest BUNDLE`");
    const std::string line = strip_newline(raw);
    if (line.size() != 64 + 2 + 13 || !is_hex64(line, 0) || line[64] != ' ' || (line[65] != ' ' && line[65] != '*') ||
        line.compare(66, std::string::npos, "manifest.json") != 0)
        throw BundleError(path + ": expected one line '<sha256 hex>  manifest.json', got " + quoted_head(raw));
    const std::string actual = sha256_hex(manifest_bytes);
    if (!equal_constant_time(line.substr(0, 64), actual))
        throw BundleError(path + ": manifest.json has sha256 " + actual + ", the digest says " + line.substr(0, 64) +
                          ": the manifest was edited after it was written");
}

void check_signature(const std::string& dir, const std::string& manifest_bytes, const std::string& key) {
    const std::string path = dir + "/manifest.sig";
    const std::string raw = read_small_file(path, kMaxSidecarBytes,
                                            "a signing key is given, so the bundle must be signed "
                                            "(python export/sign_bundle.py sign BUNDLE --key-file KEY)");
    const std::string line = strip_newline(raw);
    const std::string scheme = "hmac-sha256 ";
    if (line.size() != scheme.size() + 64 || line.compare(0, scheme.size(), scheme) != 0 || !is_hex64(line, scheme.size()))
        throw BundleError(path + ": expected one line 'hmac-sha256 <hex>', got " + quoted_head(raw));
    if (!equal_constant_time(line.substr(scheme.size()), hmac_sha256_hex(key, manifest_bytes)))
        throw BundleError(path + ": the signature does not match manifest.json under this key (edited, or signed "
                                 "with another key)");
}

std::string load_key(const std::string& path, const std::string& where) {
    std::string key;
    try {
        key = read_small_file(path, kMaxKeyBytes, "the signing key file");
    } catch (const BundleError& e) {
        throw BundleError(where + ": " + e.what());
    }
    if (key.empty()) throw BundleError(where + ": " + path + ": the key file is empty");
    return key;
}

bool allow_unlisted_from_env() {
    const char* v = std::getenv(kAllowUnlistedEnv);
    if (!v) return false;
    std::string s(v);
    s.erase(std::remove_if(s.begin(), s.end(), [](unsigned char c) { return std::isspace(c); }), s.end());
    std::transform(s.begin(), s.end(), s.begin(), [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return s == "1" || s == "true" || s == "yes";
}

}  // namespace dfma::detail
