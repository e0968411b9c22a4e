"""What a benchmark run stands on: the cached default bundle (exported when missing or stale) and the facts
about the machine recorded with every result (its expected duration: :mod:`dfma.benchmarks.duration`)."""
from __future__ import annotations

import gc
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

from dfma.benchmarks import backends as bk

from dfma.contract.graphs import CATALOGUE

REPO = Path(__file__).resolve().parent.parent
PRECISION_GRAPHS = tuple(r.file for r in CATALOGUE.values() if r.recipe and not r.opt_in)  # what to_precision.py builds


def log(msg: str) -> None:
    """Progress on stderr (the tables go to stdout)."""
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- bundle

def cache_matches(folder: Path, preset_name: str) -> str | None:
    """None when ``folder`` holds a bundle of this preset with random weights (seed 0); else why not."""
    from dfma.config import preset

    try:
        manifest = bk.read_bundle(folder)
    except Exception as exc:  # noqa: BLE001
        return f"no usable manifest ({exc})"
    model = manifest.model
    if model.source != "random" or model.preset != preset_name or (model.seed if model.seed is not None else -1) != 0:
        return f"holds {model.source} {model.preset} seed {model.seed}"
    want = preset(preset_name).to_dict()
    have = model.config or {}
    tokenizer_set = {"vocab_size", "pad_token_id", "head_marker_id", "tail_marker_id", "labels"}
    diff = [k for k in want if k not in tokenizer_set and have.get(k) != want[k]
            and not (isinstance(want[k], tuple) and list(want[k]) == have.get(k))]
    if diff:
        return f"config differs in {diff}"
    missing = [CATALOGUE[k].file for k in ("portable", "ort") if CATALOGUE[k].file not in manifest.files]
    if not missing and manifest.stages is None:
        return "has no two-stage graphs (exported before they existed)"
    return f"lacks {missing}" if missing else None


def ensure_bundle(preset_name: str, cache: Path, rebuild: bool) -> Path:
    """The cached bundle of ``preset_name`` (exported with the project's exporter when missing or stale),
    with the precision graphs added when the precision tool exists."""
    why = "--rebuild" if rebuild else cache_matches(cache, preset_name) if cache.exists() else "not there yet"
    if why:
        log(f"[bundle] exporting preset {preset_name} to {cache} ({why}) ...")
        from dfma.export.pipeline import ExportOptions, export_bundle

        t0 = time.perf_counter()
        export_bundle(ExportOptions(out=cache, preset=preset_name, force=cache.exists()))
        log(f"[bundle] exported in {time.perf_counter() - t0:.0f} s")
        gc.collect()
    else:
        log(f"[bundle] reusing {cache} (manifest matches preset {preset_name})")
    tool = REPO / "export" / "to_precision.py"
    files = bk.read_bundle(cache).files
    if tool.is_file() and not all(g in files for g in PRECISION_GRAPHS):
        log(f"[bundle] adding precision graphs: {tool.relative_to(REPO)} {cache} ...")
        proc = subprocess.run([sys.executable, str(tool), str(cache)], cwd=REPO, check=False)
        if proc.returncode != 0:
            log(f"[bundle] warning: {tool.name} exited {proc.returncode}; benchmarking the fp32 graphs only")
    elif not tool.is_file():
        log("[bundle] export/to_precision.py not found: no fp16/int8 graphs to benchmark")
    return cache


# ---------------------------------------------------------------------------- machine

def machine_info(threads: int) -> dict:
    """CPU model, flags that matter for the kernels, CPU class (``dfma.host``), memory, versions,
    load average."""
    info: dict = {"platform": platform.platform(), "python": platform.python_version(),
                  "logical_cpus": os.cpu_count(), "threads": threads}
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
        for line in cpuinfo.splitlines():
            if line.startswith("model name"):
                info["cpu"] = line.split(":", 1)[1].strip()
                break
        flags = next((ln.split(":", 1)[1].split() for ln in cpuinfo.splitlines() if ln.startswith("flags")), [])
        info["flags"] = [f for f in ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_bf16", "amx_int8")
                         if f in flags]
        mem = next(ln for ln in Path("/proc/meminfo").read_text().splitlines() if ln.startswith("MemTotal"))
        info["memory_gib"] = round(int(mem.split()[1]) / 2**20, 1)
    except (OSError, StopIteration):
        info.setdefault("cpu", platform.processor() or "unknown")
    info["cpu"] = info.get("cpu") or "unknown"
    from dfma.host import host_info

    host = host_info()  # the class every INT8 and bf16 decision is recorded with
    info["cpu_class"], info["cpu_class_from"] = host["class"], host["class_from"]
    from importlib import metadata

    for pkg in ("torch", "onnxruntime", "numpy", "tensorrt"):
        try:
            info[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            pass
    info["loadavg_start"] = [round(x, 2) for x in os.getloadavg()]
    return info
