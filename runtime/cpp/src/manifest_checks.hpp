// Consistency of a manifest's preprocessing constants and limits with its graph IO and model config:
// the checks of dfma/contract/manifest_checks.py, in the same order, with the same field names.
#pragma once

#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

namespace dfma::detail {

constexpr std::int64_t kMinMaxLength = 4, kMaxLength = 8192, kMaxImageSize = 2048, kMaxResizeSize = 4096,
                       kMaxCrops = 64, kMaxBatch = 4096;

/// `v` as compact JSON, cut to 80 bytes at a UTF-8 character boundary (for error messages).
std::string short_json(const nlohmann::json& v);

/// A JSON integer that fits int64 (not a bool, not 64.0); false otherwise.
bool as_int64(const nlohmann::json& v, std::int64_t& out);

/// Throws BundleError("<where>: field '<field>' ...") on the first inconsistency (module doc of the
/// Python twin). Expects the required top-level keys with their types already checked.
void check_consistency(const nlohmann::json& m, const std::string& where);

}  // namespace dfma::detail
