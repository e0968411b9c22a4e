// A tiny test harness: TEST(name) { CHECK(...); } and one main() per test program (check_main.cpp).
#pragma once

#include <functional>
#include <iostream>
#include <sstream>
#include <string>
#include <vector>

namespace check {

struct Failure {
    std::string where, what;
};

/// Registered tests and the failures of the one running.
struct Registry {
    std::vector<std::pair<std::string, std::function<void()>>> tests;
    std::vector<Failure> failures;
    static Registry& get() {
        static Registry r;
        return r;
    }
};

/// Registers a test at static-initialisation time.
struct Add {
    Add(const char* name, std::function<void()> fn) { Registry::get().tests.emplace_back(name, std::move(fn)); }
};

inline void fail(const char* file, int line, const std::string& what) {
    Registry::get().failures.push_back({std::string(file) + ":" + std::to_string(line), what});
}

/// Folder with the committed fixtures (tests/data), set by CMake.
inline std::string data_dir() { return DFMA_TEST_DATA; }

}  // namespace check

#define CHECK_CONCAT2(a, b) a##b
#define CHECK_CONCAT(a, b) CHECK_CONCAT2(a, b)
#define TEST(name)                                                     \
    static void name();                                                \
    static check::Add CHECK_CONCAT(check_add_, name)(#name, &name);    \
    static void name()

#define CHECK(cond)                                                    \
    do {                                                               \
        if (!(cond)) check::fail(__FILE__, __LINE__, "CHECK(" #cond ")"); \
    } while (0)

#define CHECK_EQ(a, b)                                                                   \
    do {                                                                                 \
        const auto& check_a_ = (a);                                                      \
        const auto& check_b_ = (b);                                                      \
        if (!(check_a_ == check_b_)) {                                                   \
            std::ostringstream check_os_;                                                \
            check_os_ << "CHECK_EQ(" #a ", " #b "): " << check_a_ << " != " << check_b_; \
            check::fail(__FILE__, __LINE__, check_os_.str());                           \
        }                                                                                \
    } while (0)

// Expects `expr` to throw `type` whose what() contains `needle`.
#define CHECK_THROWS(expr, type, needle)                                                          \
    do {                                                                                          \
        try {                                                                                     \
            (void)(expr);                                                                         \
            check::fail(__FILE__, __LINE__, "no exception from " #expr);                          \
        } catch (const type& check_e_) {                                                          \
            if (std::string(check_e_.what()).find(needle) == std::string::npos)                   \
                check::fail(__FILE__, __LINE__,                                                   \
                            std::string("message of " #expr " lacks '") + (needle) + "': " + check_e_.what()); \
        } catch (const std::exception& check_e_) {                                                \
            check::fail(__FILE__, __LINE__, std::string(#expr " threw another type: ") + check_e_.what()); \
        }                                                                                         \
    } while (0)
