"""Which backend and graph run a bundle, and why (every candidate passed over leaves one line).

``backend="auto"`` walks the registry's auto chain (TensorRT engine > ONNX Runtime TensorRT / CUDA
providers > ONNX Runtime CPU). A backend outside the chain (OpenVINO) joins it, ahead of ONNX Runtime CPU,
only when the bundle's precision step measured it fastest on a host of this CPU class. ``precision="auto"``
on a CPU backend walks the bundle's ranked defaults (``manifest.defaults.auto``: every graph that met the
accuracy guard, fastest first, fp32 last), checking an INT8 graph on the golden set where this CPU is of
another class than the one it was measured on (``dfma.runtime.self_check``); on a GPU backend it is the
recorded GPU default, else fp32.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dfma.backends.registry import BACKENDS, BackendSpec, auto_chain, backend as backend_row
from dfma.contract.bundle import Bundle
from dfma.contract.errors import BackendUnavailable, BundleError, InputError
from dfma.contract.graphs import AUTO, PRECISIONS, GraphKind, present, recorded_default, resolve_precision
from dfma.contract.host import host_info, same_class
from dfma.runtime.self_check import SELF_CHECK, auto_open

log = logging.getLogger("dfma.runtime")

BACKEND_NAMES = ("auto", "onnxruntime", *[n for n, r in BACKENDS.items() if r.bundles])


@dataclass
class Choice:
    """An opened runner, the graph it runs, and why it was chosen."""

    runner: Any
    backend: str
    graph: str
    precision: str
    precision_reason: str
    skipped: list[str] = field(default_factory=list)


def _candidates(manifest: Mapping, backend: str) -> tuple[list[BackendSpec], list[str]]:
    if backend == "auto":
        chain, skipped = auto_chain(), []
        rec = recorded_default(manifest, "cpu")
        row = BACKENDS.get(str((rec or {}).get("backend")))
        if row is not None and row.auto is None and row.bundles:  # a backend auto takes only where measured faster
            here = host_info()
            if same_class(rec.get("host"), here):
                chain.insert(next(i for i, r in enumerate(chain) if r.name == "onnxruntime-cpu"), row)
            else:
                skipped.append(f"{row.name}: measured fastest on {rec.get('host', {}).get('class')} "
                               f"({rec.get('host', {}).get('cpu')}), not on this {here['class']} CPU")
        return chain, skipped
    if backend == "onnxruntime":
        return [r for r in auto_chain() if r.name.startswith("onnxruntime-")], []
    row = backend_row(backend)
    if not row.bundles:
        raise BackendUnavailable(f"backend {backend!r} does not run bundle graphs; choose one of {list(BACKEND_NAMES)}")
    return [row], []


def _open_on(bundle: Bundle, spec: BackendSpec, rows: Mapping[str, GraphKind], precision: str, *,
             threads: int | None, device_id: int) -> tuple[Any, str]:
    spec.check_available()
    keys = spec.ordered(rows, precision)
    if not keys:
        have = sorted({r.precision for r in rows.values() if spec.runs(r)})
        if not have:
            raise BackendUnavailable(f"the bundle has no graph that {spec.name} runs"
                                     + (" (no TensorRT engine: engines/*.plan)" if spec.name == "tensorrt" else ""))
        raise BundleError(f"the bundle has no {precision} graph that {spec.name} runs (it has {have})")
    failures = []
    for key in keys:
        entry = bundle.manifest["graphs"][key]
        runner = spec.build(bundle.path(entry["file"]), io=bundle.manifest["io"], graph=rows[key], entry=entry,
                            threads=threads, device_id=device_id)
        try:
            return runner.open(), key
        except BundleError as e:
            failures.append(str(e))
            log.warning("dfma.runtime: %s cannot load %s (%s); trying the next graph", spec.name, entry["file"], e)
    raise BundleError(f"no {precision} graph loads on {spec.name}: " + "; ".join(failures))


def open_backend(bundle: Bundle, *, backend: str = "auto", precision: str = AUTO, threads: int | None = None,
                 device_id: int = 0, self_check: str = "auto") -> Choice:
    """Open the requested backend on the graph of the requested precision; returns the :class:`Choice`.

    ``precision="auto"`` walks the bundle's ranked defaults with :func:`dfma.runtime.self_check.auto_open`
    (``self_check``: ``auto`` checks a graph on the golden set where this CPU is of another class than its
    guard host, ``always`` checks every non-fp32 graph, ``never`` trusts the record).

    Raises BackendUnavailable (named backend unusable, or nothing usable) or BundleError (no graph of
    that precision, or none that loads).
    """
    if backend not in BACKEND_NAMES:
        raise BackendUnavailable(f"unknown backend {backend!r}; choose one of {list(BACKEND_NAMES)}")
    if precision != AUTO and precision not in PRECISIONS:
        raise BundleError(f"unknown precision {precision!r}; choose one of {[AUTO, *PRECISIONS]}")
    if self_check not in SELF_CHECK:
        raise InputError(f"must be one of {list(SELF_CHECK)}, got {self_check!r}", field="self_check")
    rows = present(bundle.manifest)
    candidates, skipped = _candidates(bundle.manifest, backend)
    for i, spec in enumerate(candidates):
        def open_precision(p: str, spec: BackendSpec = spec) -> tuple[Any, str]:
            return _open_on(bundle, spec, rows, p, threads=threads, device_id=device_id)

        try:
            if precision == AUTO and spec.device == "cpu":
                runner, key, wanted, reason = auto_open(bundle, open_precision, spec.name, spec.device, self_check)
            else:
                wanted, reason = resolve_precision(bundle.manifest, precision, spec.device, spec.name)
                runner, key = open_precision(wanted)
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
        return Choice(runner, spec.name, key, wanted, reason, skipped)
    raise BackendUnavailable("no backend candidates")  # unreachable: the loop returns or raises
