"""The one backend registry: every way of running a DFMA graph, one row each.

A row names the module and class implementing :class:`~dfma.backends.base.Runner`, the options it is
built with, the pip extra that provides it, and its place in ``backend="auto"`` (lower first; None: never
chosen by ``auto`` on its own, only when the bundle records it as measured faster on this host). Modules
are imported only when a row is used, so the runtime imports no backend it does not run. Adding a backend
is one runner file plus one row here.
"""
from __future__ import annotations

import importlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from dfma.contract.errors import BackendUnavailable
from dfma.contract.graphs import GraphKind


@dataclass(frozen=True)
class BackendSpec:
    """One registry row (module doc)."""

    name: str
    module: str
    cls: str
    options: Mapping[str, Any] = field(default_factory=dict)
    extra: str | None = None
    auto: int | None = None
    device: str = "cpu"  # cpu | gpu: which recorded ``auto`` default applies, and where benchmarks run it
    bundles: bool = True  # runs bundle graphs (False: the eager model, which runs a checkpoint)
    label: str = ""  # what tables call it
    doc: str = ""

    def runner_class(self) -> type:
        """The runner class (imports its module; BackendUnavailable when that fails)."""
        try:
            return getattr(importlib.import_module(self.module), self.cls)
        except ImportError as exc:
            hint = f"; install the '{self.extra}' extra" if self.extra else ""
            raise BackendUnavailable(f"{self.name}: cannot import {self.module} ({exc}){hint}") from None

    def build(self, *args: Any, **kwargs: Any):
        """A runner of this row (not opened yet); ``kwargs`` add to / override the row's options."""
        return self.runner_class()(*args, **{**self.options, **kwargs})

    def check_available(self) -> None:
        """BackendUnavailable (one line) when this backend cannot run on this machine."""
        self.runner_class().check_available(**self.options)

    def runs(self, graph: GraphKind) -> bool:
        """Whether this backend executes graphs of that catalogue row."""
        return bool(self.bundles and self.runner_class().runs(graph, **self.options))

    def ordered(self, rows: Mapping[str, GraphKind], precision: str) -> list[str]:
        """Keys of the rows of ``precision`` it runs, best first."""
        cls = self.runner_class()
        keys = [k for k, r in rows.items() if r.precision == precision and cls.runs(r, **self.options)]
        return sorted(keys, key=lambda k: cls.preference(rows[k], **self.options))


_ROWS = (
    BackendSpec("tensorrt", "dfma.backends.trt_runner", "TensorRTRunner", auto=10, device="gpu",
                label="TensorRT", doc="serialized TensorRT engine (engines/*.plan), built on this GPU with this TensorRT"),
    BackendSpec("onnxruntime-tensorrt", "dfma.backends.ort_runner", "OrtRunner", {"device": "tensorrt"}, auto=20, device="gpu",
                label="ONNX Runtime TensorRT EP", doc="ONNX Runtime, TensorRT execution provider"),
    BackendSpec("onnxruntime-cuda", "dfma.backends.ort_runner", "OrtRunner", {"device": "cuda"}, auto=30, device="gpu",
                label="ONNX Runtime CUDA", doc="ONNX Runtime, CUDA execution provider"),
    BackendSpec("onnxruntime-cpu", "dfma.backends.ort_runner", "OrtRunner", {"device": "cpu"}, auto=40,
                label="ONNX Runtime", doc="ONNX Runtime, CPU execution provider"),
    BackendSpec("openvino", "dfma.backends.openvino_runner", "OpenVINORunner", extra="openvino",
                label="OpenVINO", doc="OpenVINO CPU plugin on the standard-ops graphs"),
    BackendSpec("onnx-reference", "dfma.backends.reference_runner", "ReferenceRunner", extra="export", bundles=False,
                label="onnx reference evaluator", doc="onnx reference evaluator (honest fp16 arithmetic; slow)"),
    BackendSpec("eager", "dfma.model.runner", "EagerRunner", extra="torch", bundles=False,
                label="eager PyTorch", doc="the eager PyTorch model (needs torch and the checkpoint)"),
)
BACKENDS: dict[str, BackendSpec] = {row.name: row for row in _ROWS}


def backend(name: str) -> BackendSpec:
    """The registry row ``name``; BackendUnavailable listing the known names."""
    if name not in BACKENDS:
        raise BackendUnavailable(f"unknown backend {name!r}; choose one of {sorted(BACKENDS)}")
    return BACKENDS[name]


def auto_chain() -> list[BackendSpec]:
    """The rows ``backend="auto"`` tries, in order."""
    return sorted((r for r in _ROWS if r.auto is not None), key=lambda r: r.auto)
