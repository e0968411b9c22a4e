"""Add FP16 and INT8 graphs to a bundle, guarded against fp32: ``python export/to_precision.py BUNDLE``.

Builds from the bundle's portable fp32 graph: ``model.fp16.onnx`` (fp16 weights and math; LayerNorm,
Softmax and reductions in fp32; fp32 inputs/outputs), ``model.int8.onnx`` (static QDQ: per-channel S8
weights, U8 activations calibrated on MNRE training sentences; ranges saved as ``calibration.json``) and
``model.int8-dynamic.onnx`` (dynamic INT8, CPU). Each is compared with fp32 on MNRE validation sentences
(top-1 agreement, logit errors, micro-F1); an INT8 graph below the agreement target is re-quantized with
its most sensitive nodes kept in fp32 until the target is met or the budget is spent. The faster INT8
graph among those meeting the guard (fp32 included; OpenVINO too where installed) becomes
``defaults.auto``, what ``precision="auto"`` serves. The bundle is updated atomically.
Exit status 0 on success (also when a guard target is missed: the manifest says so), 1 on an error
(nothing written), 2 on a usage error.
"""
from __future__ import annotations

import os
import sys

if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)  # import everything as dfma.export.*, never export/ modules by bare name

import datetime as _dt  # noqa: E402
import signal  # noqa: E402
import tempfile  # noqa: E402
from pathlib import Path  # noqa: E402

from dfma.contract.errors import DFMAError, ExportError  # noqa: E402
from dfma.contract.graphs import CATALOGUE, file_of  # noqa: E402
from dfma.export.precision_options import (  # noqa: E402
    CALIBRATION_FILE, DEFAULT_METHOD, F1_TOLERANCE, FP16_REL_TOL, IMAGE_ONLY_REASON, LARGE,
    LARGE_BYTES, SENSITIVITY_BATCHES, SMALL, UsageError, build_parser, check_args,
)


class Context:
    """What every step shares: the bundle, the work folder, the guard data and the fp32 reference."""

    def __init__(self, args, work: Path, steps: int):
        from dfma.export import accuracy_guard as guard
        from dfma.export.calibration import mnre_feeds
        from dfma.contract.progress import Steps
        from dfma.contract.bundle import open_bundle

        self.args, self.work, self.guard = args, work, guard
        self.bundle = open_bundle(args.bundle)
        self.manifest = self.bundle.manifest
        self.portable = self.bundle.graph_path("portable")
        large = self.portable.stat().st_size > LARGE_BYTES
        if args.calibration_samples is None:
            args.calibration_samples = (LARGE if large else SMALL)[0]
        if args.guard_samples is None:
            args.guard_samples = (LARGE if large else SMALL)[1]
        if args.guard_budget is None:
            args.guard_budget = (LARGE if large else SMALL)[2]
        if args.latency_samples is None:
            args.latency_samples = (LARGE if large else SMALL)[3]
        self.none_id = self.manifest["labels"].index("None")
        self.steps = Steps(steps, quiet=args.quiet)
        self.progress = not args.quiet
        from dfma.export import photos

        self.photos = args.images is None and not args.no_photos and photos.available()
        if args.images is None and not self.photos:
            self.log("no images and no photos (scikit-image not installed, or --no-photos): the image encoder "
                     "stays fp32 in static INT8 and the guard does not exercise it")
        self.feeds = lambda name, n, bs: mnre_feeds(self.bundle.folder, self.manifest, args.data / name, n,
                                                    seed=args.seed, batch_size=bs, images=args.images,
                                                    photos=self.photos,
                                                    crops=args.crops)
        self.val = self.feeds("mnre_val.txt", args.guard_samples, 32)
        self._cal = None
        self.fp32 = self.logits(self.runner(self.portable), f"fp32 {self.portable.name}")
        self.results, self.graphs, self.parity, self.search, self.new_files = {}, {}, {}, {}, {}

    @staticmethod
    def runner(path: Path, backend: str = "onnxruntime-cpu", **options):
        """An open runner of the registry on a graph file (ONNX Runtime CPU unless told otherwise)."""
        from dfma.backends.registry import backend as backend_row

        return backend_row(backend).build(path, **options).open()

    def logits(self, runner, what: str):
        """Guard-set logits of an open runner."""
        return self.guard.run_feeds(runner, self.val, desc=f"guard: {what}", progress=self.progress)

    def calibration_feeds(self):
        """MNRE training feeds (drawn once)."""
        if self._cal is None:
            self._cal = self.feeds("mnre_train.txt", self.args.calibration_samples, 8)
        return self._cal

    def evaluate(self, path: Path, what: str, backend: str = "onnxruntime-cpu") -> dict:
        """Run a graph on the guard set and compare with the fp32 graph."""
        from dfma.backends.compare import compare_with_labels

        return compare_with_labels(self.fp32, self.logits(self.runner(path, backend), what), self.val.labels,
                                   self.none_id)

    def log(self, line: str) -> None:
        """A progress line on stderr (not with --quiet)."""
        if self.progress:
            print(line, file=sys.stderr, flush=True)


def build_fp16(ctx: Context) -> None:
    """FP16 graph, its executor here, random-shape parity and the guard row."""
    import numpy as np
    import onnx

    from dfma.backends.compare import compare as compare_shapes, compare_with_labels
    from dfma.export import fp16
    from dfma.export.random_feeds import random_inputs

    out = ctx.work / file_of("fp16")
    extra = tuple(op.strip() for op in ctx.args.fp16_keep.split(",") if op.strip())
    res = fp16.convert_to_fp16(onnx.load(str(ctx.portable)), fp32_ops=fp16.DEFAULT_FP32_OPS + extra)
    onnx.save(res.model, str(out))
    fallbacks = fp16.ort_fp32_fallbacks(out)
    params = sum(int(np.prod(t.dims)) for t in res.model.graph.initializer)
    executor = ctx.args.fp16_executor
    if executor == "auto":
        executor = "reference" if fallbacks and params <= 20_000_000 else "onnxruntime"
    run = ctx.runner(out, "onnx-reference" if executor == "reference" else "onnxruntime-cpu")
    row = compare_with_labels(ctx.fp32, ctx.logits(run, f"fp16 ({executor})"), ctx.val.labels, ctx.none_id)
    cfg, special = _config(ctx.manifest)
    ref_run, rng, shapes = ctx.runner(ctx.portable), np.random.default_rng(ctx.args.seed), []
    limits = ctx.manifest["limits"]
    for batch, length in ((1, 8), (min(7, limits["max_batch"]), limits["max_length"])):
        feeds = random_inputs(cfg, special, batch, length, crops=True, rng=rng)
        diff = compare_shapes(ref_run.logits(feeds), run.logits(feeds))
        shapes.append({"batch": batch, "length": length,
                       **{k: diff[k] for k in ("max_abs_error", "max_rel_error", "top1_agreement")}})
    worst_rel = max(s["max_rel_error"] for s in shapes)
    why = (f"ONNX Runtime's CPU provider would run {sum(fallbacks.values())} fp16 node(s) in fp32 ({fallbacks})"
           if fallbacks else "all fp16 nodes have CPU kernels")
    ctx.results["fp16"] = {**row, "executor": executor}
    ctx.graphs["fp16"] = _graph_entry(res.model, "fp16", producer="dfma.export.fp16 (onnx + numpy)",
                                      fp16=res.summary(), validation={
                                          "executor": "onnx.reference.ReferenceEvaluator (fp16 arithmetic; GEMM/Conv "
                                                      "accumulate in fp32)" if executor == "reference"
                                          else "onnxruntime CPUExecutionProvider", "why": why,
                                          "ort_cpu_fp32_fallbacks": fallbacks})
    ctx.parity["fp16"] = {**_parity(row, ctx, executor), "random_shapes": {
        "cases": shapes, "rtol": FP16_REL_TOL, "passed": worst_rel <= FP16_REL_TOL}}
    ctx.parity["fp16"]["passed"] = bool(worst_rel <= FP16_REL_TOL
                                        and row["top1_agreement"] >= ctx.args.target_agreement)
    ctx.new_files[file_of("fp16")] = out


def static_ranges(ctx: Context, pre: Path, nodes: set[str]) -> tuple[dict, dict]:
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


def build_static(ctx: Context) -> None:
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

    def rank():
        names = q.quantized_node_names(onnx.load(str(out)))
        return ctx.guard.node_sensitivity(pre, names, ctx.calibration_feeds().batches[:SENSITIVITY_BATCHES], ranges)

    found = ctx.guard.search(evaluate, rank, target=args.target_agreement, budget=args.guard_budget,
                             start=start, rebuild=build, log=ctx.log)
    modules = {n.name: module_of(n) for n in onnx.load(str(ctx.portable)).graph.node}  # pre-processing drops them
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
                                          "kept_fp32": kept, "stats": stats,
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


def build_variant(ctx: Context, key: str, excluded: list[str], quantize, quantization: dict) -> None:
    """The 7-bit-weight twin of an INT8 graph (catalogue ``cpu_classes``: x86 without VNNI), with the same
    nodes kept in fp32; guarded on its own (its integer results are the same on every x86 CPU)."""
    import onnx

    out = ctx.work / file_of(key)
    stats = quantize(out, excluded)
    row = ctx.evaluate(out, f"{key} (weights at 7 bits)")
    ctx.results[key] = row
    ctx.graphs[key] = _graph_entry(onnx.load(str(out)), key, quantization={
        **quantization, "stats": stats, "weights": "int8 symmetric at 7 bits (reduce_range), per channel",
        "recipe": "reduce_range: no VPMADDUBSW saturation on CPUs without VNNI; the same integers on every x86 CPU"})
    ctx.parity[key] = _parity(row, ctx, "onnxruntime")
    ctx.new_files[file_of(key)] = out


def _reusable(doc: dict, args, graph_sha: str, ctx: Context) -> bool:
    """Whether a bundle's own calibration.json was computed with the settings asked for now."""
    src = doc["source"]
    return (doc["graph_sha256"] == graph_sha and doc["method"] == (args.calibration_method or DEFAULT_METHOD)
            and src.get("samples") == args.calibration_samples and src.get("seed") == args.seed
            and src.get("images_kind") == ("folder" if args.images is not None else "photos" if ctx.photos else "absent")
            and args.crops is None)


def build_dynamic(ctx: Context) -> None:
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
                             rebuild=build, log=ctx.log)
    ctx.results["int8-dynamic"] = found["final"]
    ctx.search["int8-dynamic"] = {k: found[k] for k in ("met", "stopped", "rounds", "chosen_round")}
    ctx.graphs["int8-dynamic"] = _graph_entry(
        onnx.load(str(out)), "int8-dynamic", derived_from=src.name, cpu_only=True,
        producer="onnxruntime quantize_dynamic (MatMulInteger)",
        quantization={"format": "dynamic", "op_types": list(q.DYNAMIC_OPS), "kept_fp32": found["kept"],
                      "stats": stats, "convolutions": "fp32 (dynamic quantization leaves them)"})
    ctx.parity["int8-dynamic"] = _parity(found["final"], ctx, "onnxruntime")
    ctx.new_files[file_of("int8-dynamic")] = out
    build_variant(ctx, "int8-dynamic-avx2", found["excluded"], lambda path, excluded: q.quantize_dynamic_int8(
        src, path, exclude=excluded, reduce_range=True), ctx.graphs["int8-dynamic"]["quantization"])


def latency_candidates(ctx: Context) -> dict[str, tuple[str, str, Path]]:
    """What ``precision="auto"`` may choose among: label -> (backend, graph key, file). ONNX Runtime CPU on
    the fp32 graph it runs and on each INT8 graph built now; every other CPU backend of the registry that
    is installed (OpenVINO) on the fp32 and INT8 graphs it runs (``auto`` picks one only where it is
    measured faster on the host of that CPU class)."""
    from dfma.backends.registry import BACKENDS
    from dfma.contract.errors import BackendUnavailable

    fp32_key = "ort" if "ort" in ctx.manifest["graphs"] else "portable"
    out = {"fp32": ("onnxruntime-cpu", fp32_key, ctx.bundle.graph_path(fp32_key))}
    for key in ("int8", "int8-dynamic"):
        if file_of(key) in ctx.new_files:
            out[key] = ("onnxruntime-cpu", key, ctx.new_files[file_of(key)])
    for name, spec in BACKENDS.items():
        if name == "onnxruntime-cpu" or spec.device != "cpu" or not spec.bundles:
            continue
        try:
            spec.check_available()
        except BackendUnavailable as exc:
            ctx.log(f"{name} not measured ({exc})")
            continue
        for key, row in CATALOGUE.items():
            path = ctx.new_files.get(row.file) or (ctx.bundle.graph_path(key) if key in ctx.manifest["graphs"] else None)
            if row.precision in ("fp32", "int8", "int8-dynamic") and spec.runs(row) and path is not None:
                out.setdefault(f"{name}-{row.precision}", (name, key, path))
    return out


def measure_latency(ctx: Context) -> dict:
    """Batch-1 latency (ms) of every :func:`latency_candidates` entry on guard sentences, interleaved; the
    OpenVINO entries are also guarded against fp32 (a graph OpenVINO cannot compile is left out, with why)."""
    from dfma.contract.host import host_info

    samples = ctx.guard.single_samples(ctx.val, ctx.args.latency_samples)
    runners, where = {}, {}
    for label, (backend, key, path) in latency_candidates(ctx).items():
        try:
            runners[label] = ctx.runner(path, backend)
        except DFMAError as exc:
            ctx.log(f"  {label}: left out ({exc})")
            continue
        where[label] = (backend, key, path)
        if backend != "onnxruntime-cpu":
            ctx.results[label] = ctx.evaluate(path, f"{label} ({backend})", backend)
    with ctx.steps.step(f"latency of {', '.join(runners)} (batch 1, {len(samples)} sentences, interleaved)"):
        ms = ctx.guard.latency_table(runners, samples)
    for key, value in ms.items():
        ctx.log(f"  {key:13s} {value:8.2f} ms")
    host = host_info()
    return {label: {"backend": where[label][0], "graph": where[label][1], "file": where[label][2].name,
                    "precision": CATALOGUE[where[label][1]].precision,
                    "batch1_median_ms": value, "samples": len(samples), "host": host,
                    "how": "per sentence the fastest of 3 runs, median over sentences; graphs interleaved"}
            for label, value in ms.items()}


def golden_expected(ctx: Context) -> dict:
    """Each new graph on the bundle's golden set on this host (``golden.expected``); {} without a golden set."""
    from dfma.contract.golden import GOLDEN_FILE
    from dfma.export.golden_set import expected_results

    golden = ctx.manifest.get("golden")
    if not isinstance(golden, dict):
        ctx.log("the bundle has no golden set (exported before it existed): `verify` cannot check the new graphs")
        return {}
    view = {**ctx.manifest, "graphs": {**ctx.manifest["graphs"], **ctx.graphs}}
    paths = {key: ctx.new_files[entry["file"]] for key, entry in ctx.graphs.items()}
    with ctx.steps.step(f"golden set on {', '.join(paths)}"):
        return expected_results(ctx.bundle.path(golden.get("file", GOLDEN_FILE)), view, paths)


def _config(manifest: dict):
    from dfma.config import DFMAConfig

    special = {k: v["id"] for k, v in manifest["preprocess"]["special_tokens"].items()}
    return DFMAConfig.from_dict(manifest["model"]["config"], source="manifest model.config"), special


def _graph_entry(model, key: str, *, derived_from: str | None = None, **extra) -> dict:
    from collections import Counter

    import onnxruntime

    from dfma.contract.host import host_info

    return {**CATALOGUE[key].manifest_fields(), **({"derived_from": derived_from} if derived_from else {}),
            "guard_host": {**host_info(), "onnxruntime": onnxruntime.__version__},  # where its guard ran
            "opset": max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=None),
            "nodes": len(model.graph.node),
            "op_counts": dict(sorted(Counter(n.op_type for n in model.graph.node).items())),
            **extra}


def _parity(row: dict, ctx: Context, executor: str) -> dict:
    return {**row, "passed": bool(row["top1_agreement"] >= ctx.args.target_agreement), "executor": executor,
            "target_agreement": ctx.args.target_agreement, "reference": f"fp32 {ctx.portable.name} on ONNX Runtime CPU "
            "(validated against eager: parity.portable; the fused graph matches it within parity.ort)",
            "inputs": f"MNRE validation sentences: {ctx.val.source}"}


def ctx_manifest_keys(bundle: Path) -> set[str]:
    """The manifest's top-level keys (to count the steps before loading anything heavy)."""
    from dfma.contract.bundle import read_manifest

    return set(read_manifest(bundle))


def run(args) -> dict:
    """Build the requested graphs and update the bundle; returns the new manifest."""
    from dfma.contract.bundle_writer import update_bundle

    check_args(args)
    everything = not args.fp16 and args.int8 is None
    want = {"fp16": everything or args.fp16, "int8": everything or args.int8 in ("static", "both"),
            "int8-dynamic": everything or args.int8 in ("dynamic", "both")}
    started = _dt.datetime.now(_dt.timezone.utc)
    parent = Path(args.bundle).absolute().parent
    with tempfile.TemporaryDirectory(prefix=f".{Path(args.bundle).name}.precision-", dir=parent) as tmp:
        ctx = Context(args, Path(tmp), sum(want.values()) + int(want["int8"] or want["int8-dynamic"])
                      + int("golden" in ctx_manifest_keys(args.bundle)))
        for key, build in (("fp16", build_fp16), ("int8", build_static), ("int8-dynamic", build_dynamic)):
            if want[key]:
                with ctx.steps.step(f"{key} graph"):
                    build(ctx)
        latency = measure_latency(ctx) if want["int8"] or want["int8-dynamic"] else {}
        previous = ctx.manifest.get("precision", {}).get("guard", {})
        merged = {**{k: v for k, v in previous.items() if k in ctx.manifest["graphs"] and k not in ctx.results},
                  **ctx.results}
        lat_all = latency or ctx.manifest.get("precision", {}).get("latency", {})
        auto = ctx.guard.choose_auto(merged, latency, args.target_agreement, F1_TOLERANCE)
        expected = golden_expected(ctx)

        def update(manifest: dict) -> dict:
            manifest["graphs"].update(ctx.graphs)
            manifest["parity"].update(ctx.parity)
            section = manifest.setdefault("precision", {})
            section.update({"updated": started.replace(microsecond=0).isoformat(), "guard": merged,
                            "guard_data": ctx.val.source, "target_agreement": args.target_agreement,
                            "f1_tolerance_points": F1_TOLERANCE, "latency": lat_all,
                            "latency_note": "batch 1 on the host recorded with each row; see docs/precision.md",
                            "search": {**section.get("search", {}), **ctx.search}})
            if expected:
                manifest["golden"]["expected"].update(expected)
            if auto:
                defaults = manifest.setdefault("defaults", {})
                defaults.pop("cpu_int8", None)  # written by earlier versions: superseded by defaults.auto
                defaults.pop("cpu_int8_reason", None)
                defaults["auto"] = auto
            return manifest

        return update_bundle(args.bundle, ctx.new_files, update)


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, build, print the summary; returns the exit status."""
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # unwind: temporary files go, the bundle stays
    try:
        manifest = run(args)
    except UsageError as exc:
        print(f"usage error: {exc}", file=sys.stderr)
        return 2
    except DFMAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: the bundle was not changed", file=sys.stderr)
        return 130
    from dfma.export.accuracy_guard import summary

    print(summary(manifest))
    return 0


if __name__ == "__main__":
    sys.exit(main())
