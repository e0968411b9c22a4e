"""The INT8 graphs of the precision step: calibration ranges, static QDQ with the guard's search, dynamic
INT8, and their 7-bit-weight twins for x86 CPUs without VNNI (catalogue rows ``int8-avx2`` and
``int8-dynamic-avx2``). Each builder adds its graph, guard row and parity record to the step's context
(``export/to_precision.py``)."""
from __future__ import annotations

from pathlib import Path

from dfma.export.precision_entries import graph_entry as _graph_entry
from dfma.export.precision_entries import parity_record as _parity
from dfma.export.precision_options import (
    CALIBRATION_FILE,
    DEFAULT_METHOD,
    F1_TOLERANCE,
    IMAGE_ONLY_REASON,
    SENSITIVITY_BATCHES,
    UsageError,
)

from dfma.contract.errors import ExportError
from dfma.contract.graphs import CATALOGUE, file_of


def static_ranges(ctx, pre: Path, nodes: set[str]) -> tuple[dict, dict]:
    """Calibration ranges for ``nodes`` (calibrated now, or from a cache): ``(ranges, calibration record)``;
    also writes the bundle's ``calibration.json`` into the work folder."""
    import onnx
    from dfma.export import calibration as cal
    from dfma.export import quantize as q

    args = ctx.args
    graph_sha = ctx.manifest["files"][ctx.portable.name]["sha256"]
    cache, own = args.calibration_cache, ctx.bundle.folder / CALIBRATION_FILE
    if cache is None and CALIBRATION_FILE in ctx.manifest["files"] and _reusable(cal.load_cache(own), args, graph_sha, ctx):
        cache = own  # this bundle's own ranges, computed with the same settings: no need to calibrate again
    if cache is not None:
        doc = cal.load_cache(cache)
        if doc["graph_sha256"] != graph_sha:
            raise ExportError(f"--calibration-cache {cache}: computed for another fp32 graph (sha256 "
                              f"{doc['graph_sha256'][:12]}..., this bundle's {ctx.portable.name} is "
                              f"{graph_sha[:12]}...)")
        if args.calibration_method and args.calibration_method != doc["method"]:
            raise UsageError(f"--calibration-method {args.calibration_method}: the cache {cache} holds "
                             f"{doc['method']} ranges; drop one of the two options")
        needed = cal.calibration_tensors(onnx.load(str(pre)), q.STATIC_OPS, nodes)
        missing = [t for t in needed if t not in doc["ranges"]]
        if missing:
            raise ExportError(f"--calibration-cache {cache}: no range for {len(missing)} tensor(s) to quantize "
                              f"(e.g. {missing[:3]}); it was calibrated {doc['source'].get('images', '')}")
        ctx.log(f"reusing calibration ranges from {cache} ({doc['method']}, {doc['source'].get('samples')} samples)")
        method, ranges, source = doc["method"], doc["ranges"], {**doc["source"], "reused_from": str(cache)}
    else:
        feeds = ctx.calibration_feeds()
        method = args.calibration_method or DEFAULT_METHOD
        reader = cal.MNRECalibrationReader(feeds.batches, progress=ctx.progress, desc=f"calibrating ({method})")
        ranges, source = cal.calibrate(pre, reader, method, nodes=nodes), feeds.source
    cal.save_cache(ctx.work / CALIBRATION_FILE, ranges, method=method, source=source, graph=ctx.portable.name,
                   graph_sha256=graph_sha, op_types=q.STATIC_OPS)
    ctx.new_files[CALIBRATION_FILE] = ctx.work / CALIBRATION_FILE
    return ranges, {"method": method, "file": CALIBRATION_FILE, **source}


def build_static(ctx) -> None:
    """Calibrate (or reuse ranges), quantize, guard; also emulate the S8 form TensorRT compiles."""
    import onnx
    from dfma.export import quantize as q
    from dfma.export.fp16 import module_of
    from dfma.export.trt_build import onnx_bytes

    args = ctx.args
    pre = q.preprocess(ctx.portable, ctx.work / "portable.pre.onnx")
    pre_model = onnx.load(str(pre))
    start = q.image_only_nodes(pre_model) if args.images is None and not ctx.photos else []
    nodes = {n.name for n in pre_model.graph.node if n.op_type in q.STATIC_OPS} - set(start)
    ranges, calibration = static_ranges(ctx, pre, nodes)
    out = ctx.work / file_of("int8")
    stats = {}

    def build(excluded):
        stats.update(q.quantize_static_qdq(pre, out, ranges, exclude=excluded))

    def evaluate(excluded):
        build(excluded)
        return ctx.evaluate(out, f"int8 static ({len(excluded)} fp32)")

    modules = {n.name: module_of(n) for n in onnx.load(str(ctx.portable)).graph.node}  # pre-processing drops them

    def rank():
        names = q.quantized_node_names(onnx.load(str(out)))
        rows = ctx.guard.node_sensitivity(pre, names, ctx.calibration_feeds().batches[:SENSITIVITY_BATCHES], ranges)
        return [{**r, "module": r.get("module") or modules.get(r["node"], "")} for r in rows]

    found = ctx.guard.search(evaluate, rank, target=args.target_agreement, budget=args.guard_budget,
                             start=start, rebuild=build, log=ctx.log, f1_tolerance=F1_TOLERANCE, by=args.guard_by)
    found["kept"] = [{**k, "module": k.get("module") or modules.get(k["node"], "")} for k in found["kept"]]
    kept = [{"node": n, "module": modules.get(n, ""), "reason": IMAGE_ONLY_REASON} for n in start] + found["kept"]
    ctx.results["int8"] = found["final"]
    ctx.search["int8"] = {k: found[k] for k in ("met", "stopped", "rounds", "chosen_round")}
    ctx.graphs["int8"] = _graph_entry(onnx.load(str(out)), "int8", producer="onnxruntime quantize_static (QDQ)",
                                      quantization={
                                          "format": "QDQ", "activations": "uint8 asymmetric, per tensor",
                                          "weights": "int8 symmetric, per channel", "op_types": list(q.STATIC_OPS),
                                          "recipe": "full range: exact where the CPU has INT8 dot products "
                                                    "(VNNI, AMX, ARM); see int8-avx2 for the others",
                                          "calibration": calibration,
                                          "kept_fp32": kept, "search_by": args.guard_by, "stats": stats,
                                          "tensorrt": "TensorRT takes symmetric int8 only: export/to_tensorrt.py "
                                                      "rewrites the uint8 activation Q/DQ to int8 over the same range"})
    ctx.parity["int8"] = _parity(found["final"], ctx, "onnxruntime")
    s8 = ctx.work / "int8.tensorrt-s8.onnx"  # what export/to_tensorrt.py compiles, emulated here
    s8.write_bytes(onnx_bytes(out, "int8"))
    from dfma.backends.compare import compare_with_labels

    row = compare_with_labels(ctx.fp32, ctx.logits(ctx.runner(s8, optimization="basic"), "int8 as TensorRT S8"),
                              ctx.val.labels, ctx.none_id)
    ctx.parity["int8"]["tensorrt_s8_emulated"] = {
        **{k: row[k] for k in ("top1_agreement", "max_abs_error", "mean_abs_error", "f1", "f1_delta_points")},
        "executor": "onnxruntime CPU, basic optimizations (Q/DQ computed as written)",
        "note": "the symmetric int8 form TensorRT compiles (uint8 activation ranges re-centred on zero)"}
    ctx.new_files[file_of("int8")] = out
    build_variant(ctx, "int8-avx2", found["excluded"], lambda path, excluded: q.quantize_static_qdq(
        pre, path, ranges, exclude=excluded, reduce_range=True), ctx.graphs["int8"]["quantization"])


def build_variant(ctx, key: str, excluded: list[str], quantize, quantization: dict) -> None:
    """The 7-bit-weight twin of an INT8 graph (catalogue ``cpu_classes``: x86 without VNNI), with the same
    nodes kept in fp32; guarded on its own (its integer products are exact on every x86 CPU)."""
    import onnx

    out = ctx.work / file_of(key)
    stats = quantize(out, excluded)
    row = ctx.evaluate(out, f"{key} (weights at 7 bits)")
    ctx.results[key] = row
    ctx.graphs[key] = _graph_entry(onnx.load(str(out)), key, quantization={
        **quantization, "stats": stats, "weights": "int8 symmetric at 7 bits (reduce_range), per channel",
        "recipe": "reduce_range: no VPMADDUBSW saturation on CPUs without VNNI; exact integer products on every x86 CPU"})
    ctx.parity[key] = _parity(row, ctx, "onnxruntime")
    ctx.new_files[file_of(key)] = out


def _reusable(doc: dict, args, graph_sha: str, ctx) -> bool:
    """Whether a bundle's own calibration.json was computed with the settings asked for now."""
    src = doc["source"]
    return (doc["graph_sha256"] == graph_sha and doc["method"] == (args.calibration_method or DEFAULT_METHOD)
            and src.get("samples") == args.calibration_samples and src.get("seed") == args.seed
            and src.get("images_kind") == ("folder" if args.images is not None else "photos" if ctx.photos else "absent")
            and args.crops is None)


def build_dynamic(ctx) -> None:
    """Dynamic INT8 from the ONNX Runtime fused graph (CPU), guarded the same way."""
    import onnx
    from dfma.export import quantize as q

    source = CATALOGUE["int8-dynamic"].derived_from  # the fused graph: dynamic INT8 is CPU-only anyway
    src = ctx.bundle.graph_path(source) if source in ctx.manifest["graphs"] else ctx.portable
    out = ctx.work / file_of("int8-dynamic")
    stats = {}

    def build(excluded):
        stats.update(q.quantize_dynamic_int8(src, out, exclude=excluded))

    def evaluate(excluded):
        build(excluded)
        return ctx.evaluate(out, f"int8 dynamic ({len(excluded)} fp32)")

    def rank():
        nodes = q.weight_nodes(onnx.load(str(src)))
        return ctx.guard.node_sensitivity(src, nodes, ctx.calibration_feeds().batches[:SENSITIVITY_BATCHES], None)

    found = ctx.guard.search(evaluate, rank, target=ctx.args.target_agreement, budget=ctx.args.guard_budget,
                             rebuild=build, log=ctx.log, f1_tolerance=F1_TOLERANCE, by=ctx.args.guard_by)
    ctx.results["int8-dynamic"] = found["final"]
    ctx.search["int8-dynamic"] = {k: found[k] for k in ("met", "stopped", "rounds", "chosen_round")}
    ctx.graphs["int8-dynamic"] = _graph_entry(
        onnx.load(str(out)), "int8-dynamic", derived_from=src.name, cpu_only=True,
        producer="onnxruntime quantize_dynamic (MatMulInteger)",
        quantization={"format": "dynamic", "op_types": list(q.DYNAMIC_OPS), "kept_fp32": found["kept"],
                      "search_by": ctx.args.guard_by,
                      "stats": stats, "convolutions": "fp32 (dynamic quantization leaves them)"})
    ctx.parity["int8-dynamic"] = _parity(found["final"], ctx, "onnxruntime")
    ctx.new_files[file_of("int8-dynamic")] = out
    build_variant(ctx, "int8-dynamic-avx2", found["excluded"], lambda path, excluded: q.quantize_dynamic_int8(
        src, path, exclude=excluded, reduce_range=True), ctx.graphs["int8-dynamic"]["quantization"])
