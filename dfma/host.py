"""What kind of CPU this is (torch-free): model name, the ISA flags INT8 and bf16 kernels depend on, and
a class name recorded wherever a measurement is recorded (benchmarks, the accuracy guard, ``auto``).

Classes, best first: ``x86-amx`` (AMX tiles), ``x86-avx512-vnni``, ``x86-avx2-vnni`` (AVX-VNNI without
AVX-512), ``x86-avx512`` (AVX-512 without VNNI), ``x86-avx2``, ``arm-dotprod`` (SDOT/UDOT), ``arm``, ``other``.
Without VNNI, ONNX Runtime's U8xS8 kernels use ``VPMADDUBSW``, whose 16-bit intermediate can saturate.
"""
from __future__ import annotations

import functools
import os
import platform
from pathlib import Path

FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16",
         "asimddp", "i8mm", "bf16")


def _cpuinfo() -> str:
    try:
        return Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return ""


CLASS_OVERRIDE = "DFMA_CPU_CLASS"  # e.g. under an emulator, where /proc/cpuinfo describes the real CPU


@functools.lru_cache(maxsize=1)
def host_info() -> dict:
    """``{"cpu", "machine", "flags", "class", "logical_cpus"}`` of this machine (cached); the environment
    variable ``DFMA_CPU_CLASS`` sets the class (and says so in ``class_from``)."""
    text = _cpuinfo()
    model, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip().lower()
        if key in ("model name", "hardware", "cpu model") and not model:
            model = value.strip()
        elif key in ("flags", "features"):
            flags.update(value.split())
    machine = platform.machine().lower()
    override = os.environ.get(CLASS_OVERRIDE, "").strip()
    return {"cpu": model or platform.processor() or machine or "unknown", "machine": machine,
            "flags": [f for f in FLAGS if f in flags], "class": override or cpu_class(machine, flags),
            "class_from": f"${CLASS_OVERRIDE}" if override else "/proc/cpuinfo", "logical_cpus": os.cpu_count()}


def cpu_class(machine: str, flags: set[str] | frozenset[str] | list[str]) -> str:
    """The class name (module doc) of a CPU with these ``/proc/cpuinfo`` flags."""
    flags = set(flags)
    if machine in ("x86_64", "amd64", "i686", "x86"):
        if "amx_int8" in flags:
            return "x86-amx"
        if "avx512_vnni" in flags:
            return "x86-avx512-vnni"
        if "avx_vnni" in flags:
            return "x86-avx2-vnni"
        if "avx512f" in flags:
            return "x86-avx512"
        return "x86-avx2" if "avx2" in flags else "x86"
    if machine in ("aarch64", "arm64"):
        return "arm-dotprod" if "asimddp" in flags else "arm"
    return "other"


def same_class(recorded: dict | None, info: dict | None = None) -> bool:
    """Whether a recorded host (a :func:`host_info` dict) is of this machine's CPU class."""
    return bool(recorded) and recorded.get("class") == (info or host_info())["class"]
