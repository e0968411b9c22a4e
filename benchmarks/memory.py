"""Memory of each backend: peak RSS measured in a fresh process per backend, and grouping of backends
that would not fit in memory side by side.

``python benchmarks/memory.py --probe KEY --bundle DIR --batch B --length L --threads T`` loads one backend
in a fresh process, runs it once and prints one JSON line with its peak RSS (VmHWM) and its RSS after
imports (before loading anything).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path

HERE = Path(__file__).resolve().parent
# `python benchmarks/X.py` puts benchmarks/ first on sys.path, where our module names could shadow another
# package's; every module is imported as dfma.benchmarks.* instead.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

from dfma.benchmarks.backends import EAGER, REPO, Loader, model_config, read_bundle

# ---------------------------------------------------------------------------- memory plan

def mem_available_mb() -> float | None:
    """MemAvailable of the machine in MiB (Linux), else None."""
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def plan_groups(keys: list[str], need_mb: Mapping[str, float], budget_mb: float | None) -> list[list[str]]:
    """Split backends into groups whose memory needs fit ``budget_mb`` together, ``EAGER`` in every group.

    Every group is timed interleaved with its own eager runs, so each speed-up is still eager p50 / backend
    p50 of the same cell, measured side by side. One group when everything fits (or no budget is known).
    """
    others = [k for k in keys if k != EAGER]
    if budget_mb is None or not others:
        return [[EAGER, *others]] if EAGER in keys else [others]
    base = need_mb.get(EAGER, 0.0)
    groups: list[list[str]] = []
    used = float("inf")
    for key in others:
        need = need_mb.get(key, 0.0)
        if used + need > budget_mb and (not groups or len(groups[-1]) > 1):
            groups.append([EAGER])
            used = base
        groups[-1].append(key)
        used += need
    return groups


# ---------------------------------------------------------------------------- memory probe

def _status_kb(field_name: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field_name + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def rss_mb() -> float | None:
    """Current resident set size in MiB (Linux), else None."""
    kb = _status_kb("VmRSS")
    return None if kb is None else kb / 1024


def peak_rss_mb() -> float | None:
    """High-water resident set size of this process in MiB."""
    kb = _status_kb("VmHWM")
    if kb is None:
        try:
            import resource

            kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        except (ImportError, OSError):
            return None
    return kb / 1024


def probe(key: str, folder: Path, batch: int, length: int, threads: int, mode: str = "model") -> dict:
    """Load one backend in this (fresh) process and run it once; peak and baseline RSS in MiB."""
    import importlib

    if key.startswith("eager-"):  # the backend's imports belong to the baseline, not to its memory
        importlib.import_module("torch").set_num_threads(threads)
        importlib.import_module("dfma.model")
    else:
        importlib.import_module("onnxruntime")
    from dfma.benchmarks.workload import Workload, make_feeds

    manifest = read_bundle(folder)
    cfg = model_config(manifest)
    workload = Workload(batch, length, make_feeds(cfg, manifest, batch, length))
    if mode == "e2e":
        raise ValueError("the memory probe measures model-only runs")
    base = rss_mb()
    t0 = time.perf_counter()
    runner = Loader(folder, manifest, threads).load(key, mode)
    load = time.perf_counter() - t0
    after_load = rss_mb()
    runner.run(workload)  # the arena / allocator reaches its high-water mark in the first call
    return {"key": key, "batch": batch, "length": length, "rss_after_imports_mb": base,
            "rss_after_load_mb": after_load, "peak_rss_mb": peak_rss_mb(), "load_seconds": load}


def run_probe(key: str, folder: Path, batch: int, length: int, threads: int, timeout: float = 900) -> dict:
    """:func:`probe` in a subprocess; ``{"error": ...}`` when it fails."""
    import subprocess

    cmd = [sys.executable, str(Path(__file__).resolve()), "--probe", key, "--bundle", str(folder),
           "--batch", str(batch), "--length", str(length), "--threads", str(threads)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=REPO, check=False)
    except subprocess.TimeoutExpired:
        return {"key": key, "error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"key": key, "error": f"probe exited {proc.returncode}: {tail}"}
    return json.loads(lines[-1])


def main(argv: list[str] | None = None) -> int:
    """Entry point of the memory probe subprocess."""
    p = argparse.ArgumentParser(description="memory probe of one backend (used by latency.py)")
    p.add_argument("--probe", required=True, metavar="KEY")
    p.add_argument("--bundle", required=True, type=Path)
    p.add_argument("--batch", type=int, required=True)
    p.add_argument("--length", type=int, required=True)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args(argv)
    print(json.dumps(probe(args.probe, args.bundle, args.batch, args.length, args.threads)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
