"""``python -m dfma.runtime verify BUNDLE``: every graph of the bundle on this host's golden set.

Per graph the backend runs: top-1 agreement with the golden (eager fp32) logits, max error, milliseconds
per sample, the accuracy guard's figures recorded at export (agreement with fp32 and micro-F1 change on
MNRE validation sentences), and whether it passes against what the graph gave on the host that built it
(``dfma.contract.golden.judge``). The first line names this host's CPU class; exit status 1 when a graph
fails (a bundle that should not serve it here), 2 on a bundle error. On a backend other than the one the
expectations were recorded on (ONNX Runtime CPU), fp32 graphs are judged and INT8 ones only measured.
"""
from __future__ import annotations

import os

from dfma.backends.golden_check import run_golden
from dfma.backends.registry import backend as backend_row
from dfma.contract.bundle import open_bundle
from dfma.contract.errors import BundleError
from dfma.contract.golden import judge, load_golden
from dfma.host import host_info
from dfma.progress import table


def verify(bundle: str | os.PathLike, *, backend: str = "onnxruntime-cpu", threads: int | None = None,
           repeats: int = 3) -> dict:
    """``{"host", "golden", "graphs": [row per graph]}``; each row: graph, file, precision, agreement, errors,
    ms per sample, passed, reason. Raises BundleError when the bundle has no golden set."""
    opened = open_bundle(bundle)
    manifest = opened.manifest
    golden = load_golden(opened.folder, manifest)
    if golden is None:
        raise BundleError(f"{opened.folder}: the bundle has no golden set (the manifest has no 'golden' section)",
                          file=str(opened.folder / "manifest.json"), field="golden")
    section = manifest.golden
    spec = backend_row(backend)
    spec.check_available()
    rows = []
    for key, row in manifest.present().items():
        if not spec.runs(row):
            continue
        entry = manifest.graph(key)
        runner = spec.build(opened.path(entry.file), io=manifest.io, graph=row, entry=entry, threads=threads)
        try:
            with runner:
                result = run_golden(runner, golden, repeats=repeats)
        except BundleError as exc:
            rows.append({"graph": key, "file": row.file, "precision": row.precision, "passed": False,
                         "reason": f"does not load: {exc}"})
            continue
        expected = section.expected.get(key)
        if expected is not None and (expected.backend or backend) != backend:
            passed, reason = None, (f"measured only: the bundle records what {expected.backend} gave, not "
                                    f"{backend} (INT8 kernels round differently)")
            if row.precision == "fp32":  # fp32 must match the eager logits on any backend
                passed, reason = judge(result, expected, section.tolerance)
        else:
            passed, reason = judge(result, expected, section.tolerance)
        label = key if backend == "onnxruntime-cpu" else f"{backend}-{row.precision}"  # the precision step's labels
        guard = manifest.guard_row(label)
        rows.append({"graph": key, "file": row.file, "precision": row.precision, **result,
                     "guard": {k: guard[k] for k in ("top1_agreement", "f1_delta_points", "samples") if k in guard},
                     "measured_on": expected.host_class if expected is not None else None, "passed": passed,
                     "reason": reason})
    return {"host": host_info(), "backend": backend,
            "golden": {k: section.extra.get(k) for k in ("samples", "inputs")},
            "graphs": rows}


def render(report: dict) -> str:
    """The verify table."""
    host = report["host"]
    lines = [f"host: {host['cpu']} ({host['class']}; {', '.join(host['flags']) or 'no listed flags'}); "
             f"backend {report['backend']}; golden set: {report['golden']['samples']} samples"]
    def guard(r: dict) -> str:
        g = r.get("guard") or {}
        return (f"{100 * g['top1_agreement']:.2f}% / {g['f1_delta_points']:+.2f} ({g['samples']})"
                if "top1_agreement" in g else "-")

    body = [[r["graph"], r["precision"], f"{100 * r.get('top1_agreement', 0):.1f}%",
             f"{r.get('max_abs_error', float('nan')):.3g}", f"{r.get('ms_per_sample', float('nan')):.2f}",
             r.get("measured_on") or "-", guard(r), {True: "pass", False: "FAIL"}.get(r["passed"], "-"), r["reason"]]
            for r in report["graphs"]]
    lines.append(table(["graph", "precision", "agree", "max err", "ms/sample", "measured on",
                        "guard: agree / F1 delta (sentences)", "", "why"], body))
    return "\n".join(lines)
