"""Which backend and graph run a bundle, and why (every candidate passed over leaves one line).

``backend="auto"`` walks the registry's auto chain (TensorRT engine > ONNX Runtime TensorRT / CUDA
providers > ONNX Runtime CPU). A backend outside the chain (OpenVINO) joins it, ahead of ONNX Runtime CPU,
only when the bundle's precision step measured it fastest on a host of this CPU class. ``precision="auto"``
on a CPU backend walks the bundle's ranked defaults (``manifest.defaults.auto``: every graph that met the
accuracy guard, fastest first, fp32 last), checking an INT8 graph on the golden set where this CPU is of
another class than the one it was measured on (``dfma.runtime.self_check``); on a GPU backend it is the
recorded GPU default, else fp32. A bundle slimmed for some CPU classes (``slimmed.cpu_classes``,
``export/slim_bundle.py``) refuses ``precision="auto"`` on a CPU backend of another class: one BundleError
naming the classes it serves (a precision asked for by name is still served).

``stages``: ``auto`` serves the chosen graph's stage graphs (``vision`` + ``text`` files of its manifest
entry, ``Manifest.stage_files``) when the bundle has one, built with the same registry row
as the whole graph, each stage checked against ``manifest.stages.<stage>``; else (a TensorRT engine, a graph
without them) the whole graph. ``two-stage`` requires the stage graphs (BundleError naming the
graph); ``whole`` always runs the whole graph.
"""
from __future__ import annotations

import dataclasses
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dfma.backends.registry import BACKENDS, BackendSpec, auto_chain, backend as backend_row
from dfma.backends.two_stage import TwoStage
from dfma.contract.bundle import Bundle
from dfma.contract.errors import BackendUnavailable, BundleError, InputError
from dfma.contract.graphs import AUTO, STAGES, GraphKind, precisions
from dfma.contract.manifest import GraphEntry, Manifest
from dfma.host import host_info, same_class
from dfma.runtime.api_guards import STAGE_MODES
from dfma.runtime.self_check import BATCH_DEPENDENT_NOTE, SELF_CHECK, auto_open

log = logging.getLogger("dfma.runtime")

BACKEND_NAMES = ("auto", "onnxruntime", *[n for n, r in BACKENDS.items() if r.bundles])
TWO_STAGE, WHOLE = "two-stage", "whole"


@dataclass
class Choice:
    """An opened runner, the graph it runs, and why it was chosen."""

    runner: Any
    backend: str
    graph: str
    precision: str
    precision_reason: str
    skipped: list[str] = field(default_factory=list)
    file: str = ""  # the whole graph's file (what the stage graphs were cut from, when two-stage)
    stage_files: dict[str, str] | None = None  # {"vision": file, "text": file} when the stage graphs run
    stages_reason: str = ""

    @property
    def stages(self) -> str:
        """``two-stage`` when the stage graphs run, else ``whole``."""
        return TWO_STAGE if self.stage_files else WHOLE


def _candidates(manifest: Manifest, backend: str) -> tuple[list[BackendSpec], list[str]]:
    if backend == "auto":
        chain, skipped = auto_chain(), []
        rec = manifest.recorded_default("cpu")
        row = BACKENDS.get(str(rec.backend if rec is not None else None))
        if row is not None and row.auto is None and row.bundles:  # a backend auto takes only where measured faster
            here, host = host_info(), rec.host or {}
            if same_class(rec.host, here):
                chain.insert(next(i for i, r in enumerate(chain) if r.name == "onnxruntime-cpu"), row)
            else:
                skipped.append(f"{row.name}: measured fastest on {host.get('class')} "
                               f"({host.get('cpu')}), not on this {here['class']} CPU")
        return chain, skipped
    if backend == "onnxruntime":
        return [r for r in auto_chain() if r.name.startswith("onnxruntime-")], []
    row = backend_row(backend)
    if not row.bundles:
        raise BackendUnavailable(f"backend {backend!r} does not run bundle graphs; choose one of {list(BACKEND_NAMES)}")
    return [row], []


def _stage_files_of(bundle: Bundle, key: str) -> tuple[dict[str, str] | None, str]:
    """``({stage: file}, "")`` of graph ``key``'s stage graphs, or ``(None, why there are none)``."""
    manifest = bundle.manifest
    entry = manifest.graph(key)
    if entry.is_engine:
        return None, f"{key}: a TensorRT engine has no stage graphs"
    files = manifest.stage_files(key)
    if files is None:
        return None, f"graph {key!r} ({entry.file}) has no stage graphs in the bundle (graphs.{key}.stages)"
    if manifest.stages is None or not manifest.stages.complete:
        return None, f"graph {key!r} has stage files but the manifest has no stages.vision / stages.text io"
    return files, ""


def _build_stages(bundle: Bundle, spec: BackendSpec, row: GraphKind, entry: GraphEntry, files: Mapping[str, str], *,
                  threads: int | None, device_id: int) -> TwoStage:
    """A :class:`TwoStage` of two runners of registry row ``spec`` on the stage files (not opened). ONNX
    Runtime's stage sessions do not spin between runs: with two thread pools on the same cores, the idle
    one's spinning cost the other a third of its speed (measured on base, 2 cores: a post of one entity pair 292 ms
    with spinning, 203 ms without)."""
    stages_io = bundle.manifest.stages
    runners = [spec.build(bundle.path(files[s]), io=stages_io.io(s), graph=dataclasses.replace(row, file=files[s]),
                          entry=entry, threads=threads, device_id=device_id, spinning=False) for s in STAGES]
    return TwoStage(*runners, io=bundle.manifest.io, graph=row)


def _open_graph(bundle: Bundle, spec: BackendSpec, key: str, row: GraphKind, stages: str, *, threads: int | None,
                device_id: int) -> tuple[Any, dict[str, str] | None, str]:
    """``(opened runner, stage files or None, stages reason)`` of one graph in the ``stages`` mode."""
    entry = bundle.manifest.graph(key)
    files, why = _stage_files_of(bundle, key) if stages != WHOLE else (None, "stages='whole' asked for")
    if stages == TWO_STAGE and files is None:
        raise BundleError(f"stages='two-stage': {why}; use stages='auto' or 'whole'", field=f"graphs.{key}.stages")
    if files is not None:
        try:
            staged = _build_stages(bundle, spec, row, entry, files, threads=threads, device_id=device_id)
            return staged.open(), dict(files), f"{stages}: the stage graphs of {entry.file}"
        except BundleError as e:
            if stages == TWO_STAGE:
                raise
            why = f"its stage graphs do not load ({e})"
            log.warning("dfma.runtime: %s: %s; serving the whole graph", spec.name, why)
    runner = spec.build(bundle.path(entry.file), io=bundle.manifest.io, graph=row, entry=entry,
                        threads=threads, device_id=device_id)
    reason = why if stages == WHOLE else f"auto: whole graph ({why})"
    return runner.open(), None, reason


def _open_on(bundle: Bundle, spec: BackendSpec, rows: Mapping[str, GraphKind], precision: str, *,
             threads: int | None, device_id: int, stages: str = "auto",
             opened: dict[str, tuple[dict[str, str] | None, str]] | None = None) -> tuple[Any, str]:
    """``(opened runner, graph key)`` of the best graph of ``precision`` that loads on ``spec``;
    ``opened[key]`` gets ``(stage files or None, stages reason)``."""
    spec.check_available()
    keys = spec.ordered(rows, precision)
    if not keys:
        have = sorted({r.precision for r in rows.values() if spec.runs(r)})
        if not have:
            raise BackendUnavailable(f"the bundle has no graph that {spec.name} runs"
                                     + (" (no TensorRT engine: engines/*.plan)" if spec.name == "tensorrt" else ""))
        raise BundleError(f"the bundle has no {precision} graph that {spec.name} runs (it has {have})")
    failures: list[BundleError] = []
    for key in keys:
        entry = bundle.manifest.graph(key)
        try:
            runner, files, reason = _open_graph(bundle, spec, key, rows[key], stages, threads=threads,
                                                device_id=device_id)
        except BundleError as e:
            failures.append(e)
            log.warning("dfma.runtime: %s cannot load %s (%s); trying the next graph", spec.name, entry.file, e)
            continue
        if opened is not None:
            opened[key] = (files, reason)
        return runner, key
    if len(failures) == 1 and str(failures[0].field or "").endswith(".stages"):
        raise failures[0]  # the one graph of that precision has no stage graphs: say so as it is
    raise BundleError(f"no {precision} graph loads on {spec.name}: " + "; ".join(map(str, failures)))


def open_backend(bundle: Bundle, *, backend: str = "auto", precision: str = AUTO, threads: int | None = None,
                 device_id: int = 0, self_check: str = "auto", stages: str = "auto",
                 allow_batch_dependent: bool = False) -> Choice:
    """Open the requested backend on the graph of the requested precision; returns the :class:`Choice`.

    ``stages`` (module doc): ``auto`` (the graph's stage graphs when it has them), ``two-stage`` or ``whole``.

    ``precision="auto"`` walks the bundle's ranked defaults with :func:`dfma.runtime.self_check.auto_open`
    (``self_check``: ``auto`` checks a graph on the golden set where this CPU is of another class than its
    guard host, ``always`` checks every non-fp32 graph, ``never`` trusts the record); it passes over a graph
    the precision step marked batch-dependent unless ``allow_batch_dependent`` (a precision asked for by name
    is served, with a warning in its reason).

    Raises BackendUnavailable (named backend unusable, or nothing usable) or BundleError (no graph of
    that precision, or none that loads).
    """
    if backend not in BACKEND_NAMES:
        raise BackendUnavailable(f"unknown backend {backend!r}; choose one of {list(BACKEND_NAMES)}")
    if precision != AUTO and precision not in precisions():
        raise BundleError(f"unknown precision {precision!r}; choose one of {[AUTO, *precisions()]}")
    if self_check not in SELF_CHECK:
        raise InputError(f"must be one of {list(SELF_CHECK)}, got {self_check!r}", field="self_check")
    if stages not in STAGE_MODES:
        raise InputError(f"must be one of {list(STAGE_MODES)}, got {stages!r}", field="stages")
    rows = bundle.manifest.present()
    candidates, skipped = _candidates(bundle.manifest, backend)
    opened: dict[str, tuple[dict[str, str] | None, str]] = {}
    for i, spec in enumerate(candidates):
        if precision == AUTO and spec.device == "cpu":  # a bundle slimmed for other CPU classes: say so, once
            bundle.manifest.check_serves(host_info()["class"])

        def open_precision(p: str, spec: BackendSpec = spec) -> tuple[Any, str]:
            return _open_on(bundle, spec, rows, p, threads=threads, device_id=device_id, stages=stages,
                            opened=opened)

        try:
            if precision == AUTO and spec.device == "cpu":
                runner, key, wanted, reason = auto_open(bundle, open_precision, spec.name, spec.device, self_check,
                                                        allow_batch_dependent)
            else:
                wanted, reason = bundle.manifest.resolve_precision(precision, spec.device, spec.name)
                runner, key = open_precision(wanted)
                if bundle.manifest.batch_dependent(key):
                    if precision == AUTO and not allow_batch_dependent:  # a recorded GPU default marked so
                        runner.close()
                        wanted, reason = "fp32", f"auto: {key} passed over: {BATCH_DEPENDENT_NOTE}; fp32"
                        runner, key = open_precision(wanted)
                    else:
                        reason = f"{reason}; warning: {key} is {BATCH_DEPENDENT_NOTE.split(';')[0]}"
                        log.warning("dfma.runtime: %s is batch-dependent: a request's answer may change with "
                                    "the other requests in its batch", key)
        except (BackendUnavailable, BundleError) as e:
            last = i == len(candidates) - 1
            if last or (isinstance(e, BundleError) and len(candidates) == 1):
                if skipped:
                    raise type(e)(f"{e} (also skipped: {'; '.join(skipped)})") from None
                raise
            skipped.append(f"{spec.name}: {e}")
            continue
        log.info("dfma.runtime: using %s (%s, %s)%s", spec.name, rows[key].file, wanted,
                 f"; skipped {'; '.join(skipped)}" if skipped else "")
        files, stages_reason = opened.get(key, (None, ""))
        return Choice(runner, spec.name, key, wanted, reason, skipped, file=rows[key].file, stage_files=files,
                      stages_reason=stages_reason)
    raise BackendUnavailable("no backend candidates")  # unreachable: the loop returns or raises
