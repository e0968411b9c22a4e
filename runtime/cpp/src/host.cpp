// CPU class detection (mirrors dfma/host.py, which reads the same bits from /proc/cpuinfo).
#include "dfma/host.hpp"

#include <cstdint>
#include <cstdlib>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#elif defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif

namespace dfma {
namespace {

constexpr const char* kOverride = "DFMA_CPU_CLASS";

// Python's str.strip() for the override value.
std::string strip(const std::string& s) {
    const char* ws = " \t\n\r\f\v";
    const auto a = s.find_first_not_of(ws);
    if (a == std::string::npos) return "";
    return s.substr(a, s.find_last_not_of(ws) - a + 1);
}

#if defined(__x86_64__) || defined(__i386__)
// XCR0: which register states the OS saves (the kernel hides AVX / AVX-512 / AMX flags without them).
std::uint64_t xcr0() {
    std::uint32_t lo = 0, hi = 0;
    __asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
    return (static_cast<std::uint64_t>(hi) << 32) | lo;
}

// CPUID leaves 1 and 7 (sub-leaves 0 and 1) with the OS-state checks of the Linux kernel.
void x86_features(CpuFeatures& f) {
    unsigned a = 0, b = 0, c = 0, d = 0;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return;
    const bool osxsave = (c >> 27) & 1u;
    const std::uint64_t xcr = osxsave ? xcr0() : 0;
    const bool avx_state = (xcr & 0x6) == 0x6;                   // SSE + AVX (YMM)
    const bool avx512_state = avx_state && (xcr & 0xE0) == 0xE0;  // opmask, ZMM_Hi256, Hi16_ZMM
    const bool amx_state = (xcr & 0x60000) == 0x60000;           // XTILECFG + XTILEDATA
    unsigned max_leaf = __get_cpuid_max(0, nullptr);
    if (max_leaf < 7) return;
    unsigned a7 = 0, b7 = 0, c7 = 0, d7 = 0;
    __get_cpuid_count(7, 0, &a7, &b7, &c7, &d7);
    f.avx2 = avx_state && ((b7 >> 5) & 1u);
    f.avx512f = avx512_state && ((b7 >> 16) & 1u);
    f.avx512_vnni = avx512_state && ((c7 >> 11) & 1u);
    f.amx_int8 = amx_state && ((d7 >> 25) & 1u) && ((d7 >> 24) & 1u);  // AMX-INT8 needs AMX-TILE
    if (a7 >= 1) {
        unsigned a71 = 0, b71 = 0, c71 = 0, d71 = 0;
        __get_cpuid_count(7, 1, &a71, &b71, &c71, &d71);
        f.avx_vnni = avx_state && ((a71 >> 4) & 1u);
    }
}
#endif

}  // namespace

const std::vector<std::string>& cpu_class_names() {
    static const std::vector<std::string> names = {"x86-amx", "x86-avx512-vnni", "x86-avx2-vnni", "x86-avx512",
                                                   "x86-avx2", "x86", "arm-dotprod", "arm", "other"};
    return names;
}

std::string cpu_class(const CpuFeatures& f) {
    const std::string& m = f.machine;
    if (m == "x86_64" || m == "amd64" || m == "i686" || m == "x86") {
        if (f.amx_int8) return "x86-amx";
        if (f.avx512_vnni) return "x86-avx512-vnni";
        if (f.avx_vnni) return "x86-avx2-vnni";
        if (f.avx512f) return "x86-avx512";
        return f.avx2 ? "x86-avx2" : "x86";
    }
    if (m == "aarch64" || m == "arm64") return f.asimddp ? "arm-dotprod" : "arm";
    return "other";
}

CpuFeatures host_cpu_features() {
    CpuFeatures f;
#if defined(__x86_64__)
    f.machine = "x86_64";
    x86_features(f);
#elif defined(__i386__)
    f.machine = "i686";
    x86_features(f);
#elif defined(__aarch64__)
    f.machine = "aarch64";
#if defined(__linux__)
    constexpr unsigned long kHwcapAsimddp = 1ul << 20;  // HWCAP_ASIMDDP in <asm/hwcap.h>
    f.asimddp = (getauxval(AT_HWCAP) & kHwcapAsimddp) != 0;
#elif defined(__APPLE__)
    f.machine = "arm64";
    f.asimddp = true;  // every Apple silicon core has the dot-product instructions
#endif
#else
    f.machine = "unknown";
#endif
    return f;
}

std::string host_cpu_class() {
    const char* env = std::getenv(kOverride);
    const std::string override_class = env ? strip(env) : "";
    if (!override_class.empty()) return override_class;
    static const std::string detected = cpu_class(host_cpu_features());  // CPUID does not change
    return detected;
}

}  // namespace dfma
