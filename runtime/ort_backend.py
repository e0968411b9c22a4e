"""ONNX Runtime backend: one InferenceSession per extractor, on the CPU, CUDA or TensorRT provider.

Graph choice by precision (file names of contract section 4): ``fp32`` runs the fused
``model.ort.onnx`` on the CPU (the portable ``model.onnx`` first on GPU providers, each the other's
fallback when a session cannot be built); ``fp16``, ``int8`` and ``int8-dynamic`` run their own file when
the bundle has it. ``InferenceSession.run`` is thread-safe, so one session serves every thread.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from dfma.errors import BackendUnavailable, BundleError

log = logging.getLogger("dfma.runtime")

GRAPH_FILES: dict[str, tuple[str, ...]] = {
    "fp32": ("model.ort.onnx", "model.onnx"),
    "fp16": ("model.fp16.onnx",),
    "int8": ("model.int8.onnx",),
    "int8-dynamic": ("model.int8-dynamic.onnx",),
}
PRECISIONS = tuple(GRAPH_FILES)
CPU_ONLY_PRECISIONS = ("int8-dynamic",)  # MatMulInteger / DynamicQuantizeLinear: CPU kernels only

PROVIDERS: dict[str, list] = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
PROVIDER_NAMES = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider",
                  "tensorrt": "TensorrtExecutionProvider"}


def available_precisions(files: Mapping[str, object]) -> list[str]:
    """Precisions whose ONNX graph is listed in the manifest's ``files``."""
    return [p for p, names in GRAPH_FILES.items() if any(n in files for n in names)]


def graph_candidates(precision: str, files: Mapping[str, object], device: str) -> list[str]:
    """Files to try for ``precision`` on ``device`` (``cpu``, ``cuda``, ``tensorrt``), best first.

    Raises BundleError listing what the bundle has when it has no graph of that precision.
    """
    if precision not in GRAPH_FILES:
        raise BundleError(f"unknown precision {precision!r}; the bundle has "
                          f"{available_precisions(files)} (choose one of {list(PRECISIONS)})")
    names = [n for n in GRAPH_FILES[precision] if n in files]
    if not names:
        raise BundleError(f"the bundle has no {precision} graph ({' or '.join(GRAPH_FILES[precision])}); "
                          f"it has {available_precisions(files)}")
    if device != "cpu" and precision == "fp32":
        names.sort(key=lambda n: n != "model.onnx")  # portable ops first for CUDA / TensorRT providers
    return names


def _session_options(threads: int | None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads or 0)  # 0: ONNX Runtime's default (physical cores)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return opts


class OrtBackend:
    """A loaded ONNX graph: ``run(feeds) -> logits`` float32 ``(batch, num_labels)``."""

    def __init__(self, folder: Path, files: Mapping[str, object], precision: str = "fp32",
                 device: str = "cpu", threads: int | None = None, device_id: int = 0):
        """Build the session for ``precision`` on ``device`` (``cpu``, ``cuda`` or ``tensorrt``).

        Raises BackendUnavailable when the provider is missing or falls back to another, BundleError when
        the bundle has no graph of that precision or no candidate graph loads.
        """
        import onnxruntime as ort

        if device not in PROVIDERS:
            raise BackendUnavailable(f"unknown ONNX Runtime device {device!r}; choose one of {list(PROVIDERS)}")
        wanted = PROVIDER_NAMES[device]
        if wanted not in ort.get_available_providers():
            raise BackendUnavailable(f"onnxruntime {ort.__version__} has no {wanted} "
                                     f"(available: {ort.get_available_providers()})")
        if device != "cpu" and precision in CPU_ONLY_PRECISIONS:
            raise BackendUnavailable(f"{precision} graphs run on the CPU provider only")
        providers = [(p, {"device_id": device_id}) if p != "CPUExecutionProvider" else p
                     for p in PROVIDERS[device]]
        failures = []
        for name in graph_candidates(precision, files, device):
            try:
                session = ort.InferenceSession(str(folder / name), _session_options(threads),
                                               providers=providers)
            except Exception as e:  # onnxruntime raises its own untyped exceptions
                failures.append(f"{name}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
                log.warning("dfma.runtime: cannot load %s (%s); trying the next graph", name, failures[-1])
                continue
            if session.get_providers()[0] != wanted:
                raise BackendUnavailable(f"{wanted} is installed but not usable here (ONNX Runtime fell back "
                                         f"to {session.get_providers()[0]}: no GPU?)")
            self.session, self.graph, self.precision, self.device = session, name, precision, device
            self.threads = threads
            self.input_names = [i.name for i in session.get_inputs()]
            self.name = "onnxruntime-" + device
            return
        raise BundleError("no graph of precision {} loads: {}".format(precision, "; ".join(failures)))

    def run(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        """Logits for one padded batch (thread-safe)."""
        if self.session is None:
            raise BackendUnavailable("this extractor was closed")
        return self.session.run(["logits"], {k: feeds[k] for k in self.input_names})[0]

    def describe(self) -> dict:
        """What runs: backend, graph file, precision, providers and threads."""
        return {"backend": self.name, "graph": self.graph, "precision": self.precision,
                "providers": self.session.get_providers(), "threads": self.threads}

    def close(self) -> None:
        """Drop the session (its memory is freed when no call is in flight)."""
        self.session = None
