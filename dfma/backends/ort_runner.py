"""ONNX Runtime runner: one InferenceSession on the CPU, CUDA or TensorRT execution provider.

On the CPU it prefers the fused graph of a precision (com.microsoft kernels), on GPU providers the
standard-ops graph first; ``int8-dynamic`` has CPU kernels only (the catalogue's ``devices``).
``InferenceSession.run`` is thread-safe, so one runner serves every thread.
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dfma.backends.base import Runner
from dfma.backends.sessions import ort_session
from dfma.contract.errors import BackendUnavailable
from dfma.contract.graphs import ENGINE_KIND, GraphKind
from dfma.contract.manifest import IoSpec
from dfma.contract.io_spec import OUTPUT_NAME

PROVIDERS: dict[str, list[str]] = {
    "cpu": ["CPUExecutionProvider"],
    "cuda": ["CUDAExecutionProvider", "CPUExecutionProvider"],
    "tensorrt": ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"],
}
ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64",
              "tensor(int32)": "int32", "tensor(bool)": "bool", "tensor(uint8)": "uint8", "tensor(int8)": "int8"}


class OrtRunner(Runner):
    """A graph file on ONNX Runtime. ``device``: ``cpu``, ``cuda`` or ``tensorrt`` (the execution provider);
    ``optimization``: ``all`` (default), ``basic`` (Q/DQ computed as written) or ``none`` (every tensor name
    kept); ``outputs``: what ``infer`` returns (default ``logits``, or every output of a graph without it,
    such as a vision stage; intermediate tensors need ``none``)."""

    name = "onnxruntime-cpu"

    def __init__(self, path: str | os.PathLike, *, device: str = "cpu", threads: int | None = None,
                 device_id: int = 0, optimization: str = "all", outputs: Sequence[str] | None = None,
                 profile_prefix: str | None = None, io: IoSpec | Mapping | None = None, graph: GraphKind | None = None,
                 spinning: bool = True, **_: Any):
        """Nothing is loaded until :meth:`open`. ``spinning=False`` lets the intra-op threads sleep as soon
        as a run ends (``session.intra_op.allow_spinning=0``): what the sessions of stage graphs need, so
        that one stage's idle threads do not spin on the cores the next stage computes on."""
        if device not in PROVIDERS:
            raise BackendUnavailable(f"unknown ONNX Runtime device {device!r}; choose one of {list(PROVIDERS)}")
        super().__init__(io=io, graph=graph, where=str(path))
        self.path, self.device, self.threads, self.device_id = Path(path), device, threads, device_id
        self.optimization, self.profile_prefix, self.spinning = optimization, profile_prefix, spinning
        self.outputs: list[str] = list(outputs) if outputs is not None else []
        self.name = f"onnxruntime-{device}"
        self.session: Any = None

    @classmethod
    def check_available(cls, device: str = "cpu", **_: Any) -> None:
        """onnxruntime installed, with the execution provider of ``device``."""
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise BackendUnavailable(f"onnxruntime is not installed ({exc})") from None
        wanted = PROVIDERS[device][0]
        if wanted not in ort.get_available_providers():
            raise BackendUnavailable(f"onnxruntime {ort.__version__} has no {wanted} "
                                     f"(available: {ort.get_available_providers()})")

    @classmethod
    def runs(cls, graph: GraphKind, device: str = "cpu", **_: Any) -> bool:
        """Graphs with kernels on that device class (``int8-dynamic`` is CPU-only)."""
        return graph.format != ENGINE_KIND and ("cpu" if device == "cpu" else "gpu") in graph.devices

    @classmethod
    def preference(cls, graph: GraphKind, device: str = "cpu", **_: Any) -> tuple[int, int]:
        """CPU: the row meant for this CPU class first (catalogue ``cpu_classes``), then fused kernels;
        GPU providers: standard ops first."""
        from dfma.host import host_info

        fused = graph.ops == "com.microsoft"
        if device != "cpu":
            return (0, 0 if not fused else 1)
        return (graph.host_rank(host_info()["class"]), 0 if fused else 1)

    def _open(self) -> None:
        self.check_available(self.device)
        wanted = PROVIDERS[self.device][0]
        providers = [(p, {"device_id": self.device_id}) if p != "CPUExecutionProvider" else p
                     for p in PROVIDERS[self.device]]
        session = ort_session(self.path, threads=self.threads, providers=providers, optimization=self.optimization,
                              profile_prefix=self.profile_prefix,
                              config=None if self.spinning else {"session.intra_op.allow_spinning": "0"})
        if session.get_providers()[0] != wanted:
            raise BackendUnavailable(f"{wanted} is installed but not usable here (ONNX Runtime fell back "
                                     f"to {session.get_providers()[0]}: no GPU?)")
        if not self.outputs:
            names = [o.name for o in session.get_outputs()]
            self.outputs = [OUTPUT_NAME] if OUTPUT_NAME in names else names
        self.session = session

    def metadata(self):
        """Inputs and outputs as the session declares them (symbolic dims as strings)."""
        def meta(values):
            return {v.name: (ORT_DTYPES.get(v.type, v.type), list(v.shape)) for v in values}

        outputs = meta(self.session.get_outputs())
        return meta(self.session.get_inputs()), {k: v for k, v in outputs.items() if k == OUTPUT_NAME} or outputs

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        session = self.session
        if session is None:
            raise BackendUnavailable(f"{self.name}: this runner was closed")
        return dict(zip(self.outputs, session.run(self.outputs, feeds)))

    def _describe(self) -> dict:
        return {"providers": self.session.get_providers(), "threads": self.threads,
                "optimization": self.optimization, "spinning": self.spinning}

    def end_profiling(self) -> str:
        """Stop ONNX Runtime's profiler; returns the trace file (needs ``profile_prefix``)."""
        return self.session.end_profiling()

    def _close(self) -> None:
        self.session = None  # freed when no call is in flight
