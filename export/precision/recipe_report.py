"""One row per reduced-precision graph of a bundle, for docs/precision.md's recipe table:
``python -m dfma.export.precision.recipe_report BUNDLE --graphs int8-smooth,int8-smooth-avx2``.

Per graph: top-1 agreement with the portable fp32 graph on **every** MNRE validation sentence, text-only and
with scikit-image's photos in the image slots (ONNX Runtime CPU), the F1 delta (binding condition), the nodes
the guard kept fp32 and whether the step found it batch-invariant (both from the manifest), its file size,
and its speed against the fused fp32 graph: ``--sentences`` validation sentences (with photos) at batch 1 at
their own lengths, and the same sentences as batches of 8, every graph in turn call by call (interleaved), each
call's fastest of ``--repeats``, summed; ``--threads`` intra-op threads. A diagnostic: it writes nothing.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from dfma.contract.errors import DFMAError

CONDITIONS = ("text-only", "with-photos")


def _feeds(bundle, data: Path, n: int, batch: int, photos: bool):
    from dfma.export.precision.calibration import mnre_feeds

    return mnre_feeds(bundle.folder, bundle.manifest, data / "mnre_val.txt", n, seed=0, batch_size=batch,
                      photos=photos)


def agreement(bundle, keys: list[str], data: Path, *, progress: bool = False) -> dict:
    """graph key -> condition -> ``compare_with_labels`` row against the portable fp32 graph, on every
    validation sentence."""
    from dfma.backends.compare import compare_with_labels
    from dfma.backends.ort_runner import OrtRunner
    from dfma.contract.graphs import fp32_rows
    from dfma.export.precision.accuracy_guard import run_feeds

    none_id = list(bundle.manifest.labels).index("None")
    out: dict = {k: {} for k in keys}
    for condition in CONDITIONS:
        feeds = _feeds(bundle, data, 0, 32, condition == "with-photos")
        with OrtRunner(bundle.graph_path(fp32_rows()[0].key)) as fp32:
            reference = run_feeds(fp32, feeds, desc=f"fp32 {condition}", progress=progress)
        for key in keys:
            with OrtRunner(bundle.graph_path(key)) as runner:
                logits = run_feeds(runner, feeds, desc=f"{key} {condition}", progress=progress)
            out[key][condition] = {**compare_with_labels(reference, logits, feeds.labels, none_id),
                                   "samples": len(feeds)}
    return out


def speed(bundle, keys: list[str], data: Path, *, sentences: int, threads: int, repeats: int) -> dict:
    """``{"batch1": {key: ms}, "batch8": {key: ms}}``: summed fastest-of-``repeats`` times, interleaved,
    the fused fp32 graph (``ort``) first."""
    import math

    from dfma.backends.ort_runner import OrtRunner
    from dfma.export.precision.accuracy_guard import single_samples

    feeds = _feeds(bundle, data, sentences, 8, True)
    workloads = {"batch1": single_samples(feeds, sentences), "batch8": feeds.batches}
    graphs = ["ort", *keys]
    runners = {k: OrtRunner(bundle.graph_path(k), threads=threads).open() for k in graphs}
    out = {}
    try:
        for name, calls in workloads.items():
            best = {k: [math.inf] * len(calls) for k in graphs}
            for call in calls[:2]:  # warm-up
                for k in graphs:
                    runners[k].infer(call)
            for _ in range(repeats):
                for i, call in enumerate(calls):
                    for k in graphs:
                        start = time.perf_counter()
                        runners[k].infer(call)
                        best[k][i] = min(best[k][i], time.perf_counter() - start)
            out[name] = {k: round(1000 * sum(v), 2) for k, v in best.items()}
    finally:
        for r in runners.values():
            r.close()
    return out


def report(bundle_path: Path, keys: list[str], data: Path, *, sentences: int = 64, threads: int = 2,
           repeats: int = 3, progress: bool = False) -> dict:
    """The rows (module doc) as JSON, and a markdown table under ``"table"``."""
    from dfma.contract.bundle import open_bundle
    from dfma.host import host_info

    bundle = open_bundle(bundle_path)
    missing = [k for k in keys if k not in bundle.manifest.graphs]
    if missing:
        raise DFMAError(f"{bundle_path}: no graph {missing} in its manifest (it has {sorted(bundle.manifest.graphs)})")
    raw = json.loads((Path(bundle_path) / "manifest.json").read_text())
    agree = agreement(bundle, keys, data, progress=progress)
    times = speed(bundle, keys, data, sentences=sentences, threads=threads, repeats=repeats)
    rows, lines = {}, []
    for key in keys:
        entry = raw["graphs"][key]
        kept = (entry.get("quantization") or {}).get("kept_fp32") or []
        worst = min(agree[key].values(), key=lambda r: (r["top1_agreement"], -abs(r["f1_delta_points"])))
        row = {"agreement": {c: agree[key][c]["top1_agreement"] for c in CONDITIONS},
               "f1_delta_points": worst["f1_delta_points"], "f1_fp32": worst.get("f1_fp32"),
               "nodes_fp32": len(kept), "kinds_fp32": sorted({k.get("kind", "") for k in kept} - {""}),
               "file_mb": round((Path(bundle_path) / entry["file"]).stat().st_size / 1e6, 1),
               "batch1_vs_fp32": round(times["batch1"]["ort"] / times["batch1"][key], 2),
               "batch8_vs_fp32": round(times["batch8"]["ort"] / times["batch8"][key], 2),
               "batch_invariant": not entry.get("batch_dependent", False)}
        rows[key] = row
        lines.append(f"| `{key}` | {100 * row['agreement']['text-only']:.2f} % | "
                     f"{100 * row['agreement']['with-photos']:.2f} % | {row['f1_delta_points']:+.2f} | "
                     f"{row['nodes_fp32']} | {row['file_mb']:.0f} | {row['batch1_vs_fp32']:.2f}x | "
                     f"{row['batch8_vs_fp32']:.2f}x | {'yes' if row['batch_invariant'] else 'no'} |")
    return {"host": host_info(), "samples": {c: agree[keys[0]][c]["samples"] for c in CONDITIONS}, "times_ms": times,
            "rows": rows, "table": "\n".join(lines)}


def main(argv: list[str] | None = None) -> int:
    """Command line: print the rows as JSON and the markdown table."""
    from dfma.export.precision.options import DEFAULT_DATA

    p = argparse.ArgumentParser(prog="python -m dfma.export.precision.recipe_report", description=__doc__.split("\n\n")[0])
    p.add_argument("bundle", type=Path)
    p.add_argument("--graphs", required=True, help="graph keys, comma-separated (e.g. int8-smooth,int8)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA, help="folder with mnre_val.txt")
    p.add_argument("--sentences", type=int, default=64, help="validation sentences timed (default 64)")
    p.add_argument("--threads", type=int, default=2, help="ONNX Runtime intra-op threads for the timing (default 2)")
    p.add_argument("--repeats", type=int, default=3, help="timed passes; each call's fastest counts (default 3)")
    args = p.parse_args(argv)
    try:
        out = report(args.bundle, [k for k in args.graphs.split(",") if k], args.data, sentences=args.sentences,
                     threads=args.threads, repeats=args.repeats, progress=True)
    except DFMAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    table = out.pop("table")
    print(json.dumps(out, indent=1))
    print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
