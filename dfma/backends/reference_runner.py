"""The onnx reference evaluator as a runner: fp16 graphs computed in fp16 (ONNX Runtime's CPU provider
casts most fp16 nodes back to fp32, so it cannot tell whether an fp16 graph is accurate in fp16).

Slow (numpy, one op at a time); meant for small models and the accuracy guard. Needs ``onnx``.
"""
from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dfma.backends.base import Runner
from dfma.contract.graphs import GraphKind
from dfma.contract.manifest import IoSpec
from dfma.contract.io_spec import OUTPUT_NAME

ONNX_DTYPES = {1: "float32", 10: "float16", 7: "int64", 6: "int32", 9: "bool"}


class ReferenceRunner(Runner):
    """A graph file on :func:`reference_evaluator` (fp16 arithmetic, fp32 accumulation in GEMMs)."""

    name = "onnx-reference"

    def __init__(self, path: str | os.PathLike, *, io: IoSpec | Mapping | None = None, graph: GraphKind | None = None,
                 **_: Any):
        """Nothing is loaded until :meth:`open`."""
        super().__init__(io=io, graph=graph, where=str(path))
        self.path = Path(path)
        self.evaluator: Any = None

    def _open(self) -> None:
        import onnx

        self._model = onnx.load(str(self.path))
        self.evaluator = reference_evaluator(self._model)

    def metadata(self):
        """Inputs and outputs as the ONNX file declares them."""
        def meta(values):
            return {v.name: (ONNX_DTYPES.get(v.type.tensor_type.elem_type, ""),
                             [d.dim_value if d.HasField("dim_value") else d.dim_param
                              for d in v.type.tensor_type.shape.dim]) for v in values}

        graph = self._model.graph
        return meta(graph.input), meta(graph.output)

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        with np.errstate(over="ignore", under="ignore"):  # fp16 masks: -65504 + score -> -inf, by design
            names = list(self.evaluator.output_names)
            name = OUTPUT_NAME if OUTPUT_NAME in names else names[0]  # a vision stage has image_features
            out = self.evaluator.run([name], feeds)[0]
        return {name: np.asarray(out, dtype=np.float32) if name == OUTPUT_NAME else np.asarray(out)}

    def _close(self) -> None:
        self.evaluator = None


def reference_evaluator(model: Any) -> Any:
    """``onnx.reference.ReferenceEvaluator`` that executes fp16 honestly and fast enough for the tiny preset.

    Every op computes on the graph's own dtypes in numpy; MatMul, Gemm and Conv on fp16 inputs
    accumulate in fp32 and round the result to fp16 (what GPU fp16 GEMMs do), and Conv/MaxPool get a
    vectorised path (the stock ones loop in Python).
    """
    from numpy.lib.stride_tricks import sliding_window_view
    from onnx.reference import ReferenceEvaluator
    from onnx.reference.ops.op_conv import Conv as _Conv
    from onnx.reference.ops.op_gemm import Gemm_7 as _Gemm
    from onnx.reference.ops.op_matmul import MatMul as _MatMul
    from onnx.reference.ops.op_max_pool import MaxPool as _MaxPool

    f32 = np.float32

    class MatMul(_MatMul):
        def _run(self, a, b):
            x, w = np.ascontiguousarray(a, dtype=f32), np.ascontiguousarray(b, dtype=f32)
            if w.ndim == 2 and x.ndim >= 2:  # one BLAS GEMM instead of numpy's batched loop
                y = (x.reshape(-1, x.shape[-1]) @ w).reshape(*x.shape[:-1], w.shape[-1])
            else:
                y = np.matmul(x, w)
            return (y.astype(a.dtype),)

    class Gemm(_Gemm):
        def _run(self, a, b, c=None, alpha=None, beta=None, transA=None, transB=None):
            x, w = a.astype(f32), b.astype(f32)
            y = (x.T if transA else x) @ (w.T if transB else w) * (1.0 if alpha is None else alpha)
            if c is not None:
                y = y + c.astype(f32) * (1.0 if beta is None else beta)
            return (y.astype(a.dtype),)

    class Conv(_Conv):
        def _run(self, X, W, B=None, auto_pad=None, dilations=None, group=None, kernel_shape=None, pads=None,
                 strides=None):
            simple = (X.ndim == 4 and (group or 1) == 1 and all(d == 1 for d in (dilations or [1]))
                      and auto_pad in (None, "NOTSET", b"NOTSET"))
            if not simple:
                return super()._run(X, W, B, auto_pad, dilations, group, kernel_shape, pads, strides)
            t, left, b, r = pads or (0, 0, 0, 0)
            sh, sw = strides or (1, 1)
            xp = np.pad(X.astype(f32), ((0, 0), (0, 0), (t, b), (left, r)))
            win = sliding_window_view(xp, W.shape[2:], axis=(2, 3))[:, :, ::sh, ::sw]
            y = np.tensordot(win, W.astype(f32), axes=([1, 4, 5], [1, 2, 3])).transpose(0, 3, 1, 2)
            if B is not None:
                y = y + B.astype(f32)[None, :, None, None]
            return (np.ascontiguousarray(y).astype(X.dtype),)

    class MaxPool(_MaxPool):
        def _run(self, x, auto_pad=None, ceil_mode=None, dilations=None, kernel_shape=None, pads=None,
                 storage_order=None, strides=None):
            if (x.ndim != 4 or ceil_mode or storage_order or any(d != 1 for d in (dilations or [1]))
                    or auto_pad not in (None, "NOTSET", b"NOTSET") or len(self.output) > 1):
                return super()._run(x, auto_pad, ceil_mode, dilations, kernel_shape, pads, storage_order, strides)
            t, left, b, r = pads or (0, 0, 0, 0)
            sh, sw = strides or (1, 1)
            xp = np.pad(x, ((0, 0), (0, 0), (t, b), (left, r)), constant_values=-np.inf)
            win = sliding_window_view(xp, tuple(kernel_shape), axis=(2, 3))[:, :, ::sh, ::sw]
            return (np.ascontiguousarray(win.max(axis=(4, 5))).astype(x.dtype),)

    return ReferenceEvaluator(model, new_ops=[MatMul, Gemm, Conv, MaxPool])
