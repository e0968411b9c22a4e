"""Recipe: dynamic INT8 (MatMulInteger, activations quantized per batch at run time) from the ONNX Runtime
fused graph (its row's ``derived_from``: dynamic INT8 is CPU-only anyway), embedding tables int8 per row
(:mod:`dfma.export.embedding_int8`), guarded by the same fp32-node
search as static INT8; and its 7-bit-weight twin for x86 CPUs without VNNI."""
from __future__ import annotations

from pathlib import Path

from dfma.export.precision.guard_sets import TUNE
from dfma.export.recipes.base import Built, Recipe
from dfma.export.recipes.int8_static import EMBEDDINGS, SENSITIVITY_BATCHES, Int8State, ReduceRangeTwin

NAME = __name__.rpartition(".")[2]


class DynamicInt8(Recipe):
    """Quantize dynamically, search, record."""

    name = NAME
    switch = ("--int8", "dynamic")
    switch_help = "dynamic INT8 (MatMulInteger, CPU)"
    timed = True

    def build(self, ctx, out: Path, parent) -> Built:
        import onnx

        from dfma.export import quantize as q
        from dfma.export.embedding_int8 import quantize_embeddings_file
        from dfma.export.precision.accuracy_guard import node_sensitivity
        from dfma.export.precision.keep_cost import speed_side

        src = ctx.graph_path(self.source)
        stats: dict = {}

        def quantize(path: Path, excluded, reduce_range: bool = False) -> dict:
            stats = q.quantize_dynamic_int8(src, path, exclude=excluded, reduce_range=reduce_range)
            return {**stats, "embeddings": quantize_embeddings_file(path)["tables"]}

        def build(excluded):
            stats.update(quantize(out, excluded))

        def evaluate(excluded):
            build(excluded)
            return ctx.evaluate(out, f"{self.key} ({len(excluded)} fp32)", parts=(TUNE,))

        def rank():
            nodes = q.weight_nodes(onnx.load(str(src)))
            return node_sensitivity(src, nodes, ctx.data.calibration.batches[:SENSITIVITY_BATCHES], None)

        speed = speed_side(ctx, onnx.load(str(src), load_external_data=False), out)
        found = ctx.search(evaluate, rank, rebuild=build, order=speed["order"], stop=speed["stop"],
                           confirm=lambda: ctx.evaluate(out, f"{self.key} (confirm)"))
        quantization = {"format": "dynamic", "op_types": list(q.DYNAMIC_OPS), "embeddings": EMBEDDINGS,
                        "kept_fp32": found["kept"], "search_by": ctx.options.guard_by,
                        "search_order": ctx.options.guard_order, "stats": stats,
                        **({"search_speed": speed["check"].record()} if speed["check"] is not None else {}),
                        "convolutions": "fp32 (dynamic quantization leaves them)"}
        return Built(fields={"derived_from": src.name, "cpu_only": True,
                             "producer": "onnxruntime quantize_dynamic (MatMulInteger)", "quantization": quantization},
                     guard=found["final"], search={k: found[k] for k in ("met", "tuned", "confirmed", "stopped", "rounds", "chosen_round")},
                     state=Int8State(found["excluded"], quantize, quantization))


class DynamicInt8Avx2(ReduceRangeTwin):
    """Dynamic INT8 with 7-bit weights."""

    name = f"{NAME}.reduce_range"
    follows = NAME
