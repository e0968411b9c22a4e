"""The two-stage pair of every graph the precision step builds, cut and guarded like the whole graph.

Each new graph (fp16, INT8 static and dynamic, their AVX2 recipes) is cut at ``image_features``
(:mod:`dfma.export.split_graphs`); the pair then runs the whole guard set against fp32 (its own guard
row: agreement, logit errors, F1) and is compared with its whole graph on random contract feeds at two
shapes (``vs_whole``: the same nodes, so only fusion across the cut may differ).
"""
from __future__ import annotations

from pathlib import Path

from dfma.contract.graphs import STAGES

# a pair against its whole graph: fp32 math gives ~1e-6; fp16 and INT8 may round differently where a
# kernel fused across the cut in the whole graph (a requantization there), so their bound is looser
VS_WHOLE_ATOL = {"fp32": 1e-5, "fp16": 1e-2, "int8": 1e-2, "int8-dynamic": 1e-2}


def add_stages(ctx, key: str, whole: Path, executor: str = "onnxruntime") -> None:
    """Cut graph ``key`` (file ``whole`` in the work folder), guard the pair, record it in ``ctx``."""
    import numpy as np

    from dfma.backends.compare import compare, compare_with_labels
    from dfma.backends.registry import backend as backend_row
    from dfma.backends.two_stage import TwoStage
    from dfma.contract.graphs import CATALOGUE
    from dfma.export.random_feeds import random_inputs
    from dfma.export.split_graphs import split_graph, stage_entries
    from dfma.export.to_precision import _config

    stages_io = ctx.manifest.get("stages")
    if not stages_io:
        ctx.log(f"  {key}: no two-stage graphs (the bundle was exported before they existed)")
        return
    parts = split_graph(whole, stages_io["features"])
    backend = "onnx-reference" if executor == "reference" else "onnxruntime-cpu"
    row = backend_row(backend)
    pair = TwoStage(*(row.build(parts[s].path, io=stages_io[s]) for s in STAGES), io=ctx.manifest["io"]).open()
    guard = compare_with_labels(ctx.fp32, ctx.logits(pair, f"{key} two-stage ({executor})"), ctx.val.labels,
                                ctx.none_id)
    whole_run = row.build(whole).open()
    cfg, special = _config(ctx.manifest)
    rng, cases = np.random.default_rng(ctx.args.seed), []
    limits = ctx.manifest["limits"]
    for batch, length in ((1, 8), (min(7, limits["max_batch"]), limits["max_length"])):
        feeds = random_inputs(cfg, special, batch, length, crops=True, rng=rng)
        diff = compare(whole_run.logits(feeds), pair.logits(feeds))
        cases.append({"batch": batch, "length": length, "max_abs_error": diff["max_abs_error"],
                      "top1_agreement": diff["top1_agreement"]})
    pair.close()
    whole_run.close()
    atol = VS_WHOLE_ATOL.get(CATALOGUE[key].precision, 1e-2)
    worst = max(c["max_abs_error"] for c in cases)
    entries = stage_entries(parts, ctx.work)
    entries["parity"] = {**guard, "executor": executor, "passed": bool(
        guard["top1_agreement"] >= ctx.args.target_agreement and worst <= atol
        and all(c["top1_agreement"] == 1.0 for c in cases)),
        "target_agreement": ctx.args.target_agreement,
        "vs_whole": {"graph": key, "max_abs_error": worst, "atol": atol, "cases": cases},
        "inputs": f"MNRE validation sentences: {ctx.val.source}; random contract feeds for vs_whole"}
    ctx.graphs[key]["stages"] = entries
    for stage in STAGES:
        ctx.new_files[entries[stage]["file"]] = parts[stage].path
    ctx.log(f"  {key} two-stage: agreement {100 * guard['top1_agreement']:.2f} % vs fp32, "
            f"max |pair - whole| {worst:.2e}")
