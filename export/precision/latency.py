"""Batch-1 latency of what ``precision="auto"`` may choose among, measured on the host of the precision step.

Candidates (:func:`candidates`): ONNX Runtime CPU on the fp32 graph it runs and on each graph built now by a
``timed`` recipe; every other CPU backend of the registry that is installed (OpenVINO) on the fp32 graph and
the first graph of each timed precision that it runs (``auto`` picks one only where it is measured faster
on the host of that CPU class). :func:`measure` times them interleaved
(:func:`~dfma.export.precision.accuracy_guard.latency_table`) and guards the other backends' entries.

Each candidate is timed as ``dfma.runtime.load()`` serves it (:func:`served_runner`): the graph's stage
graphs (vision + text sessions, not spinning) where the bundle has them, else the whole graph; on guard
sentences at their own lengths (no padding), ``latency_samples`` of them (64 on a small model: enough that
the ranking repeats run to run), each the fastest of 3 calls. The candidates are plain (backend, files)
rows, so a shared timing core (one worker process per candidate) can take them over.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from dfma.contract.errors import DFMAError
from dfma.contract.graphs import CATALOGUE, FP32, fp32_rows
from dfma.export.precision.context import CPU_BACKEND, open_runner

HOW = ("as load() serves it (stage graphs where the graph has one), batch 1 on guard sentences at their own "
       "lengths; per sentence the fastest of 3 runs, median over sentences; graphs interleaved")


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


def served_runner(ctx, backend: str, path: Path, stages: Mapping[str, Path] | None):
    """An open runner of what load() serves: the stage graphs on ``stages`` (each session not spinning, as
    ``dfma.runtime.backend_choice`` builds it), else the whole graph at ``path``."""
    from dfma.backends.registry import backend as backend_row
    from dfma.backends.two_stage import TwoStage
    from dfma.contract.graphs import STAGES

    if not stages:
        return open_runner(path, backend)
    row, io = backend_row(backend), ctx.manifest.stages
    return TwoStage(*(row.build(stages[s], io=io.io(s), spinning=False) for s in STAGES), io=ctx.manifest.io).open()


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
    """``(latency, guard rows)``: batch-1 latency (ms) of every candidate on guard sentences, interleaved, and
    the guard rows of the other backends' entries (a graph a backend cannot compile is left out, with why)."""
    from dfma.export.precision import accuracy_guard as guard
    from dfma.host import host_info

    samples = guard.single_samples(ctx.data.guard, ctx.options.latency_samples)
    runners, where, rows, served = {}, {}, {}, {}
    for label, (backend, key, path) in candidates(ctx, outcomes).items():
        stages = stage_paths(ctx, key, outcomes.get(key))
        try:
            try:
                runners[label] = served_runner(ctx, backend, path, stages)
                served[label] = "two-stage" if stages else "whole"
            except DFMAError as exc:
                if not stages:
                    raise
                ctx.log(f"  {label}: its stage graphs does not load on {backend} ({exc}); timing the whole graph")
                runners[label], served[label] = open_runner(path, backend), "whole"
        except DFMAError as exc:
            ctx.log(f"  {label}: left out ({exc})")
            continue
        where[label] = (backend, key, path)
        if backend != CPU_BACKEND:
            rows[label] = ctx.evaluate(path, f"{label} ({backend})", backend)
    with ctx.steps.step(f"latency of {', '.join(runners)} (batch 1, {len(samples)} sentences, interleaved)"):
        ms = guard.latency_table(runners, samples)
    for key, value in ms.items():
        ctx.log(f"  {key:13s} {value:8.2f} ms")
    host = host_info()
    return {label: {"backend": where[label][0], "graph": where[label][1], "file": where[label][2].name,
                    "precision": CATALOGUE[where[label][1]].precision, "batch1_median_ms": value,
                    "samples": len(samples), "served": served[label], "host": host, "how": HOW}
            for label, value in ms.items()}, rows
