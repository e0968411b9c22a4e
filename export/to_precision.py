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

from dfma.contract.errors import DFMAError  # noqa: E402
from dfma.contract.graphs import CATALOGUE, file_of  # noqa: E402
from dfma.export.int8_graphs import build_dynamic, build_static  # noqa: E402
from dfma.export.precision_entries import graph_entry, parity_record  # noqa: E402
from dfma.export.precision_stages import add_stages  # noqa: E402
from dfma.export.precision_options import (  # noqa: E402
    F1_TOLERANCE, FP16_REL_TOL, LARGE,
    LARGE_BYTES, SMALL, UsageError, build_parser, check_args,
)


class Context:
    """What every step shares: the bundle, the work folder, the guard data and the fp32 reference."""

    def __init__(self, args, work: Path, steps: int):
        from dfma.export import accuracy_guard as guard
        from dfma.export.calibration import mnre_feeds
        from dfma.progress import Steps
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
    ctx.graphs["fp16"] = graph_entry(res.model, "fp16", producer="dfma.export.fp16 (onnx + numpy)",
                                      fp16=res.summary(), validation={
                                          "executor": "onnx.reference.ReferenceEvaluator (fp16 arithmetic; GEMM/Conv "
                                                      "accumulate in fp32)" if executor == "reference"
                                          else "onnxruntime CPUExecutionProvider", "why": why,
                                          "ort_cpu_fp32_fallbacks": fallbacks})
    ctx.parity["fp16"] = {**parity_record(row, ctx, executor), "random_shapes": {
        "cases": shapes, "rtol": FP16_REL_TOL, "passed": worst_rel <= FP16_REL_TOL}}
    ctx.parity["fp16"]["passed"] = bool(worst_rel <= FP16_REL_TOL
                                        and row["top1_agreement"] >= ctx.args.target_agreement)
    ctx.new_files[file_of("fp16")] = out


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
    from dfma.host import host_info

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


def ctx_manifest_keys(bundle: Path) -> set[str]:
    """The manifest's top-level keys (to count the steps before loading anything heavy)."""
    from dfma.contract.bundle import read_manifest

    return set(read_manifest(bundle))


def run(args) -> dict:
    """Build the requested graphs and update the bundle; returns the new manifest."""
    from dfma.contract.bundle_writer import update_bundle
    from dfma.contract.stale_temps import temp_prefix

    check_args(args)
    everything = not args.fp16 and args.int8 is None
    want = {"fp16": everything or args.fp16, "int8": everything or args.int8 in ("static", "both"),
            "int8-dynamic": everything or args.int8 in ("dynamic", "both")}
    started = _dt.datetime.now(_dt.timezone.utc)
    parent = Path(args.bundle).absolute().parent
    with tempfile.TemporaryDirectory(prefix=temp_prefix(Path(args.bundle).absolute(), "precision"), dir=parent) as tmp:
        keys = ctx_manifest_keys(args.bundle)
        ctx = Context(args, Path(tmp), sum(want.values()) + int(want["int8"] or want["int8-dynamic"])
                      + int("golden" in keys) + int("stages" in keys))
        for key, build in (("fp16", build_fp16), ("int8", build_static), ("int8-dynamic", build_dynamic)):
            if want[key]:
                with ctx.steps.step(f"{key} graph"):
                    build(ctx)
        if "stages" in keys:
            with ctx.steps.step(f"two-stage pairs of {', '.join(ctx.graphs)} (cut, guarded, checked against the whole)"):
                for key in list(ctx.graphs):
                    add_stages(ctx, key, ctx.new_files[file_of(key)],
                               executor=ctx.results.get(key, {}).get("executor", "onnxruntime"))
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
