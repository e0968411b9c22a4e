"""How long a run of ``python benchmarks/latency.py`` will take, printed before it starts: its plan
(:func:`plan_run`: cells, modes, budget, backends, memory groups, memory probes, torch.compile, export) priced
by a cost model (:func:`estimate`) whose constants are timings of this project's 2-core machines."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from dfma.benchmarks import backends as bk
from dfma.benchmarks.environment import PRECISION_GRAPHS, REPO, cache_matches
from dfma.benchmarks.timing import Budget

from dfma.benchmarks.gemm_int8 import DTYPE as INT8_GEMM
from dfma.contract.graphs import CATALOGUE, FP16, FP32, INT8, INT8_DYNAMIC
#
# What the run prints before it starts: its expected duration, computed from its plan (plan_run: cells,
# modes, budget, backends, memory groups, memory probes, torch.compile, export) with the cost model of
# estimate(). The model's constants are timings of this project's 2-core machines, quiet, 2 threads
# (benchmarks/RESULTS.md Run E and the no-argument run of 2026-12-01 on an Intel Xeon with AMX, Run A on
# AMD EPYC Zen 4, the --quick runs of tests/benchmarks/test_benchmark.py); a loaded machine takes longer.

# effective GFLOP/s of one call at 2 threads (base preset, x86-amx, the lower of batch 1 and batch 8 x
# length 80; Run E p50s in ms at 1x80 / 8x80 in the comments); a row not listed gets DEFAULT_GFLOPS
CALL_GFLOPS = {
    ("eager", "fp32"): 85.0,  # 438 / 4844
    ("eager", "bf16"): 145.0,  # 349 / 2619 (native bf16)
    ("compile", "fp32"): 145.0,  # 338 / 2758
    ("onnxruntime", "fp32"): 175.0,  # fused 276 / 2047, portable 282
    ("onnxruntime", FP16): 155.0,  # 322 (1x80, no-argument run)
    ("onnxruntime", INT8): 330.0,  # 154 / 881
    ("onnxruntime", INT8_DYNAMIC): 205.0,  # 241 / 1594
    ("openvino", "fp32"): 172.0,  # 287 / 2047
    ("openvino", FP16): 172.0,  # 261 (1x80)
    ("openvino", INT8): 575.0,  # 86 / 568
    ("tensorrt", "fp32"): 2000.0,
}
DEFAULT_GFLOPS = 150.0
# INT8 rows on CPUs without AMX, relative to the rates above (Zen 4 with VNNI, Run A: static INT8 244 / 1853 ms,
# dynamic 234 / 1820 ms; Zen 3 with AVX2 only: 352 and 345 ms at 1x80)
OTHER_INT8 = {INT8: 0.55, INT8_DYNAMIC: 0.7}
BF16_EMULATED_GFLOPS = 4.5  # eager bf16 without AVX512_BF16 or AMX: ~11 s per 1x80 call (Zen 3)
CALL_OVERHEAD_S = {"eager": 0.012, "compile": 0.006, "onnxruntime": 0.003, "openvino": 0.009, "tensorrt": 0.002}
E2E_SAMPLE_S = 0.004  # preprocessing per request (JPEG decode, crops, tokenizing: e2e - model rows of --quick)
# keyed by GEMM data type (benchmarks/gemm_int8.py measures the int8 one), not by graph
GEMM_GFLOPS = {"fp32": 250.0, "bf16": 700.0, "bf16-emulated": 2.5, INT8_GEMM: 1000.0, "int8-no-amx": 300.0}
UNEVEN_CALL_S = 1.0  # cells whose calls average below this were measured 3 times in most quiet runs under the
#                      former rule (p50 / fastest > 1.25: a backend's own bimodal calls tripped it); kept as the
#                      cautious estimate until quiet runs with the p90 / p50 rule of benchmarks/disturbance.py
FIRST_CALL = 1.3  # a fresh process's first call, relative to a warm one (memory probes)
PROBE_START_S = {"eager": 5.0, "other": 2.0}  # process start and imports of a memory probe (8x80 probes timed
#                 while another job used one core: eager-fp32 15.0 s, ort-fused 6.3 s, openvino-int8 6.3 s, with
#                 their loads and calls)
GRAPH_SCAN_BPS = 1.2e9  # load_files: an inline graph scanned for external-data keys (MiniLM 100 MB: 0.084 s, loaded)
LOAD_PROBE_START_S = 1.0  # a load-table process's start and imports (onnxruntime, dfma.runtime; tiny bundle ~1 s)
SETUP_S = 8.0  # interpreter, imports of torch / onnxruntime / openvino, the plot and the JSON
# torch.compile's compiling, once per batch-size class, cold inductor cache (base: 1x32 204.8 s in the
# no-argument run, 8x80 249 s in Run E; 103 s for batch 1 once the cache was warm)
COMPILE_CLASS_S = {"batch 1": 205.0, "batch > 1": 250.0}
# export/to_onnx.py and export/to_precision.py when the cached bundle is missing or stale (base: 96 s and
# 531 s in Run E, other jobs running during the second)
EXPORT_S = {"base": (100.0, 530.0), "tiny": (15.0, 45.0)}
EXPORT_OTHER_S = (300.0, 600.0)
# a memory probe's peak minus its RSS after imports, beyond the graph's weights, per GFLOP of the probed cell
# (base 8x80, 396 GFLOP: ort-fused 990 MiB for a 567 MB graph, openvino-int8 885 for 184 MB, eager 1017)
PROBE_MB_PER_GFLOP = 1.1
SIZE_RATIO = {FP32: 1.0, FP16: 0.5, INT8: 0.33, INT8_DYNAMIC: 0.47}  # graph bytes / fp32 graph bytes
EXPECTED_ATTEMPTS = 3  # 1 + disturbance.RERUNS: a cell measured again twice
# served rows (benchmarks/served.py): a worker's start (interpreter, imports, dfma.runtime.load or the eager
# model), MNRE sentences' mean length in word pieces, markers included, and the mean pairs per post
WORKER_START_S = {"eager": 6.0, "other": 3.0}
GRID_WORKER_START_S = {"eager": 4.0, "other": 1.5}  # a grid backend's worker: interpreter and imports (its load apart)
SERVED_LENGTH, SERVED_POST_BATCH = 48, 2


@dataclass
class Plan:
    """What a run will do, as far as its duration goes (:func:`plan_run`)."""

    preset: str
    grid: str
    cfg: object
    cells: list[tuple[int, int]]
    modes: list[str]
    budget: Budget
    keys: list[str]
    groups: list[list[str]]
    memory: bool
    threads: int = 2
    sizes: dict[str, int] = field(default_factory=dict)  # contender -> bytes of the graph it loads
    fp32_bytes: int = 0  # the fp32 graph (the eager model's weights are as large)
    model: str = ""  # what the bundle holds, as the duration line names it (a checkpoint, or a preset)
    bundle_bytes: int = 0  # every bundle file (dfma.runtime.load hashes them all in e2e loads)
    cpu_class: str = "x86-amx"
    bf16_emulated: bool = False
    gemm_n: int = 2048
    export: bool = False  # export/to_onnx.py runs first
    precision: bool = False  # export/to_precision.py runs first
    compile_would_add: float | None = None  # seconds --compile would add (filled in by expected_duration)
    served: tuple = ()  # (workloads, calls, repeats, contender keys) of the served rows; () without them
    isolated: bool = False  # the grid's backends in worker processes (--isolation process)
    load_table: bool = False  # the served rows' load table (--load-table): 3 fresh processes per runtime row


def family_of(key: str) -> str:
    """eager, compile, onnxruntime, openvino or tensorrt."""
    if key == bk.COMPILE:
        return "compile"
    if key in bk.EAGER_KEYS:
        return "eager"
    if key.startswith("trt-"):
        return "tensorrt"
    return "openvino" if key.startswith("openvino") else "onnxruntime"


def call_seconds(plan: Plan, key: str, batch: int, length: int, mode: str = "model") -> float:
    """Expected seconds of one warm call of ``key`` at ``batch x length`` in ``mode``."""
    from dfma.benchmarks.flops import model_flops

    fam, precision = family_of(key), bk.precision_of(key)
    rate = CALL_GFLOPS.get((fam, precision), DEFAULT_GFLOPS)
    if fam == "eager" and precision == "bf16" and plan.bf16_emulated:
        rate = BF16_EMULATED_GFLOPS
    elif precision in OTHER_INT8 and plan.cpu_class != "x86-amx" and fam != "tensorrt":
        rate *= OTHER_INT8[precision]
    speed = max(plan.threads, 1) / 2 if fam != "tensorrt" else 1.0
    seconds = CALL_OVERHEAD_S.get(fam, 0.005) + model_flops(plan.cfg, batch, length).total / (rate * 1e9 * speed)
    return seconds + (E2E_SAMPLE_S * batch if mode == "e2e" else 0.0)


def load_seconds(plan: Plan, key: str, mode: str) -> float:
    """Expected seconds to open ``key`` in ``mode`` (eager rows share one model: counted in setup)."""
    fam = family_of(key)
    if fam in ("eager", "compile"):
        return 0.0
    mb = plan.sizes.get(key, 0) / 1e6
    model = {"onnxruntime": 0.3 + mb / 600, "openvino": 1.5 + mb / 400}.get(fam, 2.0 + mb / 300)
    return model if mode == "model" else 2 * model + plan.bundle_bytes / 1e9  # e2e: load() hashes every file


def _gemm_seconds(plan: Plan) -> float:
    """The fp32 / bf16 / INT8 GEMM rates, measured before and after the sweep (6 calls each)."""
    speed = max(plan.threads, 1) / 2
    flops = 2.0 * plan.gemm_n ** 3
    rates = (GEMM_GFLOPS["fp32"], GEMM_GFLOPS["bf16-emulated" if plan.bf16_emulated else "bf16"],
             GEMM_GFLOPS[INT8_GEMM if plan.cpu_class == "x86-amx" else "int8-no-amx"])
    return 2 * sum(6 * flops / (r * 1e9 * speed) + 0.3 for r in rates)


def _probe_seconds(plan: Plan, n_int8: bool) -> float:
    """One round's GEMM probes (fp32 always, INT8 when the group has an INT8 row)."""
    speed = max(plan.threads, 1) / 2
    flops = 2.0 * plan.gemm_n ** 3
    out = flops / (GEMM_GFLOPS["fp32"] * 1e9 * speed) + plan.budget.gap_s
    if n_int8:
        rate = GEMM_GFLOPS[INT8_GEMM if plan.cpu_class == "x86-amx" else "int8-no-amx"]
        out += flops / (rate * 1e9 * speed) + plan.budget.gap_s
    return out


def estimate(plan: Plan) -> dict[str, float]:
    """Expected seconds of each part of the run: ``export``, ``precision`` (the precision graphs), ``setup``
    (imports, eager model, FLOP check, GEMM rates, report), ``memory`` (probes), ``loads``, ``compile``
    (torch.compile's untimed first calls), ``cells`` (the timed rounds, warm-ups included, with the usual
    re-measurements), ``cells_max`` (every cell measured 3 times); ``total`` and ``max``."""
    from dfma.benchmarks.analysis import is_int8
    from dfma.benchmarks.latency_options import cell_budget

    export, precision = EXPORT_S.get(plan.preset, EXPORT_OTHER_S)
    parts = {"export": export if plan.export else 0.0, "precision": precision if plan.precision else 0.0}
    eager_build = 0.2 + plan.fp32_bytes / 350e6
    small = (1, min(L for _, L in plan.cells))
    parts["setup"] = SETUP_S + eager_build + _gemm_seconds(plan) + 1.5 * call_seconds(plan, bk.EAGER, *small)
    big = (max(b for b, _ in plan.cells), max(L for _, L in plan.cells))
    parts["memory"] = 0.0
    if plan.memory:
        for key in plan.keys:
            if key == bk.COMPILE:  # not probed (a fresh process would compile first)
                continue
            fam = family_of(key)
            start = PROBE_START_S["eager" if fam == "eager" else "other"]
            load = eager_build if fam == "eager" else load_seconds(plan, key, "model")
            parts["memory"] += start + load + FIRST_CALL * call_seconds(plan, key, *big)
        # the load table's bytes: each graph file scanned once for external data references (load_files.py)
        graphs = {bk.graph_file(k): plan.sizes.get(k, 0) for k in plan.keys if bk.graph_file(k)}
        parts["memory"] += sum(graphs.values()) / GRAPH_SCAN_BPS
    grid = [m for m in plan.modes if m in bk.MODES]
    parts["served"], served_max = served_seconds(plan)
    parts["load_table"] = load_table_seconds(plan)
    if not grid:  # served rows only: no GEMM rates, FLOP check nor memory probes
        parts["setup"], parts["memory"] = SETUP_S, 0.0
    parts["loads"] = sum(load_seconds(plan, k, m) for m in grid for g in plan.groups for k in g)
    if plan.isolated:  # every grid backend in its own worker process, started per mode and group
        parts["loads"] += sum(GRID_WORKER_START_S["eager" if family_of(k) in ("eager", "compile") else "other"]
                              for m in grid for g in plan.groups for k in g)
    classes = {"batch 1" if b == 1 else "batch > 1" for b, _ in plan.cells}
    parts["compile"] = sum(COMPILE_CLASS_S[c] for c in classes) if bk.COMPILE in plan.keys else 0.0
    cells = cells_max = 0.0
    for mode in grid:
        for group in plan.groups:
            for batch, length in plan.cells:
                calls = [call_seconds(plan, k, batch, length, mode) for k in group]
                round_s = sum(calls) + plan.budget.gap_s * len(calls) + _probe_seconds(
                    plan, any(is_int8(bk.precision_of(k)) for k in group))
                budget = cell_budget(plan.budget, batch)
                reps = min(budget.max_reps, max(budget.min_reps, math.ceil(budget.budget_s / round_s)))
                attempt = (budget.warmup + reps) * round_s
                cells += attempt * (EXPECTED_ATTEMPTS if sum(calls) / len(calls) < UNEVEN_CALL_S else 1)
                cells_max += attempt * EXPECTED_ATTEMPTS
    parts["cells"], parts["cells_max"] = cells, cells_max
    fixed = sum(v for k, v in parts.items() if k not in ("cells", "cells_max"))  # served included
    parts["total"], parts["max"] = fixed + cells, fixed + cells_max - parts["served"] + served_max
    return parts


def served_seconds(plan: Plan) -> tuple[float, float]:
    """The served rows: worker starts, then every contender's calls (warm-up and repeats) of each workload,
    text-only workloads without the vision part's FLOPs. ``(expected, at most)``: a quiet machine measures each
    workload once (the disturbance rule no longer trips on a backend's own bimodal calls), at most 3 times."""
    from dfma.benchmarks.flops import model_flops

    if not plan.served:
        return 0.0, 0.0
    workloads, calls, repeats, keys = plan.served
    starts = sum(WORKER_START_S["eager" if family_of(k) == "eager" else "other"] for k in keys)
    timed = 0.0
    for w in workloads:
        batch = {"b1": 1, "b8": 8}.get(w, SERVED_POST_BATCH)
        flops = model_flops(plan.cfg, batch, SERVED_LENGTH)
        share = 1.0 if w == "post" else 1.0 - flops.parts.get("vision", 0.0) / flops.total
        timed += (calls * repeats + 2) * sum(call_seconds(plan, k, batch, SERVED_LENGTH, "e2e") * share for k in keys)
    return starts + timed, starts + EXPECTED_ATTEMPTS * timed


def load_table_seconds(plan: Plan) -> float:
    """The load table (benchmarks/memory.py: load_table): 2 fresh processes per served row that dfma.runtime.load
    serves (start and imports, the load, one batch-1 call; tiny bundle: 5.6 s for 2 rows on a loaded machine),
    and its graphs scanned once for external data."""
    if not plan.load_table or not plan.served:
        return 0.0
    keys = [k for k in plan.served[3] if family_of(k) != "eager"]
    return sum(2 * (LOAD_PROBE_START_S + load_seconds(plan, k, "model")
                    + FIRST_CALL * call_seconds(plan, k, 1, SERVED_LENGTH, "e2e"))
               + plan.sizes.get(k, 0) / GRAPH_SCAN_BPS for k in keys)


def _fp32_bytes_of(cfg) -> int:
    """Bytes of the fp32 weights of a model of ``cfg`` (built on torch's meta device: no memory, no init)."""
    try:
        import torch

        from dfma.model import DFMAModel

        with torch.device("meta"):
            model = DFMAModel(cfg)
        return int(sum(p.numel() * 4 for p in model.parameters()))
    except Exception:  # noqa: BLE001  (only the estimate of load times and memory groups depends on it)
        return 500_000_000


def plan_run(args) -> Plan:
    """The plan of the run ``args`` asks for: its cells, modes, budget, the backends it will time (from the
    bundle, or those the export will write when it is missing), memory groups, probes, compile, export."""
    from dfma.benchmarks import memory as memprobe
    from dfma.benchmarks.flops import model_flops
    from dfma.benchmarks.isa import bf16_emulated
    from dfma.benchmarks.latency_options import (
        backend_keys,
        run_threads,
        settings_of,
        wanted_backends,
    )

    from dfma.config import preset
    from dfma.host import host_info

    grid, batches, lengths, budget = settings_of(args)
    folder = Path(args.bundle) if args.bundle is not None else Path(args.cache or REPO / "bundles" / args.preset)
    export = precision = False
    manifest = None
    if args.bundle is None:
        export = bool(args.rebuild or not folder.exists() or cache_matches(folder, args.preset))
    if not export:
        manifest = bk.read_bundle(folder)
        tool = REPO / "export" / "to_precision.py"
        precision = args.bundle is None and tool.is_file() and not all(
            g in manifest.files for g in PRECISION_GRAPHS)
    elif (REPO / "export" / "to_precision.py").is_file():
        precision = True
    model_label = ""
    if manifest is not None:
        cfg = bk.model_config(manifest)
        preset_name = manifest.model.preset or getattr(cfg, "preset", args.preset)
        if manifest.model.checkpoint:
            model_label = f"checkpoint {Path(manifest.model.checkpoint).name} ({preset_name} preset)"
        keys, _ = backend_keys(folder, manifest, args)
        sizes = {k: bk.file_bytes(folder, bk.graph_file(k)) for k in keys}
        fp32 = bk.file_bytes(folder, CATALOGUE["portable"].file)
        bundle_bytes = manifest.total_bytes
    else:
        cfg, preset_name, keys, sizes = preset(args.preset), args.preset, [], {}
        fp32 = _fp32_bytes_of(cfg)
        bundle_bytes = 0
    if manifest is None or precision:  # what the export and the precision step will write
        wanted = wanted_backends(args)
        graphs = [k for k in bk.GRAPHS if (not wanted and not CATALOGUE[bk.GRAPHS[k][1]].opt_in) or
                  (wanted and k in wanted)]  # opt-in rows (int8-smooth) are not built without their switch
        eager = [k for k in bk.EAGER_KEYS if (k != bk.COMPILE or args.compile) and (not wanted or k in wanted
                                                                                        or k == bk.EAGER)]
        keys = list(dict.fromkeys([*keys, *eager, *graphs]))
        for k in graphs:
            sizes.setdefault(k, int(fp32 * SIZE_RATIO.get(bk.precision_of(k), 1.0)))
        bundle_bytes = max(bundle_bytes, sum(sizes.values()) + fp32)
    big = (max(batches), max(lengths))
    if args.no_memory:  # what the run plans with when no probe measured a backend
        need = {k: 6.0 * sizes.get(k, 0) / 2**20 for k in keys}
    else:  # what the probes will measure, roughly: the weights plus activations growing with the cell's FLOPs
        act = PROBE_MB_PER_GFLOP * model_flops(cfg, *big).total / 1e9
        need = {k: 0.0 if k == bk.COMPILE else (sizes.get(k) or fp32) / 2**20 + act for k in keys}
    available_mb = memprobe.mem_available_mb()
    budget_mb = args.memory_budget or (0.8 * available_mb if available_mb else None)
    host = host_info()
    served = ()
    if "served" in args.modes:  # auto ~ the fastest INT8 graph, ort-fp32, each INT8 graph, eager
        int8 = [k for k in ("ort-int8", "ort-int8-dynamic") if k in keys] or ["ort-fused"]
        served = (list(args.workloads), args.calls, args.repeats, [int8[0], "ort-fused", *int8, bk.EAGER])
    return Plan(preset=preset_name, grid=grid, cfg=cfg, cells=[(b, L) for b in batches for L in lengths],
                modes=list(args.modes), budget=budget, keys=keys, groups=memprobe.plan_groups(keys, need, budget_mb),
                memory=not args.no_memory, threads=run_threads(args), sizes=sizes, fp32_bytes=fp32,
                bundle_bytes=bundle_bytes, cpu_class=host["class"], bf16_emulated=bf16_emulated(host),
                gemm_n=1024 if args.grid == "quick" else 2048, export=export, precision=precision, served=served,
                isolated=getattr(args, "isolation", "shared") == "process",
                load_table=bool(served) and getattr(args, "load_table", False), model=model_label)


def _minutes(seconds: float) -> str:
    m = seconds / 60
    return f"{m:.0f}" if m >= 10 else f"{m:.1f}"


def describe(plan: Plan, parts: Mapping[str, float]) -> str:
    """The expected-duration line of ``plan`` with its :func:`estimate` ``parts``."""
    batches = ",".join(str(b) for b in sorted({b for b, _ in plan.cells}))
    lengths = ",".join(str(L) for L in sorted({L for _, L in plan.cells}))
    groups = f"{len(plan.groups)} memory groups" if len(plan.groups) > 1 else "1 memory group"
    shown = [f"cells {_minutes(parts['cells'])}", f"loads {_minutes(parts['loads'])}"]
    if parts.get("served"):
        shown.insert(0, f"served rows {_minutes(parts['served'])} ({', '.join(plan.served[0])}: {plan.served[1]} calls "
                        f"x {plan.served[2]} repeats per contender)")
    if parts.get("load_table"):
        shown.append(f"load table {_minutes(parts['load_table'])}")
    if plan.memory:
        shown.append(f"memory probes {_minutes(parts['memory'])}")
    shown.append(f"setup {_minutes(parts['setup'])}")
    if parts["export"] or parts["precision"]:
        shown.insert(0, f"export {_minutes(parts['export'])} + precision graphs {_minutes(parts['precision'])} "
                        "(bundle missing, stale or --rebuild)" if parts["export"] else
                        f"precision graphs {_minutes(parts['precision'])} (the bundle lacks them)")
    if parts["compile"]:
        n = len({b == 1 for b, _ in plan.cells})
        shown.append(f"torch.compile to compile {_minutes(parts['compile'])} ({n} batch-size "
                     f"class{'es' if n > 1 else ''}, cold cache; less once inductor's cache is warm; --no-compile "
                     "leaves the row out)")
    elif plan.compile_would_add:
        shown.append(f"no torch.compile row (--compile adds ~{_minutes(plan.compile_would_add)} min)")
    most = (f" ({_minutes(parts['max'])} at most if every cell is measured again)"
            if parts["max"] > 1.05 * parts["total"] else "")
    return (f"expected duration: about {_minutes(parts['total'])} min{most}, longer on a loaded machine: "
            f"{plan.model or plan.preset + ' preset'}, grid {plan.grid} = batch {batches} x length {lengths}, modes {'+'.join(plan.modes)}, "
            f"{len(plan.keys)} backends in {groups}; minutes: {', '.join(shown)} (computed from this run's plan with "
            "timings of quiet 2-core runs)")


def expected_duration(args) -> str:
    """One line, printed before the run starts: how long it should take, from its plan."""
    try:
        plan = plan_run(args)
    except Exception as exc:  # noqa: BLE001  (the run itself reports a bad bundle or option)
        return f"expected duration: not estimated ({type(exc).__name__}: {exc})"
    parts = estimate(plan)
    if bk.COMPILE not in plan.keys and not args.backends:  # what the opt-in row would cost
        with_compile = Plan(**{**plan.__dict__, "keys": [*plan.keys, bk.COMPILE],
                               "groups": [[*plan.groups[0], bk.COMPILE], *plan.groups[1:]] if plan.groups else
                               [[bk.EAGER, bk.COMPILE]]})
        plan.compile_would_add = estimate(with_compile)["total"] - parts["total"]
    return describe(plan, parts)
