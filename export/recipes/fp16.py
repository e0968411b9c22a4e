"""Recipe: the FP16 graph (fp16 weights and math; LayerNorm, Softmax and reductions fp32; fp32 inputs and
outputs; :mod:`dfma.export.fp16`), run here by the onnx reference evaluator (fp16 arithmetic) where ONNX
Runtime's CPU provider would cast nodes back to fp32 and the model is small, and checked against fp32 on
random contract feeds at two shapes besides the guard set."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dfma.export.precision.options import option
from dfma.export.recipes.base import Built, Recipe

NAME = __name__.rpartition(".")[2]
FP16_REL_TOL = 0.02  # fp16 vs fp32 on random shapes: max |diff| <= 2% of the largest |fp32 logit|
SUMMARY_FIELD = "fp16"  # the graphs entry's field holding the conversion summary (a manifest field name)
REFERENCE_MAX_PARAMS = 20_000_000  # above this the reference evaluator is too slow for the guard set


@dataclass(frozen=True)
class FP16Options:
    """The FP16 recipe's options."""

    fp16_executor: str = option("auto", "what runs the fp16 graph here: the onnx reference evaluator computes in "
                                        "fp16; ONNX Runtime's CPU provider casts most fp16 nodes back to fp32 "
                                        "(auto: reference when ONNX Runtime would cast and the model is small)",
                                choices=("auto", "onnxruntime", "reference"))
    fp16_keep: str = option("", "more op types to keep in fp32 in the FP16 graph, comma-separated (e.g. Attention; "
                                "always kept: LayerNormalization, Softmax, Reduce*, CumSum, Exp, Log, Pow, Sqrt, ...)",
                            metavar="OPS")


class FP16Recipe(Recipe):
    """fp16 from the portable graph; guarded on its executor; random-shape parity."""

    name = NAME
    options = FP16Options
    switch = ("--fp16", None)
    switch_help = "build the FP16 graph (with no selector: every graph)"

    def build(self, ctx, out: Path, parent) -> Built:
        import numpy as np
        import onnx

        from dfma.backends.compare import compare as compare_shapes
        from dfma.config import model_config, special_token_ids
        from dfma.export import fp16
        from dfma.export.precision.context import open_runner
        from dfma.export.random_feeds import random_inputs

        opts = ctx.options_of(FP16Options)
        source = ctx.graph_path(self.source)
        extra = tuple(op.strip() for op in opts.fp16_keep.split(",") if op.strip())
        res = fp16.convert_to_fp16(onnx.load(str(source)), fp32_ops=fp16.DEFAULT_FP32_OPS + extra)
        onnx.save(res.model, str(out))
        fallbacks = fp16.ort_fp32_fallbacks(out)
        params = sum(int(np.prod(t.dims)) for t in res.model.graph.initializer)
        executor = opts.fp16_executor
        if executor == "auto":
            executor = "reference" if fallbacks and params <= REFERENCE_MAX_PARAMS else "onnxruntime"
        run = open_runner(out, "onnx-reference" if executor == "reference" else "onnxruntime-cpu")
        row = ctx.compare(ctx.logits(run, f"{self.key} ({executor})"))
        cfg, special = model_config(ctx.manifest), special_token_ids(ctx.manifest)
        ref_run, rng, shapes = open_runner(source), np.random.default_rng(ctx.options.seed), []
        limits = ctx.manifest.limits
        for batch, length in ((1, 8), (min(7, limits.max_batch), limits.max_length)):
            feeds = random_inputs(cfg, special, batch, length, crops=True, rng=rng)
            diff = compare_shapes(ref_run.logits(feeds), run.logits(feeds))
            shapes.append({"batch": batch, "length": length,
                           **{k: diff[k] for k in ("max_abs_error", "max_rel_error", "top1_agreement")}})
        worst_rel = max(s["max_rel_error"] for s in shapes)
        why = (f"ONNX Runtime's CPU provider would run {sum(fallbacks.values())} fp16 node(s) in fp32 ({fallbacks})"
               if fallbacks else "all fp16 nodes have CPU kernels")
        return Built(
            fields={"producer": "dfma.export.fp16 (onnx + numpy)", SUMMARY_FIELD: res.summary(), "validation": {
                "executor": "onnx.reference.ReferenceEvaluator (fp16 arithmetic; GEMM/Conv accumulate in fp32)"
                if executor == "reference" else "onnxruntime CPUExecutionProvider", "why": why,
                "ort_cpu_fp32_fallbacks": fallbacks}},
            guard={**row, "executor": executor}, executor=executor,
            parity={"random_shapes": {"cases": shapes, "rtol": FP16_REL_TOL, "passed": worst_rel <= FP16_REL_TOL}},
            passed=bool(worst_rel <= FP16_REL_TOL and ctx.meets(row)))
