"""The INT8 GEMM rate of this machine: ONNX Runtime's ``MatMulInteger`` (uint8 x int8 -> int32) on a square
``n x n`` problem, the limit the INT8 rows' efficiency divides by.

The graph is built in memory with ``onnx.helper``: ``A`` (uint8) is the input, ``B`` (int8) a constant, as
the weights of a quantized model are (ONNX Runtime pre-packs it once); the session has the project's
settings (``dfma.backends.sessions.session_options``) at the benchmark's thread count, and the output is
bound once (IO binding) so that a call is the GEMM and not an allocation. Like the fp32 GEMM, it is
measured before and after the sweep (:func:`int8_gemm_rate`) and timed as one more contender in every
cell that has an INT8 row (:class:`Int8GemmProbe`, key ``gemm-int8``). One multiply-add counts 2 ops.
"""
from __future__ import annotations

import time

import numpy as np
from dfma.benchmarks.isa import int8_instructions

from dfma.contract.errors import BackendUnavailable

KEY = "gemm-int8"
DTYPE = "int8"  # the GEMM's weight data type (ONNX int8), the key of its rate in a result's "gemm"
OP = "ONNX Runtime MatMulInteger, uint8 x int8 -> int32"


def matmul_integer_model(n: int, seed: int = 0) -> bytes:
    """A serialized ONNX model ``Y = MatMulInteger(A, B)``: A uint8 [n, n] input, B int8 [n, n] constant."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if n < 1:
        raise ValueError(f"n = {n}: the GEMM size must be positive")
    b = np.random.default_rng(seed).integers(-128, 128, size=(n, n), dtype=np.int8)
    graph = helper.make_graph(
        [helper.make_node("MatMulInteger", ["A", "B"], ["Y"])], "int8_gemm",
        [helper.make_tensor_value_info("A", TensorProto.UINT8, [n, n])],
        [helper.make_tensor_value_info("Y", TensorProto.INT32, [n, n])],
        [numpy_helper.from_array(b, "B")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)], producer_name="dfma.benchmarks")
    onnx.checker.check_model(model)
    return model.SerializeToString()


class Int8GemmProbe:
    """The ``MatMulInteger`` session timed like a backend (``run`` ignores the workload)."""

    key = KEY

    def __init__(self, n: int, threads: int):
        """Build the session (BackendUnavailable when onnx or onnxruntime is missing or refuses the graph)."""
        try:
            import onnxruntime as ort

            from dfma.backends.sessions import CPU, session_options

            model = matmul_integer_model(n)
            self.session = ort.InferenceSession(model, session_options(threads), providers=[CPU])
        except ImportError as exc:
            raise BackendUnavailable(f"INT8 GEMM rate: {exc}") from None
        except Exception as exc:  # noqa: BLE001  (onnxruntime's untyped errors)
            raise BackendUnavailable(f"INT8 GEMM rate: ONNX Runtime cannot run MatMulInteger: {exc}") from None
        self.n, self.threads = n, threads
        self.a = np.random.default_rng(1).integers(0, 256, size=(n, n), dtype=np.uint8)
        self.out = np.empty((n, n), dtype=np.int32)
        self.binding = self.session.io_binding()
        self.binding.bind_cpu_input("A", self.a)
        self.binding.bind_output("Y", "cpu", 0, np.int32, list(self.out.shape), self.out.ctypes.data)

    @property
    def flops(self) -> float:
        """Integer ops of one call (2 per multiply-add)."""
        return 2.0 * self.n ** 3

    def run(self, workload=None):
        """One GEMM into the bound output."""
        self.session.run_with_iobinding(self.binding)

    def check(self) -> bool:
        """Whether one call's result is exact (int64 numpy reference on a corner block)."""
        self.run()
        b = np.random.default_rng(0).integers(-128, 128, size=(self.n, self.n), dtype=np.int8)
        k = min(self.n, 64)
        ref = self.a[:k].astype(np.int64) @ b[:, :k].astype(np.int64)
        return bool(np.array_equal(self.out[:k, :k], ref))


def int8_gemm_rate(threads: int, n: int = 2048, reps: int = 5, cpu_class: str | None = None) -> dict:
    """ops/s of :class:`Int8GemmProbe` (median and best of ``reps`` after a warm-up), with the CPU class and
    the instructions it stands for; ``{"dtype": "int8", "error": ...}`` when it cannot be measured here."""
    if cpu_class is None:
        from dfma.host import host_info

        cpu_class = host_info()["class"]
    head = {"dtype": DTYPE, "op": OP, "n": n, "threads": threads, "reps": reps, "cpu_class": cpu_class,
            "instructions": int8_instructions(cpu_class)}
    try:
        probe = Int8GemmProbe(n, threads)
    except BackendUnavailable as exc:
        return {**head, "error": str(exc)}
    exact = probe.check()  # also the warm-up
    times = []
    for _ in range(reps):
        t0 = time.perf_counter()
        probe.run()
        times.append(time.perf_counter() - t0)
    return {**head, "exact": exact, "median_flops": probe.flops / float(np.median(times)),
            "best_flops": probe.flops / min(times), "seconds": [round(t, 6) for t in times]}
