#include "tensor_file.hpp"

#include <cstring>
#include <limits>

#include <nlohmann/json.hpp>

#include "bundle.hpp"
#include "dfma/errors.hpp"

namespace dfma::detail {
namespace {

// Bytes per element of the dtypes tensor_file.py writes (only F32 and I64 are decoded here).
int item_size(const std::string& dtype) {
    if (dtype == "F32" || dtype == "I32") return 4;
    if (dtype == "I64") return 8;
    if (dtype == "F16") return 2;
    if (dtype == "U8" || dtype == "I8" || dtype == "BOOL") return 1;
    return 0;
}

// A little-endian unsigned 64-bit integer from 8 bytes.
std::uint64_t le_u64(const char* p) {
    std::uint64_t v = 0;
    for (int i = 7; i >= 0; --i) v = (v << 8) | static_cast<unsigned char>(p[i]);
    return v;
}

// Copies little-endian elements into native values (byte-swapped on a big-endian host).
template <typename T>
std::vector<T> decode(const std::string& bytes) {
    std::vector<T> out(bytes.size() / sizeof(T));
    if (!out.empty()) std::memcpy(out.data(), bytes.data(), out.size() * sizeof(T));
#if defined(__BYTE_ORDER__) && __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__
    for (auto& v : out) {
        auto* b = reinterpret_cast<unsigned char*>(&v);
        for (std::size_t i = 0; i < sizeof(T) / 2; ++i) std::swap(b[i], b[sizeof(T) - 1 - i]);
    }
#endif
    return out;
}

// A non-negative integer from the header, or -1 when it is not one.
std::int64_t header_int(const nlohmann::json& v) {
    if (v.is_number_unsigned()) {
        const auto u = v.get<std::uint64_t>();
        return u > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max()) ? -1 : static_cast<std::int64_t>(u);
    }
    if (v.is_number_integer()) return v.get<std::int64_t>() < 0 ? -1 : v.get<std::int64_t>();
    return -1;
}

// Checks one header entry against the data section (`size` bytes) and cuts its bytes out.
Tensor tensor_of(const std::string& path, const std::string& name, const nlohmann::json& spec, const char* data,
                 std::uint64_t size) {
    const std::string where = path + ": tensor '" + name + "'";
    if (!spec.is_object() || !spec.contains("dtype") || !spec["dtype"].is_string() || !spec.contains("shape") ||
        !spec["shape"].is_array() || !spec.contains("data_offsets") || !spec["data_offsets"].is_array() ||
        spec["data_offsets"].size() != 2)
        throw BundleError(where + ": needs dtype, shape and data_offsets [start, end]");
    Tensor t;
    t.dtype = spec["dtype"].get<std::string>();
    const int item = item_size(t.dtype);
    if (item == 0) throw BundleError(where + ": unknown dtype " + t.dtype + " (F32, F16, I64, I32, U8, I8, BOOL)");
    std::string shape_text;
    std::uint64_t count = 1;
    bool fits = true;
    for (const auto& d : spec["shape"]) {
        const std::int64_t n = header_int(d);
        shape_text += (shape_text.empty() ? "" : ", ") + d.dump();
        if (n < 0) {
            fits = false;
            continue;
        }
        t.shape.push_back(n);
        if (n != 0 && count > size / static_cast<std::uint64_t>(n)) fits = false;  // more elements than bytes
        count *= static_cast<std::uint64_t>(n);
    }
    const std::int64_t start = header_int(spec["data_offsets"][0]), end = header_int(spec["data_offsets"][1]);
    if (!fits || start < 0 || end < start || static_cast<std::uint64_t>(end) > size ||
        static_cast<std::uint64_t>(end - start) != count * static_cast<std::uint64_t>(item))
        throw BundleError(where + ": shape [" + shape_text + "] / offsets " + spec["data_offsets"].dump() +
                          " do not fit the file (" + std::to_string(size) + " data bytes, " + t.dtype + ")");
    t.bytes.assign(data + start, static_cast<std::size_t>(end - start));
    return t;
}

}  // namespace

std::int64_t Tensor::count() const {
    std::int64_t n = 1;
    for (auto d : shape) n *= d;
    return n;
}

TensorFile TensorFile::read(const std::string& path) { return parse(path, read_file(path)); }

TensorFile TensorFile::parse(const std::string& path, const std::string& raw) {
    TensorFile f;
    f.path_ = path;
    if (raw.size() < 8) throw BundleError(path + ": too short for a tensor file (" + std::to_string(raw.size()) + " bytes)");
    const std::uint64_t n = le_u64(raw.data());
    if (n > kMaxHeader || n > raw.size() - 8)
        throw BundleError(path + ": header length " + std::to_string(n) + " exceeds the file (" + std::to_string(raw.size()) +
                          " bytes) or the 1 MiB limit");
    nlohmann::json header;
    try {
        header = nlohmann::json::parse(raw.begin() + 8, raw.begin() + 8 + static_cast<std::ptrdiff_t>(n));
    } catch (const nlohmann::json::exception& e) {
        throw BundleError(path + ": unreadable header (" + e.what() + ")");
    }
    if (!header.is_object()) throw BundleError(path + ": header is not a JSON object");
    const char* data = raw.data() + 8 + n;
    const std::uint64_t size = raw.size() - 8 - n;
    for (const auto& [name, spec] : header.items()) {
        if (name == "__metadata__") {
            if (spec.is_null()) continue;
            if (!spec.is_object()) throw BundleError(path + ": __metadata__ is not a JSON object");
            for (const auto& [k, v] : spec.items()) f.metadata_[k] = v.is_string() ? v.get<std::string>() : v.dump();
            continue;
        }
        f.tensors_.emplace(name, tensor_of(path, name, spec, data, size));
    }
    return f;
}

const Tensor& TensorFile::at(const std::string& name) const {
    auto it = tensors_.find(name);
    if (it == tensors_.end()) throw BundleError(path_ + ": no tensor '" + name + "'");
    return it->second;
}

std::vector<float> TensorFile::f32(const std::string& name) const {
    const Tensor& t = at(name);
    if (t.dtype != "F32") throw BundleError(path_ + ": tensor '" + name + "' has dtype " + t.dtype + ", expected F32");
    return decode<float>(t.bytes);
}

std::vector<std::int64_t> TensorFile::i64(const std::string& name) const {
    const Tensor& t = at(name);
    if (t.dtype != "I64") throw BundleError(path_ + ": tensor '" + name + "' has dtype " + t.dtype + ", expected I64");
    return decode<std::int64_t>(t.bytes);
}

}  // namespace dfma::detail
