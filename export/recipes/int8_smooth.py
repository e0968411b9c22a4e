"""Recipe: static INT8 by NNCF post-training quantization with SmoothQuant (``nncf.quantize``, model type
TRANSFORMER, preset MIXED) on the portable fp32 graph, calibrated on the precision step's calibration
sentences, its activation Q/DQ rewritten from S8 to U8 (:mod:`dfma.export.qdq_u8`: exact, and what ONNX
Runtime loads), guarded by the same search as static INT8: whole kinds of node, most sensitive first, passed to
NNCF as an ignored scope (kept fp32) until the guard is met.

SmoothQuant moves activation outliers into the weights (a per-channel ``Mul`` before each MatMul), so fewer
nodes need to stay fp32 than with plain static INT8 (docs/precision.md: 99.08 % on the MiniLM checkpoint
with the 8 FFN-output MatMuls fp32). Opt-in (``--int8-smooth``): it needs ``nncf`` (the ``export`` extra) and
each guard round re-runs NNCF's statistics collection.
"""
from __future__ import annotations

import contextlib
import io
import logging
from dataclasses import dataclass
from pathlib import Path

from dfma.contract.errors import ExportError
from dfma.export.precision.guard_sets import TUNE
from dfma.export.precision.options import UsageError, option
from dfma.export.recipes.base import Built, Outcome, Recipe
from dfma.export.recipes.int8_static import IMAGE_ONLY_REASON, SENSITIVITY_BATCHES, Int8State

NAME = __name__.rpartition(".")[2]
DEFAULT_ALPHA = 0.85  # measured on the MiniLM checkpoint (docs/precision.md): 0.95 and no smoothing do worse
NNCF_HINT = "pip install -c constraints.txt nncf (it comes with the `export` extra: pip install -e '.[export]')"


@dataclass(frozen=True)
class SmoothOptions:
    """The NNCF SmoothQuant recipe's options."""

    smooth_quant_alpha: float = option(DEFAULT_ALPHA, "int8-smooth: NNCF SmoothQuant alpha for MatMul inputs "
                                                      "(0 < alpha < 1; -1 turns SmoothQuant off)", metavar="A",
                                       type=float)


def nncf_module():
    """The ``nncf`` package; ExportError saying how to install it when it is missing."""
    try:
        import nncf
    except ImportError as exc:
        raise ExportError(f"int8-smooth needs NNCF ({exc}): {NNCF_HINT}") from None
    return nncf


@contextlib.contextmanager
def _quiet(enabled: bool):
    """NNCF's log lines and progress bars silenced (``--quiet``)."""
    if not enabled:
        yield
        return
    logger = logging.getLogger("nncf")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        logger.setLevel(level)


def nncf_quantize(model, batches, *, alpha: float, ignored: list[str], quiet: bool = True,
                  seven_bit_weights: bool = False):
    """``nncf.quantize`` of an fp32 ONNX ``model`` (TRANSFORMER, MIXED: symmetric per-channel INT8 weights,
    asymmetric INT8 activations) on feed ``batches`` (each item one batch; every item used), SmoothQuant at
    ``alpha`` on MatMul inputs (negative: off), the ``ignored`` node names left fp32. Weights: NNCF's default
    overflow fix (the first layer's at 7 bits), or every layer's with ``seven_bit_weights`` (what CPUs without
    VNNI compute without saturating). ExportError on failure."""
    import onnx

    nncf = nncf_module()
    inputs = {i.name for i in model.graph.input}
    dataset = nncf.Dataset(list(batches), lambda batch: {k: v for k, v in batch.items() if k in inputs})
    advanced = nncf.AdvancedQuantizationParameters(
        smooth_quant_alphas=nncf.AdvancedSmoothQuantParameters(matmul=alpha),
        overflow_fix=nncf.OverflowFix.ENABLE if seven_bit_weights else nncf.OverflowFix.FIRST_LAYER)
    scope = nncf.IgnoredScope(names=sorted(set(ignored))) if ignored else None
    try:
        with _quiet(quiet):
            return nncf.quantize(onnx.ModelProto.FromString(model.SerializeToString()), dataset,
                                 model_type=nncf.ModelType.TRANSFORMER, preset=nncf.QuantizationPreset.MIXED,
                                 subset_size=len(batches), ignored_scope=scope, advanced_parameters=advanced)
    except Exception as exc:  # noqa: BLE001  (NNCF raises many kinds)
        raise ExportError(f"nncf.quantize failed ({type(exc).__name__}): {str(exc)[:500]}") from None


def embedding_form(model) -> str:
    """How the quantized graph stores its token-embedding tables: ``int8 table -> DequantizeLinear -> Gather``
    (every run dequantizes the whole table; export/embedding_int8.py gathers rows first) or ``fp32``."""
    producer = {o: n for n in model.graph.node for o in n.output}
    inits = {t.name for t in model.graph.initializer}
    tables = [n for n in model.graph.node if n.op_type == "Gather" and getattr(producer.get(n.input[0]), "op_type", "")
              == "DequantizeLinear" and producer[n.input[0]].input[0] in inits]
    return (f"int8 per row, whole table DequantizeLinear -> Gather ({len(tables)} table(s), as NNCF writes it)"
            if tables else "fp32")


class SmoothInt8(Recipe):
    """NNCF + SmoothQuant, U8 activations, fp32 kinds searched by the guard."""

    name = NAME
    options = SmoothOptions
    switch = ("--int8-smooth", None)
    switch_help = "static INT8 by NNCF with SmoothQuant (needs nncf; opt-in: not built without it)"
    timed = True

    def build(self, ctx, out: Path, parent) -> Built:
        import onnx

        from dfma.export import quantize as q
        from dfma.export.precision.accuracy_guard import node_sensitivity
        from dfma.export.precision.keep_cost import speed_side
        from dfma.export.qdq_u8 import activations_to_u8, qdq_types

        nncf = nncf_module()
        alpha = ctx.options_of(SmoothOptions).smooth_quant_alpha
        if not (0 < alpha < 1 or alpha == -1):
            raise UsageError(f"--smooth-quant-alpha {alpha}: must be in (0, 1), or -1 for no SmoothQuant")
        source = ctx.graph_path(self.source)
        model = onnx.load(str(source))
        start = q.image_only_nodes(model) if ctx.options.images is None and not ctx.photos else []
        feeds = ctx.data.calibration
        stats: dict = {}

        def quantize(path: Path, excluded, seven_bit: bool = False) -> dict:
            ctx.log(f"  nncf.quantize: SmoothQuant alpha {alpha}, {len(excluded)} node(s) fp32, "
                    f"{len(feeds)} calibration sentences" + (", weights at 7 bits" if seven_bit else ""))
            quantized = nncf_quantize(model, feeds.batches, alpha=alpha, ignored=list(excluded),
                                      quiet=ctx.options.quiet, seven_bit_weights=seven_bit)
            u8, rewrite = activations_to_u8(quantized)
            onnx.save(u8, str(path))
            return {**q.qdq_stats(u8), "zero_points": qdq_types(u8), "embedding": embedding_form(u8),
                    "u8_rewrite": {"pairs": rewrite.pairs, "dequantize": rewrite.dequantize,
                                   "already_u8": rewrite.already_u8},
                    "smooth_quant_muls": sum("nncf_smooth_quant" in n.name for n in u8.graph.node if n.op_type == "Mul")}

        def build(excluded):
            stats.clear()
            stats.update(quantize(out, excluded))

        def evaluate(excluded):
            build(excluded)
            return ctx.evaluate(out, f"{self.key} ({len(excluded)} fp32)", parts=(TUNE,))

        def rank():  # the nodes NNCF quantized, by local SQNR on the fp32 graph (per-batch activation ranges)
            names = q.quantized_node_names(onnx.load(str(out)))
            return node_sensitivity(source, names, feeds.batches[:SENSITIVITY_BATCHES], None)

        speed = speed_side(ctx, model, out)
        found = ctx.search(evaluate, rank, start=start, rebuild=build, order=speed["order"], stop=speed["stop"],
                           confirm=lambda: ctx.evaluate(out, f"{self.key} (confirm)"))
        kept = [{"node": n, "reason": IMAGE_ONLY_REASON} for n in start] + found["kept"]
        quantization = {
            "format": "QDQ", "tool": f"nncf {nncf.__version__} quantize (model_type TRANSFORMER, preset MIXED, "
                                     "fast bias correction)",
            "smooth_quant_alpha": alpha if alpha > 0 else None,
            "activations": "uint8 asymmetric, per tensor (NNCF's int8 rewritten to uint8 over the same values: "
                           "export/qdq_u8.py)",
            "weights": "int8 symmetric, per channel (NNCF's overflow fix: first layer at 7 bits)",
            "calibration": {**feeds.source, "method": "nncf min-max statistics"},
            "kept_fp32": kept, "search_by": ctx.options.guard_by, "search_order": ctx.options.guard_order,
            **({"search_speed": speed["check"].record()} if speed["check"] is not None else {}),
            "sensitivity": "local SQNR on the fp32 graph with per-batch activation ranges", "stats": dict(stats)}
        return Built(fields={"producer": f"nncf {nncf.__version__} quantize with SmoothQuant (QDQ, U8 activations)",
                             "quantization": quantization},
                     guard=found["final"],
                     search={k: found[k] for k in ("met", "tuned", "confirmed", "stopped", "rounds", "chosen_round")},
                     state=Int8State(found["excluded"], quantize, quantization))


class SmoothInt8Avx2(Recipe):
    """The 7-bit-weight twin (NNCF's overflow fix on every layer, catalogue ``cpu_classes``: x86 without
    VNNI) with the same nodes kept fp32 and the same SmoothQuant, guarded on its own."""

    name = f"{NAME}.reduce_range"
    follows = NAME

    def build(self, ctx, out: Path, parent: Outcome | None) -> Built:
        if parent is None or not isinstance(parent.state, Int8State):
            raise ExportError(f"{self.name}: built only after {self.follows}, whose quantization it repeats")
        stats = parent.state.quantize(out, parent.state.excluded, True)
        return Built(fields={"producer": parent.entry.get("producer"), "quantization": {
            **parent.state.quantization, "stats": stats,
            "weights": "int8 symmetric at 7 bits on every layer (NNCF overflow fix ENABLE), per channel",
            "recipe": "7-bit weights: no VPMADDUBSW saturation on CPUs without VNNI"}})

    def guard(self, ctx, out: Path, built: Built):
        return ctx.evaluate(out, f"{self.key} (weights at 7 bits)")
