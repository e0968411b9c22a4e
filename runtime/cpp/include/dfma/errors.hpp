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

/// A bad inference request (words, spans, crops, a limit of dfma/limits.hpp): names the field and the
/// value. field() is the request field, as the Python runtime's InputError.field ("head", "words",
/// "samples[2].tail", ...): given, else the message's leading "field: " when it has one.
class InputError : public Error {
public:
    explicit InputError(const std::string& message) : Error(message), field_(field_of(message)) {}
    InputError(const std::string& message, std::string field) : Error(message), field_(std::move(field)) {}
    const std::string& field() const { return field_; }

private:
    static std::string field_of(const std::string& message) {
        const auto colon = message.find(": ");
        if (colon == std::string::npos || colon == 0) return "";
        for (std::size_t i = 0; i < colon; ++i) {
            const char c = message[i];
            const bool ok = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' ||
                            c == '.' || c == '[' || c == ']';
            if (!ok) return "";
        }
        return message.substr(0, colon);
    }
    std::string field_;
};

/// An image that cannot be used: unreadable, not a regular file, not JPEG/PNG, corrupt, truncated, over
/// a limit, bad buffer. field() is "image" unless given (crop k's: "crops[k]", as in Python).
class ImageError : public InputError {
public:
    explicit ImageError(const std::string& message) : InputError(message, "image") {}
    ImageError(const std::string& message, std::string field) : InputError(message, std::move(field)) {}
};

/// ONNX Runtime failed to load or run the graph (the message carries ONNX Runtime's own text).
class InferenceError : public Error {
public:
    explicit InferenceError(const std::string& message) : Error(message) {}
};

}  // namespace dfma
