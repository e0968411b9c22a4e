// SHA-256 (FIPS 180-4), small self-contained implementation for verifying bundle files.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>

namespace dfma::detail {

/// Incremental SHA-256.
class Sha256 {
public:
    Sha256();
    /// Feeds bytes.
    void update(const void* data, std::size_t size);
    /// Finishes and returns the lower-case hex digest; the object must not be updated afterwards.
    std::string hex_digest();

private:
    void block(const std::uint8_t* p);
    std::uint32_t h_[8];
    std::uint8_t buf_[64];
    std::size_t buf_len_ = 0;
    std::uint64_t total_ = 0;
};

/// Hex SHA-256 of a byte string.
std::string sha256_hex(const std::string& data);
/// Hex SHA-256 of a file's content; throws BundleError when it cannot be read.
std::string sha256_file(const std::string& path);

}  // namespace dfma::detail
