"""Memory and load cost of each backend, measured in fresh processes, and grouping of backends that would not
fit in memory side by side.

``python benchmarks/memory.py --probe KEY --bundle DIR --batch B --length L --threads T`` loads one grid backend
in a fresh process, runs it once and prints one JSON line with its peak RSS (VmHWM) and its RSS after
imports (before loading anything).

``python benchmarks/memory.py --served LABEL --kwargs JSON --bundle DIR [--evict FILE ...]`` does the same for
a served row (``dfma.runtime.load(bundle, **kwargs)``, one MNRE sentence), after evicting ``--evict`` files
from the page cache; :func:`load_table` runs it per row (a first load naming the files, unless a served worker
already named them; the warm load; the cold load) and gives the rows of the benchmark's "load" table: bytes
the row loads (ONNX external data followed, benchmarks/load_files.py), load seconds with a cold and a warm page
cache, RSS growth. ``python benchmarks/memory.py --load-table --bundle DIR [--rows R1,R2]`` prints that table
alone; :func:`grid_load_rows` builds the grid backends' one from their memory probes.
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
from dfma.contract.errors import BundleError

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
            "rss_after_load_mb": after_load, "rss_after_call_mb": rss_mb(), "peak_rss_mb": peak_rss_mb(),
            "load_seconds": load}


def run_probe(key: str, folder: Path, batch: int, length: int, threads: int, timeout: float = 900) -> dict:
    """:func:`probe` in a subprocess; ``{"error": ...}`` when it fails."""
    cmd = ["--probe", key, "--bundle", str(folder), "--batch", str(batch), "--length", str(length),
           "--threads", str(threads)]
    return _subprocess(key, cmd, {"OMP_NUM_THREADS": str(threads)}, timeout)


def _subprocess(key: str, args: list[str], env: Mapping[str, str], timeout: float) -> dict:
    """This module run with ``args`` in a fresh interpreter: its last JSON line, or ``{"error": ...}``."""
    import subprocess

    cmd = [sys.executable, str(Path(__file__).resolve()), *args]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env={**os.environ, **env},
                              cwd=REPO, check=False)
    except subprocess.TimeoutExpired:
        return {"key": key, "error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
    if proc.returncode != 0 or not lines:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"key": key, "error": f"probe exited {proc.returncode}: {tail}"}
    return json.loads(lines[-1])


# ---------------------------------------------------------------------------- load cost of the served rows

COLD_RESIDENT_MAX = 0.05  # share of a row's bytes still in the page cache after eviction above which cold is unmeasured


def served_probe(label: str, folder: Path, kwargs: Mapping, threads: int | None = None, data: str | None = None,
                 evict: list[str] | None = None) -> dict:
    """In this (fresh) process: ``dfma.runtime.load(folder, **kwargs)`` (a served row), timed, then one call on one
    MNRE sentence; RSS after imports, after the load and after the call, VmHWM, the graph files the extractor
    opened. ``evict``: files dropped from the page cache just before the load (the share still resident is said)."""
    import importlib

    importlib.import_module("onnxruntime")  # the runtime's imports belong to the baseline, not to its memory
    rt = importlib.import_module("dfma.runtime")
    from dfma.benchmarks import load_files
    from dfma.benchmarks.served import requests

    call = requests("b1", 1, data=data)[0]
    out: dict = {"key": label, "kwargs": dict(kwargs)}
    if evict:
        load_files.evict(evict)
        out["resident_before_load"] = load_files.resident_share(evict)
    base = rss_mb()
    t0 = time.perf_counter()
    ex = rt.load(str(folder), threads=threads, image_cache_mb=64.0, **kwargs)
    out["load_seconds"] = time.perf_counter() - t0
    after_load = rss_mb()
    ex.predict_batch(call)
    d = ex.describe()
    stage_files = (d.get("stages") or {}).get("files") or {}
    out.update(rss_after_imports_mb=base, rss_after_load_mb=after_load, rss_after_call_mb=rss_mb(),
               peak_rss_mb=peak_rss_mb(), files=list(stage_files.values()) or [d.get("graph")],
               precision=ex.precision, graph_key=d.get("graph_key"), backend=ex.backend)
    ex.close()
    return out


def run_served_probe(label: str, folder: Path, kwargs: Mapping, threads: int | None = None, data: str | None = None,
                     evict: list[str] | None = None, timeout: float = 900) -> dict:
    """:func:`served_probe` in a fresh process; ``{"error": ...}`` when it fails."""
    args = ["--served", label, "--kwargs", json.dumps(dict(kwargs)), "--bundle", str(folder)]
    args += ["--threads", str(threads)] if threads else []
    args += ["--data", data] if data else []
    args += ["--evict", *evict] if evict else []
    return _subprocess(label, args, {"OMP_NUM_THREADS": str(threads)} if threads else {}, timeout)


def load_row(label: str, folder: Path, kwargs: Mapping, threads: int | None = None, data: str | None = None,
             graphs: list[str] | None = None) -> dict:
    """One row of the load table: fresh processes load ``dfma.runtime.load(folder, **kwargs)`` and run one call.
    A first one names the graph files (unless ``graphs``, the files a served worker of the same row opened, are
    given: then they and their stores are read through here); the next, right after, is the warm load; the last
    evicts those files (their bytes follow ONNX external data) from the page cache first: the cold load
    (``cold`` says why not when the files stayed resident). RSS growth: RSS after load and one call minus RSS
    after imports, of the warm process; peak growth: its VmHWM minus the same."""
    from dfma.benchmarks import load_files

    first = None
    if not graphs:
        first = run_served_probe(label, folder, kwargs, threads, data)
        if "error" in first:
            return {"row": label, "error": first["error"]}
        graphs = first["files"]
    files = load_files.row_files(folder, graphs)
    if first is None:
        load_files.read_through(files["paths"])
    warm = run_served_probe(label, folder, kwargs, threads, data)
    if "error" not in warm and sorted(warm["files"]) != sorted(graphs):
        return {"row": label, "error": f"the warm load opened {warm['files']}, not {graphs}"}
    if "error" in warm:
        return {"row": label, "error": warm["error"]}
    key = warm.get("graph_key")
    row = {"row": label, "serves": warm["precision"] + (f" ({key})" if key and key != warm["precision"] else ""),
           "graphs": files["graphs"], "stores": files["stores"], "bytes": files["bytes"],
           "load_first_s": round(first["load_seconds"], 4) if first else None,
           "load_warm_s": round(warm["load_seconds"], 4),
           "load_cold_s": None, "cold": None}
    base = warm["rss_after_imports_mb"]
    if base is not None and warm.get("rss_after_call_mb") is not None:
        row["rss_growth_mb"] = round(warm["rss_after_call_mb"] - base, 1)
        row["rss_after_load_growth_mb"] = round(warm["rss_after_load_mb"] - base, 1)
        row["growth_per_byte"] = round(row["rss_growth_mb"] * 2**20 / files["bytes"], 3) if files["bytes"] else None
    if base is not None and warm.get("peak_rss_mb") is not None:
        row["peak_growth_mb"] = round(warm["peak_rss_mb"] - base, 1)
    cold = run_served_probe(label, folder, kwargs, threads, data, evict=files["paths"])
    resident = cold.get("resident_before_load")
    row["resident_before_cold"] = None if resident is None else round(resident, 4)
    if "error" in cold:
        row["cold"] = f"not measurable here: {cold['error']}"
    elif resident is not None and resident > COLD_RESIDENT_MAX:
        row["cold"] = (f"not measurable here: {100 * resident:.0f}% of the files stayed in the page cache after "
                       "posix_fadvise(DONTNEED)")
    else:
        row["load_cold_s"] = round(cold["load_seconds"], 4)
    return row


def load_table(folder: Path, rows: Mapping[str, Mapping], threads: int | None = None, data: str | None = None,
               log=None, graphs: Mapping[str, list[str]] | None = None) -> dict:
    """The load table of the served rows ``{label: dfma.runtime.load kwargs}`` (:func:`load_row` each, with the
    graph files ``graphs[label]`` a worker of that row opened when known): ``{"rows": [...], "method": ...,
    "seconds": ...}``."""
    t0 = time.perf_counter()
    out = []
    for label, kwargs in rows.items():
        if log:
            log(f"[load] {label}: bytes, warm and cold loads in fresh processes ...")
        out.append(load_row(label, folder, kwargs, threads, data, (graphs or {}).get(label)))
    return {"rows": out, "seconds": round(time.perf_counter() - t0, 1),
            "method": "each row: dfma.runtime.load + 1 call (one MNRE sentence) in fresh processes; bytes = the "
                      "graph files it opens + the ONNX external data they reference (a shared store once per "
                      "row); warm = a load right after another load of the row (or after reading its files "
                      "through); cold = a load with its files evicted first "
                      "(os.sync + posix_fadvise DONTNEED, residency checked with mincore; the Python "
                      "libraries stay cached); RSS growth = RSS after load + call - RSS after imports"}


def evict_for_probe(folder: Path, graph: str | None) -> dict | None:
    """Before a grid backend's memory probe: the files graph ``graph`` reads (bytes following external data),
    evicted from the page cache so that the probe's load is a cold one; ``{"files": ..., "resident": share left
    cached}`` or ``{"error": ...}``; None for the eager rows (no graph file)."""
    from dfma.benchmarks import load_files

    if not graph:
        return None
    try:
        files = load_files.row_files(folder, [graph])
        load_files.evict(files["paths"])
    except (OSError, BundleError) as exc:
        return {"error": f"{type(exc).__name__}: {exc}"}
    return {"files": files, "resident": load_files.resident_share(files["paths"])}


def grid_load_rows(memory: Mapping[str, Mapping], evicted: Mapping[str, Mapping | None],
                   backends: Mapping[str, Mapping]) -> dict:
    """The load table of the grid's backends from what the run measured anyway: bytes of the graph's files, cold
    load = the memory probe's load (its files evicted just before, :func:`evict_for_probe`), warm load = the
    grid's own load of the backend in model mode (after the probe read the files), RSS growth after load + one
    call at the largest cell (the probe's)."""
    rows, not_loaded = [], {}
    for key, mem in memory.items():
        ev = evicted.get(key)
        if ev is None:
            not_loaded[key] = "no ONNX graph of the bundle to load (eager PyTorch, or not probed)"
            continue
        if "error" in ev or "error" in mem:
            rows.append({"row": key, "error": ev.get("error") or mem.get("error")})
            continue
        files = ev["files"]
        row = {"row": key, "serves": (backends.get(key) or {}).get("precision"), "graphs": files["graphs"],
               "stores": files["stores"], "bytes": files["bytes"], "load_cold_s": None, "cold": None,
               "load_warm_s": ((backends.get(key) or {}).get("load_seconds") or {}).get("model"),
               "resident_before_cold": None if ev["resident"] is None else round(ev["resident"], 4),
               "cell": f"{mem.get('batch')}x{mem.get('length')}"}
        if ev["resident"] is not None and ev["resident"] > COLD_RESIDENT_MAX:
            row["cold"] = (f"not measurable here: {100 * ev['resident']:.0f}% of the files stayed in the page cache "
                           "after posix_fadvise(DONTNEED)")
        else:
            row["load_cold_s"] = round(mem["load_seconds"], 4)
        base = mem.get("rss_after_imports_mb")
        if base is not None and mem.get("rss_after_call_mb") is not None:
            row["rss_growth_mb"] = round(mem["rss_after_call_mb"] - base, 1)
            row["growth_per_byte"] = round(row["rss_growth_mb"] * 2**20 / files["bytes"], 3) if files["bytes"] else None
        if base is not None and mem.get("peak_rss_mb") is not None:
            row["peak_growth_mb"] = round(mem["peak_rss_mb"] - base, 1)
        rows.append(row)
    return {"rows": rows, "not_loaded": not_loaded,
            "method": "grid backends (model only): bytes = the graph file + the ONNX external data it references; "
                      "cold = the memory probe's load in a fresh process, the files evicted just before (os.sync + "
                      "posix_fadvise DONTNEED, residency checked with mincore); warm = the grid's own load of the "
                      "backend (model mode, after the probe); RSS growth = RSS after load + 1 call at the largest "
                      "cell minus RSS after imports, of the probe"}


def _load_table_main(args: argparse.Namespace) -> int:
    """``--load-table``: the served rows' load table of ``--bundle`` alone, printed (and written to ``--json``)."""
    from dfma.benchmarks import latency_report as report
    from dfma.benchmarks import served as sv

    folder = args.bundle
    wanted = [r.strip() for r in args.rows.split(",") if r.strip()] if args.rows else None
    specs, skipped = sv.contenders(folder, read_bundle(folder), wanted)
    rows = {k: kw for k, (factory, kw) in specs.items() if factory.endswith(":served") and (not wanted or k in wanted)}
    missing = [r for r in wanted or [] if r not in rows]
    if missing:
        raise SystemExit(f"error: --rows {missing}: not served rows of this bundle here "
                         f"({'; '.join(f'{k}: {skipped[k]}' for k in missing if k in skipped) or 'unknown'}); "
                         f"choose from {sorted(k for k, (f, _) in specs.items() if f.endswith(':served'))}")
    table = load_table(folder, rows, threads=args.threads, data=args.data,
                       log=lambda m: print(m, file=sys.stderr, flush=True))
    table["bundle"] = str(folder)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(table, indent=1) + "\n")
    print(report.load_table({"served": {"load": table}}))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the memory probe subprocess."""
    p = argparse.ArgumentParser(description="memory / load probe of one backend (used by latency.py)")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--probe", metavar="KEY", help="a grid backend (model only)")
    which.add_argument("--served", metavar="LABEL", help="a served row: dfma.runtime.load(bundle, **--kwargs)")
    which.add_argument("--load-table", action="store_true",
                       help="the load table of the bundle's served rows alone (no latency), printed; --rows picks them")
    p.add_argument("--rows", default=None, metavar="R1,R2",
                   help="--load-table: served rows (default every row dfma.runtime.load serves: auto, ort-fp32, "
                        "ort-int8, ort-int8-dynamic, ...)")
    p.add_argument("--json", type=Path, default=None, metavar="FILE", help="--load-table: also write the table as JSON")
    p.add_argument("--bundle", required=True, type=Path)
    p.add_argument("--batch", type=int, help="--probe: batch of the one call")
    p.add_argument("--length", type=int, help="--probe: length of the one call")
    p.add_argument("--threads", type=int, default=None, help="threads (--probe: default 2; --served: the runtime's)")
    p.add_argument("--kwargs", default="{}", help="--served: dfma.runtime.load keyword arguments as JSON")
    p.add_argument("--data", default=None, help="--served: the MNRE split the sentence comes from")
    p.add_argument("--evict", nargs="+", default=None, metavar="FILE",
                   help="--served: drop these files from the page cache before the load")
    args = p.parse_args(argv)
    if args.load_table:
        return _load_table_main(args)
    if args.served:
        print(json.dumps(served_probe(args.served, args.bundle, json.loads(args.kwargs), args.threads, args.data,
                                      args.evict)))
        return 0
    if args.batch is None or args.length is None:
        p.error("--probe needs --batch and --length")
    print(json.dumps(probe(args.probe, args.bundle, args.batch, args.length, args.threads or 2)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
