"""OpenVINO runner: a standard-ops ONNX graph of the bundle compiled for OpenVINO's CPU plugin.

OpenVINO reads ONNX directly (no conversion step, nothing written). It runs the catalogue rows whose ops
are standard ONNX (``ops == "onnx"``), never ONNX Runtime's com.microsoft kernels. Inference precision
is pinned to f32: on CPUs with AMX or AVX512_BF16 OpenVINO would otherwise run fp32 graphs in bf16 and no
longer agree with fp32. Compiled models are thread-safe; infer requests are not, so each call borrows
one from a pool. Install with the ``openvino`` extra (``pip install 'dfma[openvino]'``).
"""
from __future__ import annotations

import os
import queue
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dfma.backends.base import Runner
from dfma.contract.errors import BackendUnavailable, BundleError
from dfma.contract.graphs import GraphKind
from dfma.contract.manifest import IoSpec

OV_DTYPES = {"f32": "float32", "f16": "float16", "i64": "int64", "i32": "int32", "boolean": "bool", "u8": "uint8"}


class OpenVINORunner(Runner):
    """A graph file compiled by OpenVINO for ``device`` (default ``CPU``) with ``threads`` inference threads."""

    name = "openvino"

    def __init__(self, path: str | os.PathLike, *, threads: int | None = None, device: str = "CPU",
                 io: IoSpec | Mapping | None = None, graph: GraphKind | None = None, **_: Any):
        """Nothing is compiled until :meth:`open`."""
        super().__init__(io=io, graph=graph, where=str(path))
        self.path, self.threads, self.device = Path(path), threads, device
        self._pool: queue.LifoQueue = queue.LifoQueue()
        self._lock = threading.Lock()
        self.compiled: Any = None

    @classmethod
    def check_available(cls, **options: Any) -> Any:
        """openvino importable; returns the module."""
        try:
            import openvino as ov
        except Exception as exc:  # ImportError, or a broken install
            raise BackendUnavailable(f"OpenVINO is not available: cannot import openvino ({exc}); "
                                     "install the 'openvino' extra") from None
        return ov

    @classmethod
    def runs(cls, graph: GraphKind, **options: Any) -> bool:
        """Standard-ops graphs with CPU kernels."""
        return graph.ops == "onnx" and "cpu" in graph.devices

    @classmethod
    def preference(cls, graph: GraphKind, **options: Any) -> int:
        """The row meant for this CPU class first (OpenVINO's INT8 kernels have the same x86 constraint)."""
        from dfma.host import host_info

        return graph.host_rank(host_info()["class"])

    def _open(self) -> None:
        ov = self._ov = self.check_available()
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "f32"}
        if self.threads:
            config["INFERENCE_NUM_THREADS"] = int(self.threads)
        core = ov.Core()
        try:
            model = core.read_model(str(self.path))
            self.compiled = core.compile_model(model, self.device, config)
        except Exception as exc:  # OpenVINO raises RuntimeError with its own message
            first = str(exc).strip().splitlines()
            raise BundleError(f"{self.path.name}: OpenVINO {ov.__version__} cannot compile it: "
                              f"{(first[-1] if first else type(exc).__name__)[:1000]}") from None

    def metadata(self):
        """Inputs and outputs as the compiled model declares them (dynamic dims as None)."""
        def meta(ports):
            out = {}
            for port in ports:
                dims = [d.get_length() if d.is_static else None for d in port.get_partial_shape()]
                out[port.get_any_name()] = (OV_DTYPES.get(port.get_element_type().get_type_name(), ""), dims)
            return out

        return meta(self.compiled.inputs), meta(self.compiled.outputs)

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        compiled = self.compiled
        if compiled is None:
            raise BackendUnavailable("openvino: this runner was closed")
        try:
            request = self._pool.get_nowait()
        except queue.Empty:
            with self._lock:
                request = compiled.create_infer_request()
        try:
            result = request.infer(feeds)
            return {port.get_any_name(): np.array(value) for port, value in result.items()}
        finally:
            self._pool.put(request)

    def _describe(self) -> dict:
        return {"openvino": self._ov.__version__, "device": self.device, "threads": self.threads,
                "inference_precision": getattr(self.compiled.get_property("INFERENCE_PRECISION_HINT"), "type_name",
                                               str(self.compiled.get_property("INFERENCE_PRECISION_HINT")))}

    def _close(self) -> None:
        self.compiled = None
        self._pool = queue.LifoQueue()
