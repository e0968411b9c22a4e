#include "digests.hpp"

#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstring>
#include <memory>
#include <vector>

#include <openssl/crypto.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "dfma/errors.hpp"

namespace dfma::detail {
namespace {

std::string to_hex(const unsigned char* bytes, std::size_t size) {
    static const char kDigits[] = "0123456789abcdef";
    std::string out(2 * size, '0');
    for (std::size_t i = 0; i < size; ++i) {
        out[2 * i] = kDigits[bytes[i] >> 4];
        out[2 * i + 1] = kDigits[bytes[i] & 0x0F];
    }
    return out;
}

// libcrypto failing (out of memory, a FIPS provider refusing SHA-256): an Error, never a verdict on a bundle.
[[noreturn]] void crypto_failed(const char* what) {
    const unsigned long code = ERR_get_error();
    char text[256] = "no OpenSSL error queued";
    if (code) ERR_error_string_n(code, text, sizeof text);
    throw Error(std::string("libcrypto: ") + what + " failed (" + text + ")");
}

}  // namespace

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
    if (!ctx_) crypto_failed("EVP_MD_CTX_new");
    if (EVP_DigestInit_ex(ctx_, EVP_sha256(), nullptr) != 1) {
        EVP_MD_CTX_free(ctx_);
        crypto_failed("EVP_DigestInit_ex(sha256)");
    }
}

Sha256::~Sha256() { EVP_MD_CTX_free(ctx_); }

void Sha256::update(const void* data, std::size_t size) {
    if (size && EVP_DigestUpdate(ctx_, data, size) != 1) crypto_failed("EVP_DigestUpdate");
}

std::string Sha256::hex_digest() {
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    if (EVP_DigestFinal_ex(ctx_, md, &n) != 1) crypto_failed("EVP_DigestFinal_ex");
    return to_hex(md, n);
}

std::string sha256_hex(const std::string& data) {
    Sha256 s;
    s.update(data.data(), data.size());
    return s.hex_digest();
}

std::string sha256_file(const std::string& path) {
    std::unique_ptr<std::FILE, int (*)(std::FILE*)> f(std::fopen(path.c_str(), "rb"), &std::fclose);
    if (!f) throw BundleError("cannot read " + path + ": " + std::strerror(errno));
    Sha256 s;
    std::vector<char> buf(1 << 20);
    std::size_t n;
    while ((n = std::fread(buf.data(), 1, buf.size(), f.get())) > 0) s.update(buf.data(), n);
    if (std::ferror(f.get())) throw BundleError("error while reading " + path);
    return s.hex_digest();
}

std::string hmac_sha256_hex(const std::string& key, const std::string& data) {
    if (key.size() > static_cast<std::size_t>(INT_MAX)) throw Error("hmac_sha256_hex: key too long");
    unsigned char md[EVP_MAX_MD_SIZE];
    unsigned int n = 0;
    // key.data() is never null (an empty key is the empty key, not "reuse the last one").
    if (!HMAC(EVP_sha256(), key.data(), static_cast<int>(key.size()),
              reinterpret_cast<const unsigned char*>(data.data()), data.size(), md, &n))
        crypto_failed("HMAC(sha256)");
    return to_hex(md, n);
}

bool equal_constant_time(const std::string& a, const std::string& b) {
    return a.size() == b.size() && CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace dfma::detail
