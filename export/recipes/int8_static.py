"""Recipe: static INT8 (QDQ: per-channel S8 weights, U8 activations calibrated on MNRE training sentences;
ranges saved as the bundle's ``calibration.json``; embedding tables int8 per row, :mod:`dfma.export.embedding_int8`), guarded by the search that keeps the most sensitive
nodes in fp32; also emulates the symmetric S8 form TensorRT compiles. Its 7-bit-weight twin for x86 CPUs
without VNNI (:class:`ReduceRangeTwin`) re-quantizes with the same nodes kept in fp32."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from dfma.contract.errors import ExportError
from dfma.contract.graphs import CALIBRATION_FILE
from dfma.export.precision.options import UsageError, option
from dfma.export.precision.guard_sets import TUNE
from dfma.export.recipes.base import Built, Outcome, Recipe

NAME = __name__.rpartition(".")[2]
DEFAULT_METHOD = "minmax"  # measured best on the trained tiny checkpoint (docs/precision.md)
SENSITIVITY_BATCHES = 2  # calibration batches (of 8 sentences) the sensitivity ranking observes
EMBEDDINGS = ("int8 symmetric per row, gathered before they are dequantized (export/embedding_int8.py): tables "
              "read only by Gather, of 1 MiB or more")
IMAGE_ONLY_REASON = ("image encoder (depends on pixels only): no images or photos were given, so its ranges would come "
                     "from all-zero images; pass --images DIR to quantize it")


@dataclass(frozen=True)
class StaticOptions:
    """The static INT8 recipe's options."""

    calibration_method: str | None = option(None, "static INT8 range estimator (default: minmax, or the cache's)",
                                            choices=("minmax", "entropy", "percentile"), type=str)
    calibration_cache: Path | None = option(None, "reuse these ranges (a calibration.json of a bundle with the "
                                                  "same fp32 graph)", metavar="FILE", type=Path)


@dataclass(frozen=True)
class Int8State:
    """What the 7-bit twin reuses: the nodes kept fp32, how to quantize again, the quantization record."""

    excluded: list
    quantize: Callable  # (out, excluded, reduce_range) -> stats
    quantization: dict


def static_ranges(ctx, pre: Path, nodes: set[str]) -> tuple[dict, dict, Path]:
    """Calibration ranges for ``nodes`` (calibrated now, or from a cache): ``(ranges, calibration record,
    the bundle's calibration.json written into the work folder)``."""
    import onnx

    from dfma.export import quantize as q
    from dfma.contract.weight_store import graph_digest
    from dfma.export.precision import calibration as cal

    opts, step = ctx.options_of(StaticOptions), ctx.options
    portable = ctx.portable
    graph_sha = graph_digest(portable)  # the graph with its weights (its file alone leaves them in weights.bin)
    cache, own = opts.calibration_cache, ctx.bundle.folder / CALIBRATION_FILE
    if cache is None and CALIBRATION_FILE in ctx.manifest.files and _reusable(cal.load_cache(own), ctx, graph_sha):
        cache = own  # this bundle's own ranges, computed with the same settings: no need to calibrate again
    if cache is not None:
        doc = cal.load_cache(cache)
        if doc["graph_sha256"] != graph_sha:
            raise ExportError(f"--calibration-cache {cache}: computed for another fp32 graph (sha256 "
                              f"{doc['graph_sha256'][:12]}..., this bundle's {portable.name} is "
                              f"{graph_sha[:12]}...)")
        if opts.calibration_method and opts.calibration_method != doc["method"]:
            raise UsageError(f"--calibration-method {opts.calibration_method}: the cache {cache} holds "
                             f"{doc['method']} ranges; drop one of the two options")
        needed = cal.calibration_tensors(onnx.load(str(pre)), q.STATIC_OPS, nodes)
        missing = [t for t in needed if t not in doc["ranges"]]
        if missing:
            raise ExportError(f"--calibration-cache {cache}: no range for {len(missing)} tensor(s) to quantize "
                              f"(e.g. {missing[:3]}); it was calibrated {doc['source'].get('images', '')}")
        ctx.log(f"reusing calibration ranges from {cache} ({doc['method']}, {doc['source'].get('samples')} samples)")
        method, ranges, source = doc["method"], doc["ranges"], {**doc["source"], "reused_from": str(cache)}
    else:
        feeds = ctx.data.calibration
        method = opts.calibration_method or DEFAULT_METHOD
        reader = cal.MNRECalibrationReader(feeds.batches, progress=not step.quiet, desc=f"calibrating ({method})")
        ranges, source = cal.calibrate(pre, reader, method, nodes=nodes), feeds.source
    path = ctx.work / CALIBRATION_FILE
    cal.save_cache(path, ranges, method=method, source=source, graph=portable.name, graph_sha256=graph_sha,
                   op_types=q.STATIC_OPS)
    return ranges, {"method": method, "file": CALIBRATION_FILE, **source}, path


def _reusable(doc: dict, ctx, graph_sha: str) -> bool:
    """Whether a bundle's own calibration.json was computed with the settings asked for now."""
    src, opts, step = doc["source"], ctx.options_of(StaticOptions), ctx.options
    return (doc["graph_sha256"] == graph_sha and doc["method"] == (opts.calibration_method or DEFAULT_METHOD)
            and src.get("samples") == step.calibration_samples and src.get("seed") == step.seed
            and src.get("images_kind") == ("folder" if step.images is not None else "photos" if ctx.photos else "absent")
            and step.crops is None)


class StaticInt8(Recipe):
    """Calibrate (or reuse ranges), quantize, search; emulate the S8 form TensorRT compiles."""

    name = NAME
    options = StaticOptions
    switch = ("--int8", "static")
    switch_help = "static INT8 (QDQ, calibrated)"
    timed = True

    def build(self, ctx, out: Path, parent) -> Built:
        import onnx

        from dfma.export import quantize as q
        from dfma.export.embedding_int8 import quantize_embeddings_file
        from dfma.export.fp16 import module_of
        from dfma.export.precision.accuracy_guard import node_sensitivity
        from dfma.export.precision.keep_cost import speed_side

        source = ctx.graph_path(self.source)
        pre = q.preprocess(source, ctx.work / f"{source.stem}.pre.onnx")
        pre_model = onnx.load(str(pre))
        start = q.image_only_nodes(pre_model) if ctx.options.images is None and not ctx.photos else []
        nodes = {n.name for n in pre_model.graph.node if n.op_type in q.STATIC_OPS} - set(start)
        ranges, calibration, cal_file = static_ranges(ctx, pre, nodes)
        stats: dict = {}

        def quantize(path: Path, excluded, reduce_range: bool = False) -> dict:
            stats = q.quantize_static_qdq(pre, path, ranges, exclude=excluded, reduce_range=reduce_range)
            return {**stats, "embeddings": quantize_embeddings_file(path)["tables"]}

        def build(excluded):
            stats.update(quantize(out, excluded))

        def evaluate(excluded):
            build(excluded)
            return ctx.evaluate(out, f"{self.key} ({len(excluded)} fp32)", parts=(TUNE,))

        modules = {n.name: module_of(n) for n in onnx.load(str(source)).graph.node}  # pre-processing drops them

        def rank():
            names = q.quantized_node_names(onnx.load(str(out)))
            rows = node_sensitivity(pre, names, ctx.data.calibration.batches[:SENSITIVITY_BATCHES], ranges)
            return [{**r, "module": r.get("module") or modules.get(r["node"], "")} for r in rows]

        speed = speed_side(ctx, pre_model, out)
        found = ctx.search(evaluate, rank, start=start, rebuild=build, order=speed["order"], stop=speed["stop"],
                           confirm=lambda: ctx.evaluate(out, f"{self.key} (confirm)"))
        found["kept"] = [{**k, "module": k.get("module") or modules.get(k["node"], "")} for k in found["kept"]]
        kept = [{"node": n, "module": modules.get(n, ""), "reason": IMAGE_ONLY_REASON} for n in start] + found["kept"]
        quantization = {
            "format": "QDQ", "activations": "uint8 asymmetric, per tensor", "weights": "int8 symmetric, per channel",
            "op_types": list(q.STATIC_OPS), "embeddings": EMBEDDINGS,
            "recipe": "full range: exact where the CPU has INT8 dot products (VNNI, AMX, ARM); see the "
                      "reduce_range twin for the others",
            "calibration": calibration, "kept_fp32": kept, "search_by": ctx.options.guard_by,
            "search_order": ctx.options.guard_order, "stats": stats,
            **({"search_speed": speed["check"].record()} if speed["check"] is not None else {}),
            "tensorrt": "TensorRT takes symmetric int8 only: export/to_tensorrt.py rewrites the uint8 activation "
                        "Q/DQ to int8 over the same range"}
        return Built(fields={"producer": "onnxruntime quantize_static (QDQ)", "quantization": quantization},
                     guard=found["final"], search={k: found[k] for k in ("met", "tuned", "confirmed", "stopped", "rounds", "chosen_round")},
                     parity={"tensorrt_s8_emulated": self._tensorrt_form(ctx, out)},
                     files={CALIBRATION_FILE: cal_file}, state=Int8State(found["excluded"], quantize, quantization))

    def _tensorrt_form(self, ctx, out: Path) -> dict:
        """The guard row of the symmetric S8 form export/to_tensorrt.py compiles, emulated on ONNX Runtime."""
        import onnx

        from dfma.export.quantize import to_symmetric_s8

        s8 = ctx.work / f"{out.stem}.tensorrt-s8.onnx"
        onnx.save(to_symmetric_s8(onnx.load(str(out)))[0], str(s8))
        row = ctx.evaluate(s8, f"{self.key} as TensorRT S8", optimization="basic")
        return {**{k: row[k] for k in ("top1_agreement", "max_abs_error", "mean_abs_error", "f1", "f1_delta_points")},
                "executor": "onnxruntime CPU, basic optimizations (Q/DQ computed as written)",
                "note": "the symmetric int8 form TensorRT compiles (uint8 activation ranges re-centred on zero)"}


class ReduceRangeTwin(Recipe):
    """The 7-bit-weight twin of an INT8 graph (catalogue ``cpu_classes``: x86 without VNNI), with the same
    nodes kept in fp32; guarded on its own (its integer products are exact on every x86 CPU). A subclass
    sets ``name`` (its row's ``recipe``) and ``follows`` (the INT8 recipe it reuses)."""

    def build(self, ctx, out: Path, parent: Outcome | None) -> Built:
        if parent is None or not isinstance(parent.state, Int8State):
            raise ExportError(f"{self.name}: built only after {self.follows}, whose quantization it repeats")
        stats = parent.state.quantize(out, parent.state.excluded, True)
        return Built(fields={"quantization": {
            **parent.state.quantization, "stats": stats, "weights": "int8 symmetric at 7 bits (reduce_range), per channel",
            "recipe": "reduce_range: no VPMADDUBSW saturation on CPUs without VNNI; exact integer products on "
                      "every x86 CPU"}})

    def guard(self, ctx, out: Path, built: Built):
        return ctx.evaluate(out, f"{self.key} (weights at 7 bits)")


class StaticInt8Avx2(ReduceRangeTwin):
    """Static INT8 with 7-bit weights."""

    name = f"{NAME}.reduce_range"
    follows = NAME
