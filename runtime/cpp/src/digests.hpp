// SHA-256 and HMAC-SHA256 for verifying bundle files, through OpenSSL's libcrypto (EVP digests, HMAC,
// CRYPTO_memcmp): no digest code of our own. The Python runtime uses hashlib / hmac.
#pragma once

#include <cstddef>
#include <memory>
#include <string>

struct evp_md_ctx_st;

namespace dfma::detail {

/// Incremental SHA-256 (an EVP_MD_CTX).
class Sha256 {
public:
    Sha256();
    ~Sha256();
    Sha256(const Sha256&) = delete;
    Sha256& operator=(const Sha256&) = delete;
    /// Feeds bytes.
    void update(const void* data, std::size_t size);
    /// Finishes and returns the lower-case hex digest; the object must not be updated afterwards.
    std::string hex_digest();

private:
    evp_md_ctx_st* ctx_;
};

/// Hex SHA-256 of a byte string.
std::string sha256_hex(const std::string& data);
/// Hex SHA-256 of a file's content; throws BundleError when it cannot be read.
std::string sha256_file(const std::string& path);
/// Lower-case hex HMAC-SHA256 of `data` under `key` (RFC 2104).
std::string hmac_sha256_hex(const std::string& key, const std::string& data);
/// Whether two strings are equal, in time independent of where they differ (CRYPTO_memcmp; a length
/// difference returns false at once).
bool equal_constant_time(const std::string& a, const std::string& b);

}  // namespace dfma::detail
