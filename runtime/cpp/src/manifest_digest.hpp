// The manifest's own digest (manifest.sha256) and optional signature (manifest.sig), as
// dfma/contract/manifest_digest.py: both cover the bytes of manifest.json exactly as written.
//   manifest.sha256  "<sha256 hex>  manifest.json\n"  (sha256sum format; required)
//   manifest.sig     "hmac-sha256 <hex>\n"           (HMAC-SHA256 under the user's key; required when a key is given)
// The digests and their comparison are libcrypto's (digests.hpp).
#pragma once

#include <cstddef>
#include <string>

namespace dfma::detail {

constexpr std::size_t kMaxManifestBytes = std::size_t(16) << 20;
constexpr std::size_t kMaxSidecarBytes = 4096;
constexpr std::size_t kMaxKeyBytes = std::size_t(1) << 16;
constexpr const char* kKeyEnv = "DFMA_BUNDLE_KEY_FILE";
constexpr const char* kAllowUnlistedEnv = "DFMA_BUNDLE_ALLOW_UNLISTED";

/// The bytes of a regular file of at most `limit` bytes; a link, FIFO, device or folder is refused
/// before it is opened. `missing` completes the message when it does not exist. Throws BundleError.
std::string read_small_file(const std::string& path, std::size_t limit, const std::string& missing);

/// Checks `dir/manifest.sha256` against the manifest bytes; throws BundleError naming the file.
void check_digest(const std::string& dir, const std::string& manifest_bytes);

/// Checks `dir/manifest.sig` (HMAC-SHA256 of the manifest bytes under `key`); throws BundleError.
void check_signature(const std::string& dir, const std::string& manifest_bytes, const std::string& key);

/// The raw bytes of a key file (1 byte to 64 KiB); `where` names the option or variable in errors.
std::string load_key(const std::string& path, const std::string& where);

/// Whether DFMA_BUNDLE_ALLOW_UNLISTED is 1, true or yes.
bool allow_unlisted_from_env();

}  // namespace dfma::detail
