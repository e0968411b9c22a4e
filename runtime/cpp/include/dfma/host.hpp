// The CPU class of this machine, as dfma/host.py computes it: the name recorded wherever a
// measurement is (benchmarks, the accuracy guard, the golden set's expected results, `auto`).
#pragma once

#include <string>
#include <vector>

namespace dfma {

/// Feature bits the class depends on (what /proc/cpuinfo would list, OS support included).
struct CpuFeatures {
    std::string machine;  ///< "x86_64", "aarch64", ... (as Python's platform.machine())
    bool avx2 = false, avx512f = false, avx512_vnni = false, avx_vnni = false, amx_int8 = false;
    bool asimddp = false;  ///< aarch64 SDOT/UDOT (HWCAP_ASIMDDP)
};

/// The class names, best first: "x86-amx", "x86-avx512-vnni", "x86-avx2-vnni", "x86-avx512",
/// "x86-avx2", "x86", "arm-dotprod", "arm", "other".
const std::vector<std::string>& cpu_class_names();

/// The class of a CPU with these features (same precedence as host.py's cpu_class()).
std::string cpu_class(const CpuFeatures& features);

/// Features of the CPU running this process: CPUID + XGETBV on x86, getauxval(AT_HWCAP) on aarch64.
CpuFeatures host_cpu_features();

/// This machine's class: the environment variable DFMA_CPU_CLASS when set (non-blank), else
/// cpu_class(host_cpu_features()).
std::string host_cpu_class();

}  // namespace dfma
