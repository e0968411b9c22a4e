// main() of every test program: runs the registered tests, prints failures, exit 1 if any.
#include <exception>

#include "check.hpp"

int main() {
    auto& reg = check::Registry::get();
    int failed_tests = 0;
    for (const auto& [name, fn] : reg.tests) {
        reg.failures.clear();
        try {
            fn();
        } catch (const std::exception& e) {
            check::fail(name.c_str(), 0, std::string("uncaught exception: ") + e.what());
        }
        if (reg.failures.empty()) {
            std::cout << "ok   " << name << "\n";
        } else {
            ++failed_tests;
            std::cout << "FAIL " << name << "\n";
            for (const auto& f : reg.failures) std::cout << "     " << f.where << ": " << f.what << "\n";
        }
    }
    std::cout << reg.tests.size() - failed_tests << "/" << reg.tests.size() << " tests passed\n";
    return failed_tests == 0 ? 0 : 1;
}
