"""The manifest entries the precision step writes for each graph: its ``graphs`` entry (catalogue columns,
op counts, the host its guard ran on) and its ``parity`` record (the guard row against fp32)."""
from __future__ import annotations

from dfma.contract.graphs import CATALOGUE


def graph_entry(model, key: str, *, derived_from: str | None = None, **extra) -> dict:
    from collections import Counter

    import onnxruntime

    from dfma.host import host_info

    return {**CATALOGUE[key].manifest_fields(), **({"derived_from": derived_from} if derived_from else {}),
            "guard_host": {**host_info(), "onnxruntime": onnxruntime.__version__},  # where its guard ran
            "opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=None),
            "nodes": len(model.graph.node),
            "op_counts": dict(sorted(Counter(n.op_type for n in model.graph.node).items())),
            **extra}


def parity_record(row: dict, ctx, executor: str) -> dict:
    return {**row, "passed": bool(row["top1_agreement"] >= ctx.args.target_agreement), "executor": executor,
            "target_agreement": ctx.args.target_agreement, "reference": f"fp32 {ctx.portable.name} on ONNX Runtime CPU "
            "(validated against eager: parity.portable; the fused graph matches it within parity.ort)",
            "inputs": f"MNRE validation sentences: {ctx.val.source}"}
