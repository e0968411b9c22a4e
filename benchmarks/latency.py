"""Latency of DFMA on every backend, side by side, in one interleaved run: ``python benchmarks/latency.py``.

Eager PyTorch (fp32, bf16 autocast, marked *emulated* on CPUs without bf16 instructions, and
``torch.compile`` with inductor) against ONNX Runtime and OpenVINO on the portable, fused, fp16, static INT8
and dynamic INT8 graphs (and TensorRT engines when the bundle has them and a GPU is here), model only and
end to end through the runtime, for every batch x length cell: p50/p90/p99, throughput, speed-up over eager
measured in the same cell of the same run, GFLOP/s and efficiency against the fp32 GEMM rate measured in
the same run (INT8 rows also against the INT8 GEMM rate, ONNX Runtime MatMulInteger, with the CPU's INT8
instruction class), load time, compile time (torch.compile: its first call per cell, untimed), peak memory,
file size. Prints tables, writes a JSON file and a PNG plot.

The default rows (``--modes served``, benchmarks/served.py) are real MNRE traffic end to end through
``dfma.runtime`` as it is served, with the INT8 issue's targets and the check that the fastest guarded graph is
the bundle's ``auto`` choice. Every contender (and GEMM probe) is timed in its own worker process
(:mod:`dfma.timing`), interleaved call by call; disturbance: benchmarks/disturbance.py.

The load table (benchmarks/memory.py, benchmarks/load_files.py): per row the bytes it loads (graph files and
the ONNX external data they reference), its load seconds with a cold and a warm page cache and the RSS growth
of the loaded extractor, each in fresh processes: for the served rows with ``--load-table`` (default on when
they run alone), for the grid backends from their memory probes.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import gc
import os
import shlex
import sys
import time
from collections.abc import Mapping
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
# `python benchmarks/X.py` puts benchmarks/ first on sys.path, where our module names could shadow another
# package's; every module is imported as dfma.benchmarks.* instead.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

from dfma.benchmarks import backends as bk
from dfma.benchmarks import latency_report as report
from dfma.benchmarks import memory as memprobe
from dfma.benchmarks.analysis import evaluate_targets, is_int8, summarize
from dfma.benchmarks.disturbance import measure_cell
from dfma.benchmarks.duration import expected_duration
from dfma.benchmarks.environment import ensure_bundle, machine_info
from dfma.benchmarks.flops import FORMULA, measured_flops, model_flops
from dfma.benchmarks.gemm_int8 import DTYPE as INT8_GEMM, Int8GemmProbe, int8_gemm_rate
from dfma.benchmarks.latency_options import (
    SERVED,
    backend_keys,
    cell_budget,
    grid_modes,
    parse_args,
    run_threads,
    settings_of,
)
from dfma.benchmarks.timing import (
    Budget,
    CpuLoad,
    GemmProbe,
    gemm_rate,
    interleave,
    latency_stats,
)
from dfma.benchmarks.workload import (
    Workload,
    make_feeds,
    make_samples,
    single_piece_words,
)

from dfma.contract.errors import BackendUnavailable
from dfma.contract.manifest import Manifest
from dfma.timing import STAT


def log(msg: str) -> None:
    """Progress on stderr (the tables go to stdout)."""
    print(msg, file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------- measuring

def parity_of(manifest: Manifest, graph: str | None) -> dict:
    """The manifest's parity record of graph file ``graph`` and whether it satisfies its accuracy guard.

    fp32 graphs: ``passed`` = eager parity within the exporter's tolerance. Reduced-precision graphs
    (export/to_precision.py): ``passed`` = top-1 agreement with fp32 >= the target on MNRE validation
    sentences; the guard also bounds the micro-F1 change (``precision.f1_tolerance_points``).
    """
    if not graph:
        return {}
    for key, g in manifest.graphs.items():
        if g.file != graph:
            continue
        entry = manifest.parity.get(key)
        if not isinstance(entry, Mapping):
            return {}
        out = {k: entry[k] for k in ("max_abs_error", "max_rel_error", "top1_agreement", "f1_delta_points",
                                     "target_agreement", "samples") if k in entry}
        passed = entry.get("passed")
        tol = manifest.precision.f1_tolerance_points if manifest.precision is not None else None
        if isinstance(passed, bool):
            if tol is not None and "f1_delta_points" in entry:
                passed = passed and abs(float(entry["f1_delta_points"])) <= float(tol)
            out["guard_passed"] = passed
        kept = (g.get("quantization") or {}).get("kept_fp32")
        if kept:
            out["kept_fp32_nodes"] = len(kept)
        return out
    return {}


def load_runners(loader: bk.Loader, keys: list[str], mode: str, skipped: dict, backends: dict,
                 isolated: dict | None = None) -> list:
    """Open every backend in ``mode``; failures are recorded in ``skipped`` (the run goes on). ``isolated``
    (``{"cells", "image_wh", "crop_wh"}``): each backend in its own worker process (benchmarks/served.py)."""
    runners = []
    for key in keys:
        log(f"[load] {key} ({mode}{', own process' if isolated else ''}) ...")
        try:
            runner = loader.load(key, mode) if isolated is None else open_isolated(loader, key, mode, isolated)
        except Exception as exc:  # noqa: BLE001  (a backend that cannot load here is reported, not fatal)
            reason = f"{mode}: cannot load ({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''})"
            skipped[key] = reason if key not in skipped else f"{skipped[key]}; {reason}"
            log(f"[load] {key}: {reason}")
            continue
        entry = backends.setdefault(key, {k: v for k, v in runner.describe().items()
                                          if k not in ("mode", "load_seconds", "load_what")})
        entry.setdefault("load_seconds", {})[mode] = round(runner.load_seconds, 3)
        entry.setdefault("load_what", {})[mode] = runner.info.get("load_what")
        runners.append(runner)
    return runners


def open_isolated(loader: bk.Loader, key: str, mode: str, isolated: dict):
    """Contender ``key`` in its own worker process: no other runtime's thread pool lives beside it."""
    from dfma.benchmarks.isolated import WorkerContender
    from dfma.timing import Worker

    cells = [list(c) for c in isolated["cells"]]
    workers = isolated.setdefault("workers", {})  # one per backend for the whole run, closed by run()
    if key not in workers:
        workers[key] = Worker(key, "dfma.benchmarks.isolated:grid_contender",
                              {"bundle": str(loader.folder), "key": key, "modes": isolated["modes"],
                               "threads": loader.threads, "cells": cells, "image_wh": list(isolated["image_wh"]),
                               "crop_wh": list(isolated["crop_wh"])})
    return WorkerContender(workers[key], cells, mode=isolated["modes"].index(mode), owned=False)


def isolated_probe(kind: str, n: int, threads: int):
    """A GEMM probe in its own worker process (``kind`` fp32 or int8); BackendUnavailable when it cannot run."""
    from dfma.benchmarks.isolated import WorkerContender
    from dfma.timing import Worker, WorkerError

    try:
        return WorkerContender(Worker(f"gemm-{kind}", "dfma.benchmarks.isolated:gemm_probe",
                                      {"kind": kind, "n": n, "threads": threads}), [], probe=True)
    except WorkerError as exc:
        raise BackendUnavailable(str(exc)) from None


def agreement(outputs: Mapping, reference: str):
    """``{key: (top-1 agreement, max |logit diff|)}`` of every output against ``reference``'s."""
    import numpy as np

    ref = outputs.get(reference)
    if ref is None:
        return {}
    out = {}
    for key, val in outputs.items():
        val = np.asarray(val, dtype=np.float32)
        if val.shape != ref.shape:
            continue
        out[key] = (float((val.argmax(-1) == ref.argmax(-1)).mean()), float(np.abs(val - ref).max()))
    return out


def prepare_cell(runners: list, workload, where: str, fail) -> None:
    """The untimed first call of every runner that has one (``prepare``: torch.compile compiles there); a
    runner whose first call fails is told to ``fail(runner, exc)``, closed and removed from ``runners``."""
    for runner in list(runners):
        if runner.prepare is None:
            continue
        try:
            entry = runner.prepare(workload)
        except Exception as exc:  # noqa: BLE001  (a compile that fails here: the row is skipped, the run goes on)
            fail(runner, exc)
            runners.remove(runner)
            runner.close()
            continue
        if entry and entry.get("graphs_compiled"):
            log(f"  {runner.key}: first call at {where} {entry['first_call_s']:.1f} s "
                f"({entry['graphs_compiled']} graph(s) compiled; not timed)")


def record_probe(cells: dict, where: str, probe, seconds: list[float]) -> None:
    """Add a GEMM probe's seconds of one cell to ``cells[where]`` and update its rate (several memory groups:
    one rate over all of them)."""
    cell = cells.setdefault(where, {"n": probe.n, "seconds": []})
    cell["seconds"] += seconds
    cell["reps"] = len(cell["seconds"])
    cell["rate"] = probe.flops / latency_stats(cell["seconds"])["p50_ms"] * 1e3


def measure_mode(mode: str, runners: list, cells: list, budget: Budget, skipped: dict, ctx: dict,
                 group: int = 0) -> list[dict]:
    """Run every cell of one mode for one group of runners; rows of raw timings per backend and cell.
    A runner whose untimed first call fails (:func:`prepare_cell`) is removed from ``runners``."""
    rows = []
    reference = "ort-fused" if any(r.key == "ort-fused" for r in runners) else bk.EAGER
    for batch, length in cells:
        workload = Workload(batch, length, make_feeds(ctx["cfg"], ctx["manifest"], batch, length))
        if mode == "e2e":
            workload.samples = make_samples(ctx["pipeline"].preprocessor.text, ctx["words"], batch, length,
                                            ctx["cfg"].num_crops, ctx["image_wh"], ctx["crop_wh"])
        log(f"[{mode}] batch {batch} x length {length}: {', '.join(r.key for r in runners)} interleaved ...")
        t0 = time.perf_counter()

        def failed(runner, exc, _mode=mode, _b=batch, _l=length):
            msg = f"{_mode} {_b}x{_l}: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
            skipped[runner.key] = msg if runner.key not in skipped else f"{skipped[runner.key]}; {msg}"
            log(f"[{_mode}] {runner.key} failed: {msg}")

        where = f"{mode} {batch}x{length}"
        prepare_cell(runners, workload, where, failed)
        # GEMM probes timed as more contenders of the cell: fp32 always, INT8 when the cell has an INT8 row
        probes = [p for p, cells_of in ((ctx.get("gemm_probe"), "gemm_cells"), (ctx.get("int8_probe"), "int8_cells"))
                  if p is not None and (cells_of == "gemm_cells" or any(is_int8(r.precision) for r in runners))]
        precision = {r.key: r.precision for r in runners}
        probe_runs: dict[int, dict[str, list[float]]] = {}  # id(rows of an attempt) -> each probe's seconds in it

        def run_once(_workload=workload, _mode=mode, _batch=batch, _length=length, _failed=failed, _probes=probes,
                     _precision=precision, _runs=probe_runs):
            times, outputs = interleave(runners + _probes, _workload, cell_budget(budget, _batch), on_error=_failed)
            probe_seconds = {p.key: times.pop(p.key, []) for p in _probes}
            outputs = {k: v for k, v in outputs.items() if v is not None}
            agree = agreement(outputs, reference)
            cell_rows = [{"mode": _mode, "group": group, "batch": _batch, "length": _length, "backend": key,
                          "precision": _precision.get(key), "seconds": secs,
                          "reference": reference if reference in outputs else None,
                          "top1_vs_ref": agree.get(key, (None, None))[0],
                          "max_abs_diff_vs_ref": agree.get(key, (None, None))[1]} for key, secs in times.items()]
            for row, runner in ((r, next((c for c in runners if c.key == r["backend"]), None)) for r in cell_rows):
                if getattr(runner, "cpu", None) and row["seconds"]:  # a worker's CPU seconds per timed call (the last len(seconds))
                    row["cpu"] = runner.cpu[-len(row["seconds"]):]
            _runs[id(cell_rows)] = probe_seconds
            return cell_rows

        workers = lambda _r=runners, _p=probes: [c.worker.proc.pid for c in _r + _p if hasattr(c, "worker")]  # noqa: E731
        cell_rows = measure_cell(run_once, lambda _w=workers: CpuLoad(pids=_w), log=log)  # disturbed: measured again
        for probe in probes:
            seconds = probe_runs.get(id(cell_rows), {}).get(probe.key, [])
            if seconds:
                record_probe(ctx["int8_cells" if probe.key == Int8GemmProbe.key else "gemm_cells"], where, probe, seconds)
        rows += cell_rows
        times = {r["backend"]: r["seconds"] for r in cell_rows}
        log(f"[{mode}] batch {batch} x length {length}: {time.perf_counter() - t0:.1f} s; p50 "
            + ", ".join(f"{k} {1e3 * sorted(v)[len(v) // 2]:.1f} ms" for k, v in times.items() if v))
    return rows


def flops_check(model, cfg, manifest, batch: int, length: int) -> dict:
    """Formula vs torch FlopCounterMode on the eager model at one shape."""
    import torch

    feeds = make_feeds(cfg, manifest, batch, length)
    measured, per_op = measured_flops(model, {k: torch.from_numpy(v) for k, v in feeds.items()})
    formula = model_flops(cfg, batch, length)
    return {"batch": batch, "length": length, "formula": formula.total, "measured": measured,
            "rel_diff": (formula.total - measured) / measured if measured else None,
            "formula_parts": formula.parts, "measured_per_op": per_op,
            "note": "FlopCounterMode counts matmul/conv/attention products; its CPU attention kernel "
                    "(_scaled_dot_product_flash_attention_for_cpu) is registered by flops.measured_flops"}


def _gemm(threads: int, quick: bool) -> dict:
    n = 1024 if quick else 2048
    return {"fp32": gemm_rate(threads, n=n, reps=5), "bf16": gemm_rate(threads, n=n, reps=5, dtype="bfloat16"),
            INT8_GEMM: int8_gemm_rate(threads, n=n, reps=5)}


def _combine_gemm(before: dict, after: dict) -> dict:
    """Each dtype's rate over the calls before and after the sweep (an INT8 rate that could not be measured
    keeps its ``error`` and has no ``rate``)."""
    import numpy as np

    out = {}
    for dtype, b in before.items():
        a = after[dtype]
        extra = {k: v for k, v in b.items() if k not in ("median_flops", "best_flops", "seconds", "reps")}
        if "seconds" not in b or "seconds" not in a:
            out[dtype] = {**extra, "rate": None, "error": b.get("error") or a.get("error")}
            continue
        secs = b["seconds"] + a["seconds"]
        n = b["n"]
        out[dtype] = {**extra, "rate": 2.0 * n ** 3 / float(np.median(secs)), "best": 2.0 * n ** 3 / min(secs),
                      "before": b["median_flops"], "after": a["median_flops"], "seconds": secs}
    return out


def run(args: argparse.Namespace, argv: list[str]) -> dict:
    """The whole benchmark; returns the result dict (also written to JSON/PNG)."""
    import torch

    started = _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat()
    t_start = time.perf_counter()
    threads = run_threads(args)
    torch.set_num_threads(threads)
    try:
        torch.set_num_interop_threads(1)
    except RuntimeError:
        pass
    grid_name, batches, lengths, budget = settings_of(args)
    machine = machine_info(threads)
    cpu_load = CpuLoad()

    folder = args.bundle or ensure_bundle(args.preset, args.cache or REPO / "bundles" / args.preset, args.rebuild)
    folder = Path(folder)
    manifest = bk.read_bundle(folder)
    cfg = bk.model_config(manifest)
    preset_name = manifest.model.preset if "preset" in manifest.model.read_keys else cfg.preset
    max_len = int(manifest.limits.max_length or cfg.max_length)
    bad = [L for L in lengths if L > min(max_len, cfg.max_length) or L < 12]
    if bad:
        raise SystemExit(f"error: --length {bad}: must be in 12..{min(max_len, cfg.max_length)} for this bundle")
    cells = [(b, L) for b in batches for L in lengths]
    served = run_served(args, folder, manifest) if SERVED in args.modes else None
    if not grid_modes(args):
        return served_only(args, argv, started, t_start, machine, cpu_load, folder, manifest, served)
    keys, skipped = backend_keys(folder, manifest, args)
    loader = bk.Loader(folder, manifest, threads)
    eager_model = loader.eager()

    log(f"[flops] formula vs FlopCounterMode at batch 1 x length {min(lengths)} ...")
    check = flops_check(eager_model, cfg, manifest, 1, min(lengths))
    log(f"[gemm] measuring the fp32 / bf16 / INT8 GEMM rates with {threads} threads ...")
    gemm_before = _gemm(threads, args.grid == "quick")

    image_wh = (160, 120) if args.quick and not args.image_size else (500, 375)
    if args.image_size:
        w, h = (int(v) for v in args.image_size.lower().split("x"))
        image_wh = (w, h)
    gemm_n = 1024 if args.grid == "quick" else 2048
    isolated = args.isolation == "process"
    ctx = {"cfg": cfg, "manifest": manifest, "image_wh": image_wh, "gemm_cells": {}, "int8_cells": {},
           "gemm_probe": isolated_probe("fp32", gemm_n, threads) if isolated else GemmProbe(gemm_n), "int8_probe": None,
           "crop_wh": (max(image_wh[0] // 3, 1), max(image_wh[1] // 3, 1))}
    isolation = ({"cells": cells, "image_wh": image_wh, "crop_wh": ctx["crop_wh"], "modes": grid_modes(args)}
                 if isolated else None)
    if any(is_int8(bk.precision_of(k)) for k in keys):
        try:
            ctx["int8_probe"] = isolated_probe("int8", gemm_n, threads) if isolated else Int8GemmProbe(gemm_n, threads)
        except BackendUnavailable as exc:
            log(f"[gemm] no INT8 GEMM rate in the cells: {exc}")
    backends: dict = {}
    memory: dict = {}
    evicted: dict = {}  # key -> the files its memory probe loads cold (memprobe.evict_for_probe)
    big = (max(batches), max(lengths))
    if not args.no_memory:
        for key in keys:
            if key == bk.COMPILE:  # a fresh process would compile first: its peak would be the compiler's
                memory[key] = {"key": key, "error": "not probed: a fresh process would compile the model before "
                                                    "running it (the peak would be the compiler's)"}
                continue
            log(f"[memory] {key}: fresh process, its files evicted from the page cache, load + 1 run at batch "
                f"{big[0]} x length {big[1]} ...")
            evicted[key] = memprobe.evict_for_probe(folder, bk.graph_file(key))
            mem = memprobe.run_probe(key, folder, big[0], big[1], threads)
            if mem.get("peak_rss_mb") is not None and mem.get("rss_after_imports_mb") is not None:
                mem["delta_mb"] = mem["peak_rss_mb"] - mem["rss_after_imports_mb"]
            memory[key] = mem
    need = {k: (memory.get(k) or {}).get("delta_mb") or 6.0 * bk.file_bytes(folder, bk.graph_file(k)) / 2**20
            for k in keys}
    available_mb = memprobe.mem_available_mb()
    budget_mb = args.memory_budget or (0.8 * available_mb if available_mb else None)
    groups = memprobe.plan_groups(keys, need, budget_mb)
    if len(groups) > 1:
        log(f"[memory] the backends need ~{sum(need.values()):.0f} MiB together, the budget is {budget_mb:.0f} MiB: "
            f"{len(groups)} groups, each interleaved with its own eager runs: {groups}")
    raw: list[dict] = []
    for mode in grid_modes(args):
        if mode == "e2e":
            ctx["pipeline"] = loader.pipeline()
            ctx["words"] = single_piece_words(ctx["pipeline"].preprocessor.text.tokenizer)
        for g, group in enumerate(groups):
            runners = load_runners(loader, group, mode, skipped, backends, isolation)
            loaded = list(runners)  # measure_mode drops (and closes) a runner whose first call fails
            raw += measure_mode(mode, runners, cells, budget, skipped, ctx, group=g)
            for r in loaded:
                if r.report is not None:  # torch.compile's first calls (and its error, if it failed)
                    backends[r.key].update(r.report())
            for r in runners:  # free the sessions before the next group opens its own
                r.close()
            del loaded
            del runners
            gc.collect()
    for worker in (isolation or {}).get("workers", {}).values():
        worker.close()
    for probe in (ctx["gemm_probe"], ctx["int8_probe"]):
        if probe is not None and hasattr(probe, "close"):
            probe.close()
    gemm_after = _gemm(threads, args.grid == "quick")
    gemm = _combine_gemm(gemm_before, gemm_after)
    gemm["per_cell"] = ctx["gemm_cells"]
    gemm["per_cell_int8"] = ctx["int8_cells"]
    results = summarize(raw, cfg, gemm["fp32"]["rate"], ctx["gemm_cells"], gemm_int8=gemm[INT8_GEMM].get("rate"),
                        int8_cells=ctx["int8_cells"])

    for key, entry in backends.items():
        entry["parity"] = parity_of(manifest, entry.get("graph"))
        if key in memory:
            entry["memory"] = memory[key]
    machine["cpu_use_during_run"] = cpu_load.others()
    machine["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    result = {
        "schema": "dfma-latency/1",
        "command": "python benchmarks/latency.py" + ("" if not argv else " " + shlex.join(argv)),
        "started": started,
        "machine": machine,
        "bundle": {"path": str(folder), "preset": preset_name, "source": manifest.model.source,
                   "checkpoint": manifest.model.checkpoint,
                   "bytes": manifest.total_bytes,
                   "graphs": {k: g.file for k, g in manifest.graphs.items()},
                   "eager_weights": loader.eager_note},
        "settings": {"threads": threads, "grid": grid_name, "batches": list(batches), "lengths": list(lengths),
                     "modes": list(args.modes), "budget": budget.to_dict(), "image_wh": list(image_wh),
                     "isolation": args.isolation,
                     "crop_wh": list(ctx["crop_wh"]), "backends": keys,
                     "memory": f"peak RSS (VmHWM) of a fresh process that loads one backend and runs the largest "
                               f"cell ({big[0]}x{big[1]}) once, model only; delta = peak minus RSS after imports",
                     "memory_budget_mb": budget_mb, "groups": groups},
        "flops": {"formula": FORMULA, "check": check,
                  "per_cell": {f"{b}x{L}": model_flops(cfg, b, L).to_dict() for b, L in cells}},
        "gemm": gemm,
        "backends": backends,
        "skipped": skipped,
        "results": results,
    }
    if memory:
        result["load"] = memprobe.grid_load_rows(memory, evicted, backends)
    result["targets"] = evaluate_targets(results, backends)
    if served is not None:
        result["served"] = served
        result["targets"] += served["targets"]
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    return result


def run_served(args: argparse.Namespace, folder: Path, manifest: Manifest) -> dict:
    """The served rows (benchmarks/served.py): MNRE traffic through dfma.runtime, one worker per contender;
    their speed-ups, the INT8 issue's targets and the consistency check against the bundle's ``auto``."""
    from dfma.benchmarks import served as sv

    wanted = [k.strip() for k in args.served_backends.split(",")] if args.served_backends else None
    # threads: as served, i.e. load()'s default (None: the runtime's own choice) unless --threads is given; the
    # precision step's timing (dfma.timing.batch1_latency) leaves them to the runtime too
    rows, info, skipped = sv.measure(folder, manifest, args.workloads, count=args.calls, repeats=args.repeats,
                                     threads=args.threads, data=str(args.data) if args.data else None, wanted=wanted,
                                     log=log)
    rows = sv.speedups(rows)
    guard = {k: parity_of(manifest, (v.get("graph") or "")).get("guard_passed") for k, v in info.items()}
    out = {"workloads": args.workloads, "calls": args.calls, "repeats": args.repeats, "threads": args.threads,
           "source": sv.source_of(
               str(args.data) if args.data else None), "statistic": STAT, "contenders": info, "skipped": skipped,
           "rows": rows, "targets": sv.targets(rows), "consistency": sv.consistency(rows, manifest, guard)}
    if args.load_table:  # after the timed calls (their workers are closed): fresh processes, one row at a time
        out["load"] = run_load_table(args, folder, manifest, wanted, info)
    return out


def run_load_table(args: argparse.Namespace, folder: Path, manifest: Manifest, wanted: list[str] | None,
                   info: Mapping[str, Mapping]) -> dict:
    """The load table of the served rows that go through ``dfma.runtime.load`` (benchmarks/memory.py), with the
    graph files each row's worker opened (``info``)."""
    from dfma.benchmarks import served as sv

    specs, _ = sv.contenders(folder, manifest, wanted)
    rows = {label: kwargs for label, (factory, kwargs) in specs.items() if factory.endswith(":served")}
    graphs = {k: list(v["files"]) for k, v in info.items() if k in rows and v.get("files")}
    table = memprobe.load_table(folder, rows, threads=args.threads, data=str(args.data) if args.data else None, log=log,
                                graphs=graphs)
    table["not_loaded"] = {label: "eager PyTorch: not loaded through dfma.runtime.load (no bundle graph files)"
                           for label, (factory, _) in specs.items() if not factory.endswith(":served")}
    return table


def served_only(args, argv, started, t_start, machine, cpu_load, folder: Path, manifest: Manifest, served: dict) -> dict:
    """The result of a run of the served rows alone (``--modes served``: what `make demo` runs)."""
    machine["cpu_use_during_run"] = cpu_load.others()
    machine["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
    return {"schema": "dfma-latency/1",
            "command": "python benchmarks/latency.py" + ("" if not argv else " " + shlex.join(argv)),
            "started": started, "machine": machine,
            "bundle": {"path": str(folder), "preset": manifest.model.preset, "source": manifest.model.source,
                       "checkpoint": manifest.model.checkpoint, "bytes": manifest.total_bytes},
            "settings": {"threads": machine.get("threads"), "grid": None, "modes": list(args.modes), "batches": [],
                         "lengths": []},
            "backends": {}, "skipped": {}, "results": [], "served": served, "targets": served["targets"],
            "seconds": round(time.perf_counter() - t_start, 1)}


def main(argv: list[str] | None = None) -> int:
    """Run, print the tables, write JSON and PNG; exit 0 (targets are shown, not asserted)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse_args(argv)
    log(expected_duration(args))
    result = run(args, argv)
    preset_name = result["bundle"]["preset"]
    out = args.out or (REPO / "benchmarks" / "results" if result["settings"]["grid"] == "full"
                       else REPO / "runs" / "benchmarks")
    stem = args.name or f"latency-{preset_name}-{result['settings']['grid'] or SERVED}"
    json_path, png_path = Path(out) / f"{stem}.json", Path(out) / f"{stem}.png"
    result["outputs"] = {"json": str(json_path), "png": str(png_path)}
    report.plot(result, png_path)
    report.write_json(result, json_path)
    print(report.render_text(result))
    print(f"\nwrote {json_path} and {png_path} ({result['seconds']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
