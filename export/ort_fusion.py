"""The ONNX Runtime graph: onnxscript's ORT fusions on a dynamo-exported (opset < 23) graph.

`onnxscript.rewriter.ort_fusions.optimize_for_ort` turns each scaled-dot-product attention (MatMul,
scale, additive bias, Softmax, MatMul between the head split and merge) into one com.microsoft
``MultiHeadAttention`` with its Q/K/V biases folded in; this covers the BERT self-attention over
``[prompt prefix; text]`` and both MMF cross-attention directions, because all three go through
``dfma.model.attention.attend``. It also fuses residual + LayerNorm into ``SkipLayerNormalization`` and
bias + GELU into ``BiasGelu``. (ONNX Runtime's own ``optimize_model(model_type="bert")`` fuses only
legacy-exported self-attention, and neither tool matches the opset-23 ``Attention`` op, hence the
separate translation at :data:`ORT_OPSET`.)
"""
from __future__ import annotations

from dfma.contract.errors import ExportError

ORT_OPSET = 18  # attention exported as MatMul/Softmax, the form the fusion rules match


def fuse_for_ort(model) -> tuple[object, dict[str, int]]:
    """Apply the ORT fusions to an ONNX IR model in place; returns (model, non-zero fusion counts)."""
    from onnxscript.rewriter.ort_fusions import optimize_for_ort

    try:
        model, counts = optimize_for_ort(model)
    except Exception as exc:
        raise ExportError(f"ONNX Runtime fusion pass failed: {type(exc).__name__}: {str(exc)[:2000]}") from exc
    return model, {name: int(count) for name, count in counts.items() if count}


def require_all_fused(summary: dict, graph: str) -> None:
    """ExportError unless every attention block of ``summary`` (graph_stats.fusion_summary) is fused."""
    if summary["blocks_unfused"] or summary["attention_nodes_fused"] != summary["attention_blocks"]:
        raise ExportError(
            f"{graph}: {summary['attention_nodes_fused']} fused attention node(s) for "
            f"{summary['attention_blocks']} attention block(s); not fused: {summary['blocks_unfused']}")
