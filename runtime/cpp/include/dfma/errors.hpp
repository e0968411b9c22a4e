// Exceptions thrown by the DFMA C++ runtime. Every message names what was wrong (file, field, value).
#pragma once

#include <stdexcept>
#include <string>

namespace dfma {

/// Base class of every error the runtime throws on purpose.
class Error : public std::runtime_error {
public:
    explicit Error(const std::string& message) : std::runtime_error(message) {}
};

/// A bundle folder with a missing file, a hash mismatch or an invalid manifest.
class BundleError : public Error {
public:
    explicit BundleError(const std::string& message) : Error(message) {}
};

/// A bad inference request (words, spans, crops): names the field and the value.
class InputError : public Error {
public:
    explicit InputError(const std::string& message) : Error(message) {}
};

/// An image that cannot be used: unreadable, not JPEG/PNG, corrupt, truncated, too large, bad buffer.
class ImageError : public InputError {
public:
    explicit ImageError(const std::string& message) : InputError(message) {}
};

/// ONNX Runtime failed to load or run the graph (the message carries ONNX Runtime's own text).
class InferenceError : public Error {
public:
    explicit InferenceError(const std::string& message) : Error(message) {}
};

}  // namespace dfma
