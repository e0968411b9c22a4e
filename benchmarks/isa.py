"""What this CPU's instructions mean for two rows of the benchmark (from ``dfma.host``, torch-free).

- **bf16**: eager bf16 autocast runs on bf16 instructions only with AVX512_BF16 or AMX-BF16 (x86) or the
  BF16 extension (Arm); elsewhere oneDNN converts to fp32 and back around every op, which is slower than
  fp32 (the issue measured ~11 s against 624 ms fp32 on an AVX2 host). Such a row is labelled *emulated*.
- **INT8**: the instruction class behind the INT8 GEMM rate (``host_info()["class"]``): AMX tiles, AVX-512
  or AVX VNNI dot products, or ``VPMADDUBSW`` with its saturating 16-bit intermediate.
"""
from __future__ import annotations

from collections.abc import Mapping

BF16_FLAGS = {"x86": ("avx512_bf16", "amx_bf16"), "arm": ("bf16",)}

INT8_INSTRUCTIONS = {
    "x86-amx": "AMX tiles (TDPBUSD)",
    "x86-avx512-vnni": "AVX-512 VNNI (VPDPBUSD)",
    "x86-avx2-vnni": "AVX-VNNI (VPDPBUSD, 256-bit)",
    "x86-avx512": "AVX-512BW VPMADDUBSW (no VNNI: 16-bit intermediate)",
    "x86-avx2": "AVX2 VPMADDUBSW (no VNNI: 16-bit intermediate)",
    "x86": "no AVX2: scalar / SSE kernels",
    "arm-dotprod": "Arm SDOT/UDOT",
    "arm": "Arm NEON without dot products",
}


def _family(machine: str) -> str:
    machine = machine.lower()
    if machine in ("x86_64", "amd64", "i686", "x86"):
        return "x86"
    return "arm" if machine in ("aarch64", "arm64") else "other"


def bf16_hardware(host: Mapping) -> list[str]:
    """The bf16 instruction flags a :func:`dfma.host.host_info`-like dict lists."""
    wanted = BF16_FLAGS.get(_family(str(host.get("machine", ""))), ())
    return [f for f in wanted if f in set(host.get("flags") or ())]


def bf16_emulated(host: Mapping) -> bool:
    """True when this CPU has no bf16 instructions (eager bf16 autocast is then emulated in fp32)."""
    return not bf16_hardware(host)


def bf16_note(host: Mapping) -> str:
    """One phrase for labels: ``"emulated: no AVX512_BF16 or AMX"`` or the native flags."""
    if bf16_emulated(host):
        names = BF16_FLAGS.get(_family(str(host.get("machine", ""))), ())
        return "emulated: no " + " or ".join(n.upper().replace("AMX_BF16", "AMX") for n in names) if names \
            else "emulated: no bf16 instructions known on this CPU"
    return "native: " + ", ".join(bf16_hardware(host))


def int8_instructions(cpu_class: str) -> str:
    """What INT8 GEMMs run on in CPU class ``cpu_class`` (a :func:`dfma.host.cpu_class` name)."""
    return INT8_INSTRUCTIONS.get(cpu_class, "unknown instruction class")
