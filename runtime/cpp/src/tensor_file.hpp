// Named arrays in the safetensors layout (dfma/contract/tensor_file.py): an 8-byte little-endian header
// length n, n bytes of JSON {name: {dtype, shape, data_offsets}, "__metadata__": {...}}, raw LE data.
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace dfma::detail {

/// One tensor: dtype code ("F32", "I64", ...), shape, and its raw little-endian bytes.
struct Tensor {
    std::string dtype;
    std::vector<std::int64_t> shape;
    std::string bytes;

    /// Number of elements (product of the shape; 1 for a scalar).
    std::int64_t count() const;
};

/// A whole tensor file, checked: every tensor's shape, dtype and offsets fit the file.
class TensorFile {
public:
    /// Header lengths over 1 MiB are refused before anything is allocated for them.
    static constexpr std::uint64_t kMaxHeader = 1u << 20;

    /// Reads and checks `path`; throws BundleError naming the file (and the tensor) when malformed.
    static TensorFile read(const std::string& path);
    /// Same over bytes already in memory (`path` only names them in errors).
    static TensorFile parse(const std::string& path, const std::string& raw);

    const std::string& path() const { return path_; }
    const std::map<std::string, std::string>& metadata() const { return metadata_; }
    const std::map<std::string, Tensor>& tensors() const { return tensors_; }

    /// The tensor `name`; BundleError when absent.
    const Tensor& at(const std::string& name) const;
    /// Its values as float32 / int64; BundleError naming the tensor when its dtype differs.
    std::vector<float> f32(const std::string& name) const;
    std::vector<std::int64_t> i64(const std::string& name) const;

private:
    std::string path_;
    std::map<std::string, std::string> metadata_;
    std::map<std::string, Tensor> tensors_;
};

}  // namespace dfma::detail
