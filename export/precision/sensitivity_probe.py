"""Which parts of a model static INT8 hurts, measured end to end: ``python -m dfma.export.precision.sensitivity_probe BUNDLE``.

The guard's search ranks nodes by a local measure (the SQNR of their quantized inputs, computed in one pass).
This probe measures instead: for every *kind* of node (one module role across layers, e.g.
``text.encoder.layer.*.output.dense``; or ``--by layer``: one role in one layer), it quantizes only that
kind, keeps everything else fp32, and compares the logits with fp32 on MNRE validation sentences (top-1
agreement, micro-F1 delta, mean logit error). One re-quantization and one guard pass per kind, so it takes
minutes: a diagnostic for choosing ``--guard-by`` and for reading a search result, not part of the step.
It uses the bundle's ``calibration.json`` (from ``export/to_precision.py``) and writes nothing to the bundle.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

from dfma.contract.errors import DFMAError
from dfma.contract.graphs import CALIBRATION_FILE, fp32_rows


def unit_of(module: str, node: str, by: str) -> str:
    """The probe unit of a node: its kind (layer indices wildcarded) or, ``by="layer"``, its module."""
    from dfma.export.precision.accuracy_guard import kind_of

    return kind_of({"module": module, "node": node}) if by == "kind" else (module or node)


def probe(bundle: Path, *, samples: int, by: str, seed: int = 0, progress: bool = True) -> list[dict]:
    """Per unit: nodes, agreement, F1 delta and mean |logit error| with only that unit INT8; worst first."""
    import onnx
    from dfma.export.precision import calibration as cal
    from dfma.export import photos
    from dfma.export import quantize as q
    from dfma.export.precision.accuracy_guard import run_feeds
    from dfma.export.fp16 import module_of
    from dfma.export.precision.options import DEFAULT_DATA

    from dfma.backends.compare import compare_with_labels
    from dfma.backends.ort_runner import OrtRunner
    from dfma.contract.bundle import open_bundle

    b = open_bundle(bundle)
    if CALIBRATION_FILE not in b.manifest.files:
        raise DFMAError(f"{bundle}: no {CALIBRATION_FILE}; run export/to_precision.py on it first")
    ranges = cal.load_cache(b.path(CALIBRATION_FILE))["ranges"]
    val = cal.mnre_feeds(b.folder, b.manifest, DEFAULT_DATA / "mnre_val.txt", samples, seed=seed, batch_size=32,
                         photos=photos.available())
    modules = {n.name: module_of(n) for n in onnx.load(str(b.graph_path(fp32_rows()[0].key))).graph.node}
    none_id = list(b.manifest.labels).index("None")
    rows = []
    with tempfile.TemporaryDirectory(prefix="dfma-probe-") as tmp:
        pre = q.preprocess(b.graph_path(fp32_rows()[0].key), Path(tmp) / "pre.onnx")
        nodes = [n.name for n in onnx.load(str(pre)).graph.node if n.op_type in q.STATIC_OPS and
                 all(t in ranges for t in n.input[:1])]
        fp32 = run_feeds(OrtRunner(b.graph_path(fp32_rows()[0].key)).open(), val, desc="fp32", progress=progress)
        units: dict[str, list[str]] = {}
        for name in nodes:
            units.setdefault(unit_of(modules.get(name, ""), name, by), []).append(name)
        out = Path(tmp) / "probe.onnx"
        for i, (unit, members) in enumerate(units.items(), 1):
            t0 = time.perf_counter()
            keep = set(members)
            q.quantize_static_qdq(pre, out, ranges, exclude=[n for n in nodes if n not in keep])
            r = compare_with_labels(fp32, run_feeds(OrtRunner(out).open(), val, desc=unit, progress=False),
                                    val.labels, none_id)
            rows.append({"unit": unit, "nodes": len(members), "top1_agreement": r["top1_agreement"],
                         "f1_delta_points": r["f1_delta_points"], "mean_abs_error": r["mean_abs_error"]})
            if progress:
                print(f"[{i}/{len(units)}] {unit}: agreement {r['top1_agreement']:.4f}, F1 delta "
                      f"{r['f1_delta_points']:+.2f} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    return sorted(rows, key=lambda r: (-r["mean_abs_error"], r["top1_agreement"]))


def main(argv: list[str] | None = None) -> int:
    """Print the per-unit table (worst first); ``--json FILE`` writes it too."""
    from dfma.progress import table

    p = argparse.ArgumentParser(prog="python -m dfma.export.precision.sensitivity_probe", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("bundle", type=Path)
    p.add_argument("--samples", type=int, default=256, help="MNRE validation sentences (0 = all)")
    p.add_argument("--by", choices=("kind", "layer"), default="kind")
    p.add_argument("--json", type=Path, help="also write the rows here")
    args = p.parse_args(argv)
    try:
        rows = probe(args.bundle, samples=args.samples, by=args.by)
    except DFMAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(table(["only this INT8", "nodes", "agree", "F1 delta", "mean err"],
                [[r["unit"], r["nodes"], f"{100 * r['top1_agreement']:.2f}%", f"{r['f1_delta_points']:+.2f}",
                  f"{r['mean_abs_error']:.4f}"] for r in rows]))
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
