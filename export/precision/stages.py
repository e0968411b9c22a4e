"""The stage graphs of every graph the precision step builds, cut and guarded like the whole graph.

Each new graph is cut at ``image_features`` (:mod:`dfma.export.split_graphs`); the stage graphs then run the
whole guard set against fp32 (its own guard row: agreement, logit errors, F1) and is compared with its
whole graph on random contract feeds at two shapes (``vs_whole``: the same nodes, so only fusion across the
cut may differ; the bound is the recipe's ``vs_whole_atol``: fp16 and INT8 may round differently where a
kernel fused across the cut in the whole graph, a requantization there).
"""
from __future__ import annotations

from pathlib import Path

from dfma.contract.graphs import STAGES


def cut_stage_graphs(ctx, outcome) -> tuple[dict, dict[str, Path]] | None:
    """Cut a recipe's graph (``outcome``), guard them; ``(stages entry, {bundle file: work path})``, or
    None when the bundle declares no stage graphs (its manifest has no complete `stages` section)."""
    import numpy as np

    from dfma.backends.compare import compare
    from dfma.backends.registry import backend as backend_row
    from dfma.backends.two_stage import TwoStage
    from dfma.config import model_config, special_token_ids
    from dfma.export.random_feeds import random_inputs
    from dfma.export.split_graphs import split_graph, stage_entries

    key, whole, executor = outcome.key, outcome.path, outcome.executor
    stages_io = ctx.manifest.stages
    if stages_io is None or not stages_io.complete:
        ctx.log(f"  {key}: the bundle declares no stage graphs (manifest stages)")
        return None
    parts = split_graph(whole, stages_io.features.to_json())
    row = backend_row("onnx-reference" if executor == "reference" else "onnxruntime-cpu")
    staged = TwoStage(*(row.build(parts[s].path, io=stages_io.io(s)) for s in STAGES), io=ctx.manifest.io).open()
    guard = ctx.compare(ctx.logits(staged, f"{key} two-stage ({executor})"))
    whole_run = row.build(whole).open()
    cfg, special = model_config(ctx.manifest), special_token_ids(ctx.manifest)
    rng, cases = np.random.default_rng(ctx.options.seed), []
    limits = ctx.manifest.limits
    for batch, length in ((1, 8), (min(7, limits.max_batch), limits.max_length)):
        feeds = random_inputs(cfg, special, batch, length, crops=True, rng=rng)
        diff = compare(whole_run.logits(feeds), staged.logits(feeds))
        cases.append({"batch": batch, "length": length, "max_abs_error": diff["max_abs_error"],
                      "top1_agreement": diff["top1_agreement"]})
    staged.close()
    whole_run.close()
    atol = outcome.vs_whole_atol
    worst = max(c["max_abs_error"] for c in cases)
    entries = stage_entries(parts, ctx.work)
    entries["parity"] = {**guard, "executor": executor, "passed": bool(
        ctx.meets(guard) and worst <= atol and all(c["top1_agreement"] == 1.0 for c in cases)),
        "target_agreement": ctx.options.target_agreement,
        "vs_whole": {"graph": key, "max_abs_error": worst, "atol": atol, "cases": cases},
        "inputs": f"MNRE validation sentences: {ctx.data.guard.source}; random contract feeds for vs_whole"}
    ctx.log(f"  {key} two-stage: agreement {100 * guard['top1_agreement']:.2f} % vs fp32, "
            f"max |stages - whole| {worst:.2e}")
    return entries, {entries[stage]["file"]: parts[stage].path for stage in STAGES}
