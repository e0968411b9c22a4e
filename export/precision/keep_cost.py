"""The speed side of the guard's fp32-node search: what keeping a node in fp32 buys and costs, and when no INT8
graph can beat fp32 any more.

- :func:`order_by_gain_per_cost` orders the search's units (nodes, or kinds of node) by the quantization noise
  they remove per unit of work they put back in fp32: each member's noise share is ``10 ** (-SQNR / 10)`` (its
  local signal-to-quantization-noise ratio, :func:`~dfma.export.precision.accuracy_guard.node_sensitivity`), its
  work the elements of its constant weight (:func:`weight_elements`: multiply-adds per token for a MatMul or
  Gemm, per output pixel for a Conv). Of two kinds that recover the same accuracy, the one with smaller weights
  goes first, so the kept set that meets the guard is the cheapest the ranking can find.
- :class:`SpeedCheck` is the search's ``stop``: it times the graph just built against the fp32 graph (batch 1,
  text-only guard sentences, :func:`dfma.timing.batch1_latency`: one worker each, interleaved) and says why to
  stop once the INT8 graph is no faster than fp32: keeping more nodes in fp32 only adds time, so no graph the
  search could still build would be served by ``auto``. Its measurements are kept for the manifest.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

WEIGHTED_OPS = ("MatMul", "Gemm", "Conv", "MatMulInteger", "ConvInteger")


def weight_elements(model) -> dict[str, int]:
    """``{node name: elements of its constant weight}`` of every MatMul / Gemm / Conv whose weight (input 1) is an
    initializer (the nodes without one, activation x activation products, are left out)."""
    import numpy as np

    sizes = {i.name: int(np.prod(i.dims)) if len(i.dims) else 1 for i in model.graph.initializer}
    return {n.name: sizes[n.input[1]] for n in model.graph.node
            if n.op_type in WEIGHTED_OPS and len(n.input) > 1 and n.input[1] in sizes}


def noise_share(row: Mapping) -> float:
    """A node's quantization noise power relative to its signal: ``10 ** (-sqnr_db / 10)``."""
    return 10.0 ** (-float(row["sqnr_db"]) / 10.0)


def order_by_gain_per_cost(units: Sequence[Sequence[Mapping]], weights: Mapping[str, int]) -> list[list[Mapping]]:
    """The units, most noise removed per weight element first (module doc); a unit whose weights are unknown
    counts one element per member (cheap: it goes early when it is noisy). Stable for ties."""
    def score(unit: Sequence[Mapping]) -> float:
        cost = sum(max(weights.get(r["node"], 1), 1) for r in unit)
        return sum(noise_share(r) for r in unit) / cost

    return [list(u) for u in sorted(units, key=score, reverse=True)]


class SpeedCheck:
    """The search's ``stop``: ``check(excluded)`` times the graph at ``candidate`` (built with those nodes in
    fp32) against ``fp32`` and returns why to stop when it is not faster than ``margin`` x fp32's time."""

    def __init__(self, fp32: Path, candidate: Path, samples: Sequence[Mapping], *, backend: str = "onnxruntime-cpu",
                 margin: float = 1.0, repeats: int = 3, log=lambda line: None):
        """``samples``: batch-1 feeds at their own lengths (text-only guard sentences)."""
        self.fp32, self.candidate, self.samples, self.backend = Path(fp32), Path(candidate), list(samples), backend
        self.margin, self.repeats, self.log = margin, repeats, log
        self.history: list[dict] = []

    def __call__(self, excluded: Sequence[str]) -> str | None:
        """Time the candidate now on disk against fp32 (both whole graphs, interleaved); the reason to stop, or
        None."""
        from dfma.timing import batch1_latency

        ms = batch1_latency({"fp32": (self.backend, self.fp32), "int8": (self.backend, self.candidate)},
                            self.samples, repeats=self.repeats, warmup=1)
        ratio = ms["int8"] / ms["fp32"]
        self.history.append({"kept_fp32": len(excluded), "int8_ms": ms["int8"], "fp32_ms": ms["fp32"],
                             "ratio": round(ratio, 3)})
        self.log(f"  speed with {len(excluded)} node(s) fp32: {ms['int8']:.2f} ms against fp32 {ms['fp32']:.2f} ms "
                 f"({ratio:.2f}x its time)")
        if ratio < self.margin:
            return None
        return (f"with {len(excluded)} node(s) in fp32 the INT8 graph already takes {ratio:.2f}x fp32's time "
                f"({ms['int8']:.2f} vs {ms['fp32']:.2f} ms, batch 1, {len(self.samples)} text-only sentences): "
                "keeping more in fp32 cannot make it faster than fp32")

    def record(self) -> dict:
        """What the manifest keeps: each check's times."""
        return {"how": f"whole graphs, batch 1, {len(self.samples)} text-only guard sentences, interleaved "
                       "(dfma.timing.batch1_latency)", "margin": self.margin, "checks": self.history}


SPEED_SAMPLES = 24  # text-only guard sentences per speed check


def speed_side(ctx, model, candidate: Path) -> dict:
    """The ``order`` and ``stop`` the step's options ask for (``--guard-order``, ``--no-speed-stop``), for a
    recipe whose search builds ``candidate`` from ``model`` (the graph its nodes are named in): ``{"order":
    ..., "stop": ...}`` to pass to ``ctx.search``, ``"check"``: the :class:`SpeedCheck` (or None)."""
    from dfma.contract.graphs import fp32_rows
    from dfma.export.precision.accuracy_guard import single_samples
    from dfma.export.precision.guard_sets import TEXT_ONLY

    options = ctx.options
    weights = weight_elements(model)
    order = (lambda units: order_by_gain_per_cost(units, weights)) if options.guard_order == "gain-per-cost" else None
    check = None
    if not options.no_speed_stop:
        fp32_key = next(r.key for r in reversed(fp32_rows()) if r.key in ctx.manifest.graphs)
        samples = single_samples(ctx.data.conditions[TEXT_ONLY], SPEED_SAMPLES)
        check = SpeedCheck(ctx.graph_path(fp32_key), candidate, samples, log=ctx.log)
    return {"order": order, "stop": check, "check": check}
