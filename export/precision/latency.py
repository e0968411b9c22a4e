"""Batch-1 latency of what ``precision="auto"`` may choose among, measured on the host of the precision step.

Candidates (:func:`candidates`): ONNX Runtime CPU on the fp32 graph it runs and on each graph built now by a
``timed`` recipe; every other CPU backend of the registry that is installed (OpenVINO) on the fp32 graph and
the first graph of each timed precision that it runs (``auto`` picks one only where it is measured faster
on the host of that CPU class). :func:`measure` times them and guards the other backends' entries.

Timing is the benchmark's (:func:`dfma.timing.batch1_latency`): each candidate in its own worker process, calls
interleaved one by one in a balanced order, each worker waiting out its own spinning pool before the next call,
per sentence the fastest of 3 calls, median over sentences. Each candidate is timed as ``dfma.runtime.load()``
serves it (:func:`served_on_feeds`): the graph's stage graphs (vision + text sessions, not spinning) with the
image features of each distinct image set computed once (the runtime's image cache), else the whole graph; on
the guard's **text-only** sentences at their own lengths (no padding), ``latency_samples`` of them: the
condition of the benchmark's batch-1 row (``benchmarks/latency.py``, workload ``b1``), so that the two rank
alike. (Timed with the guard's photographs instead, every call also ran the vision stage on new images: the
static INT8 graph's quantized convolutions then ranked it ahead of ``int8-dynamic``, the reverse of what text
traffic through the runtime showed.)
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from dfma.contract.errors import DFMAError
from dfma.contract.graphs import CATALOGUE, FP32, fp32_rows
from dfma.export.precision.context import CPU_BACKEND

HOW = ("as load() serves it (stage graphs where the graph has one, image features of each distinct image set "
       "once), batch 1 on text-only guard sentences at their own lengths; one worker process per candidate, calls "
       "interleaved, each worker's pool waited out; per sentence the fastest of 3 runs, median over sentences")
CONDITION = "text-only"


def stage_paths(ctx, key: str, outcome=None) -> dict[str, Path] | None:
    """``{stage: file}`` of graph ``key``'s stage graphs (a new graph's from its outcome, else the bundle's),
    or None where it has none (what load() then serves is the whole graph)."""
    from dfma.contract.graphs import STAGES

    if ctx.manifest.stages is None:
        return None
    if outcome is not None:
        stages = outcome.entry.get("stages")
    else:
        graph = ctx.manifest.graphs.get(key)
        stages = graph.stages.to_json() if graph is not None and graph.stages is not None else None
    if not isinstance(stages, Mapping):
        return None
    files = outcome.files if outcome is not None else {}
    try:
        return {s: Path(files.get(stages[s]["file"]) or ctx.bundle.path(stages[s]["file"])) for s in STAGES}
    except (KeyError, TypeError, DFMAError):
        return None


def served_on_feeds(backend: str, feeds: str, threads: int | None = None, path: str | None = None,
                    stages: Mapping[str, str] | None = None, io: Mapping | None = None,
                    stages_io: Mapping[str, Mapping] | None = None):
    """Factory of a :mod:`dfma.timing` worker: what load() serves, on saved batch-1 feeds. With ``stages``
    (``{stage: file}``, their ``stages_io`` and the whole contract's ``io``) the stage graphs, sessions not
    spinning, each distinct image set's features computed once and kept (as the runtime's image cache does);
    else the whole graph at ``path``."""
    from dfma.backends.registry import backend as backend_row
    from dfma.backends.two_stage import TwoStage
    from dfma.contract.graphs import STAGES
    from dfma.runtime.staged_run import image_digest
    from dfma.timing import Calls, graph_on_feeds, load_feeds

    why = None
    if stages:
        row, extra = backend_row(backend), ({"threads": threads} if threads else {})
        try:
            runner = TwoStage(*(row.build(Path(stages[s]), io=(stages_io or {}).get(s), spinning=False, **extra)
                                for s in STAGES), io=io).open()
        except DFMAError as exc:
            why = f"its stage graphs do not load on {backend} ({exc}): timing the whole graph"
    if not stages or why:
        calls = graph_on_feeds(backend, str(path), feeds, threads)
        calls.info.update(served="whole", why=why)
        return calls
    samples, memo = load_feeds(feeds), {}

    def call(i: int):
        feeds_i = samples[i]
        key = image_digest(feeds_i["pixel_values"][0], feeds_i["image_mask"][0])
        if key not in memo:
            memo[key] = runner.features(feeds_i)
        return runner.logits_with(feeds_i, memo[key])

    return Calls(len(samples), call, {"backend": backend, "served": "two-stage",
                                      "graph": " + ".join(Path(f).name for f in stages.values())}, runner.close)


def timing_spec(ctx, backend: str, path: Path, stages: Mapping[str, Path] | None) -> tuple[str, dict]:
    """The :func:`dfma.timing.batch1_latency` candidate of :func:`served_on_feeds` for one graph."""
    kwargs: dict = {"backend": backend, "path": str(path)}
    if stages:
        io = ctx.manifest.stages
        kwargs.update(stages={s: str(p) for s, p in stages.items()}, io=ctx.manifest.io.to_json(),
                      stages_io={s: io.io(s).to_json() for s in stages})
    return "dfma.export.precision.latency:served_on_feeds", kwargs


def candidates(ctx, outcomes: Mapping) -> dict[str, tuple[str, str, Path]]:
    """label -> (backend, graph key, whole-graph file) of every candidate (module doc); ``outcomes``: key ->
    Outcome."""
    from dfma.backends.registry import BACKENDS
    from dfma.contract.errors import BackendUnavailable

    graphs = ctx.manifest.graphs
    fp32_key = next(r.key for r in reversed(fp32_rows()) if r.key in graphs)  # the fused graph where there is one
    out = {FP32: (CPU_BACKEND, fp32_key, ctx.bundle.graph_path(fp32_key))}
    for key, outcome in outcomes.items():
        if outcome.timed:
            out[key] = (CPU_BACKEND, key, outcome.path)
    precisions = {FP32} | {CATALOGUE[k].precision for k, o in outcomes.items() if o.timed}
    new_files = {o.entry["file"]: o.path for o in outcomes.values()}
    for name, spec in BACKENDS.items():
        if name == CPU_BACKEND or spec.device != "cpu" or not spec.bundles:
            continue
        try:
            spec.check_available()
        except BackendUnavailable as exc:
            ctx.log(f"{name} not measured ({exc})")
            continue
        for key, row in CATALOGUE.items():
            path = new_files.get(row.file) or (ctx.bundle.graph_path(key) if key in graphs else None)
            if row.precision in precisions and spec.runs(row) and path is not None:
                out.setdefault(f"{name}-{row.precision}", (name, key, path))
    return out


def measure(ctx, outcomes: Mapping) -> tuple[dict, dict]:
    """``(latency, guard rows)``: batch-1 latency (ms) of every candidate on text-only guard sentences (module
    doc), and the guard rows of the other backends' entries (a graph a backend cannot compile is left out, with
    why)."""
    from dfma.export.precision import accuracy_guard as guard
    from dfma.export.precision.guard_sets import TEXT_ONLY
    from dfma.host import host_info
    from dfma.timing import WorkerError, batch1_latency

    samples = guard.single_samples(ctx.data.conditions[TEXT_ONLY], ctx.options.latency_samples)
    specs, where, rows = {}, {}, {}
    for label, (backend, key, path) in candidates(ctx, outcomes).items():
        try:
            if backend != CPU_BACKEND:  # a graph this backend cannot compile is left out here, with why
                rows[label] = ctx.evaluate(path, f"{label} ({backend})", backend)
        except DFMAError as exc:
            ctx.log(f"  {label}: left out ({exc})")
            continue
        specs[label], where[label] = timing_spec(ctx, backend, path, stage_paths(ctx, key, outcomes.get(key))), \
            (backend, key, path)
    info, errors = {}, {}
    with ctx.steps.step(f"latency of {', '.join(specs)} (batch 1, {len(samples)} text-only sentences, one worker "
                        "each, interleaved)"):
        ms = batch1_latency(specs, samples, info=info, errors=errors) if specs else {}
    for label, why in errors.items():
        ctx.log(f"  {label}: left out ({why})")
        rows.pop(label, None)
    for label, i in info.items():
        if i.get("why"):
            ctx.log(f"  {label}: {i['why']}")
    for key, value in ms.items():
        ctx.log(f"  {key:13s} {value:8.2f} ms")
    host = host_info()
    return {label: {"backend": where[label][0], "graph": where[label][1], "file": where[label][2].name,
                    "precision": CATALOGUE[where[label][1]].precision, "batch1_median_ms": value,
                    "samples": len(samples), "served": info[label].get("served", "whole"), "condition": CONDITION, "host": host,
                    "how": HOW}
            for label, value in ms.items()}, rows
