"""The ``torch.compile`` row of the benchmark: the eager model compiled by inductor, with what compiling cost.

Compiling is not latency. Before a cell is timed, the contender's first call at that cell's shapes runs
outside the timed calls (:meth:`CompiledModel.first_call`), and its seconds are recorded with the number
of graphs dynamo compiled for it: the compile cost, reported next to the latencies, never inside them.
The model is compiled with ``dynamic=True``: one graph serves every sequence length, and dynamo
specializes size 1, so batch 1 and batch > 1 compile once each (measured on the tiny preset: lengths 16
and 32 at batch 1 share one graph, batch 4 compiles a second one that lengths 16 and 32 share). Inductor
caches its kernels on disk (``/tmp/torchinductor_<user>``), so later runs compile faster than the first.

When inductor cannot work on this host (no C++ compiler, an unsupported Python), :func:`compile_unavailable`
says why and the row is skipped with that reason; a compile that fails later raises BackendUnavailable
from the first call, the row is dropped with the reason, and the run goes on.
"""
from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from typing import Any

from dfma.contract.errors import BackendUnavailable

BACKEND, DYNAMIC = "inductor", True


def compile_unavailable() -> str | None:
    """Why ``torch.compile`` with inductor cannot run here (None when it can, as far as can be told
    without compiling: dynamo supports this Python, and inductor finds its C++ compiler)."""
    try:
        import torch._dynamo
        from torch._inductor import cpp_builder
    except Exception as exc:  # noqa: BLE001  (a torch build without dynamo or inductor)
        return f"torch.compile is not available in this torch ({type(exc).__name__}: {exc})"
    if not torch._dynamo.is_dynamo_supported():
        return "torch.compile: dynamo does not support this Python"
    try:
        cpp_builder.get_cpp_compiler()
    except Exception as exc:  # noqa: BLE001  (InvalidCxxCompiler, or a compiler that does not start)
        return f"torch.compile (inductor) needs a C++ compiler: none found ({type(exc).__name__})"
    return None


def graphs_compiled() -> int | None:
    """Graphs dynamo has compiled in this process so far (None when this torch does not count them)."""
    try:
        from torch._dynamo.utils import counters

        return int(counters["stats"]["unique_graphs"])
    except Exception:  # noqa: BLE001  (a private counter: its absence only costs the count)
        return None


class CompiledModel:
    """``torch.compile(model, backend="inductor", dynamic=True)``: the module to run, and the first call of
    every shape timed outside the benchmark's timed calls (``first_calls``)."""

    def __init__(self, model: Any):
        """Wrap ``model`` (nothing compiles until the first call)."""
        import torch

        t0 = time.perf_counter()
        self.module = torch.compile(model, backend=BACKEND, dynamic=DYNAMIC)
        self.wrap_seconds = time.perf_counter() - t0
        self.first_calls: dict[str, dict] = {}
        self.error: str | None = None

    def first_call(self, where: str, call: Callable[[], object]) -> dict:
        """Run ``call`` once for cell ``where`` (e.g. ``"model 1x16"``) unless done already; ``{"first_call_s",
        "graphs_compiled"}``. Raises BackendUnavailable when compiling fails (and from then on, at once)."""
        if where in self.first_calls:
            return self.first_calls[where]
        if self.error is not None:
            raise BackendUnavailable(self.error)
        before = graphs_compiled()
        t0 = time.perf_counter()
        try:
            with warnings.catch_warnings():  # dynamo's notes on tracing the model are not the benchmark's output
                warnings.simplefilter("ignore")
                call()
        except Exception as exc:
            first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
            self.error = f"torch.compile ({BACKEND}) failed: {type(exc).__name__}: {first}"
            raise BackendUnavailable(self.error) from exc
        after = graphs_compiled()
        entry = {"first_call_s": round(time.perf_counter() - t0, 3),
                 "graphs_compiled": None if before is None or after is None else after - before}
        self.first_calls[where] = entry
        return entry

    def describe(self) -> dict:
        """JSON-ready: settings, every first call, and their total (the compile cost of the run)."""
        compiled = [e for e in self.first_calls.values() if e["graphs_compiled"] != 0]
        return {"backend": BACKEND, "dynamic": DYNAMIC, "first_calls": dict(self.first_calls),
                "compile_seconds": round(sum(e["first_call_s"] for e in compiled), 3),
                "graphs": sum(e["graphs_compiled"] or 0 for e in self.first_calls.values()),
                "note": "first_call_s: the first call at a cell's shapes, untimed by the benchmark; it includes "
                        "compiling when graphs_compiled > 0 (inductor's disk cache makes later runs faster)",
                **({"error": self.error} if self.error else {})}
