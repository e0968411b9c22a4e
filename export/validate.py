"""Eager vs ONNX parity, Polygraphy-style: a runner per graph (``dfma.backends``), one comparator
(``dfma.backends.compare``), many shapes.

Every case (batch x length x crops) draws fresh random inputs (contract-valid, both entities in every
row, NaN pixels in absent image slots), runs the eager model once and every graph on the same feeds, and
compares the logits: max abs error, max relative error (``max|graph - eager| / max|eager|``, i.e.
relative to the largest reference logit of the case) and top-1 agreement (rows whose argmax matches).
A graph passes when ``max_abs_error <= atol`` and top-1 agreement is 1.0 at every case.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from dfma.export.random_feeds import MIN_LENGTH, random_inputs

from dfma.contract.errors import ExportError
from dfma.progress import bar as progress_bar

CASE_FIELDS = ("max_abs_error", "max_rel_error", "top1_agreement")
VALIDATION_BATCHES = (1, 3, 7)
VALIDATION_LENGTHS = (8, 33)  # plus the maximum length
DEFAULT_ATOL = 1e-4
SPLIT_ATOL = 1e-5  # stage graphs against their whole graph: the same nodes, so only fusion across the cut differs


@dataclass(frozen=True)
class ParityCase:
    """One validated shape."""

    batch: int
    length: int
    crops: bool


def parity_cases(max_batch: int, max_length: int, *, exclude: tuple[int, int] | None = None,
                 full: bool = False) -> list[ParityCase]:
    """The shapes an export is validated at, within the limits.

    ``full``: batch {1, 3, 7} x length {8, 33, max} x crops {with, without} (18 shapes). Default: 4 shapes
    that still cover every dynamic axis at both ends and both image-slot layouts: (1, 8, crops),
    (1, max, no crops), (7, 8, no crops), (7, max, crops). ``exclude`` (the export example's (batch, length))
    is never validated: parity must hold elsewhere.
    """
    if full:
        batches = sorted({b for b in VALIDATION_BATCHES if b <= max_batch} | {min(max_batch, VALIDATION_BATCHES[-1])})
        lengths = sorted({n for n in VALIDATION_LENGTHS if MIN_LENGTH <= n <= max_length} | {max_length})
        grid = [(b, n, c) for b in batches for n in lengths for c in (True, False)]
    else:
        big, short = min(max_batch, VALIDATION_BATCHES[-1]), min(VALIDATION_LENGTHS[0], max_length)
        grid = list(dict.fromkeys([(1, short, True), (1, max_length, False), (big, short, False),
                                   (big, max_length, True)]))
    return [ParityCase(b, n, c) for b, n, c in grid if exclude is None or (b, n) != exclude]


def run_parity(model, graphs: Mapping[str, Path | object], cfg, special: dict[str, int], cases: list[ParityCase], *,
               seed: int, atol: float = DEFAULT_ATOL, progress: bool = True,
               whole_of: Mapping[str, str] | None = None, split_atol: float = SPLIT_ATOL) -> dict[str, dict]:
    """Validate every graph against the eager model on every case; returns the manifest ``parity`` section.

    ``graphs`` values are graph files (run on ONNX Runtime CPU) or runners (stage graphs). ``whole_of``
    maps such a runner's key to its whole graph's key: the stage graphs are then also compared with the whole graph
    on the same feeds (``vs_whole``) and passes only within ``split_atol`` of it as well.
    """
    from dfma.backends.compare import compare
    from dfma.backends.ort_runner import OrtRunner
    from dfma.model.runner import EagerRunner

    eager = EagerRunner(model).open()
    whole_of = dict(whole_of or {})
    runners = {key: _open(OrtRunner(g) if isinstance(g, (str, Path)) else g) for key, g in graphs.items()}
    per_case: dict[str, list[dict]] = {key: [] for key in graphs}
    rng = np.random.default_rng(seed)
    bar = progress_bar(cases, desc="validating", unit="shape", enabled=progress)
    for case in bar:
        bar.set_postfix_str(f"batch {case.batch} len {case.length} {'crops' if case.crops else 'no crops'}")
        feeds = random_inputs(cfg, special, case.batch, case.length, crops=case.crops, rng=rng)
        reference = eager.logits(feeds)
        if not np.isfinite(reference).all():
            raise ExportError(f"eager logits are not finite at {case} (NaN leaked from absent images?)")
        got: dict[str, np.ndarray] = {}
        for key, run in runners.items():
            try:
                got[key] = actual = run.logits(feeds)
            except Exception as exc:
                raise ExportError(f"{_where(graphs[key])}: fails at batch {case.batch}, length {case.length}: "
                                  f"{str(exc)[:1000]}") from None
            row = compare(reference, actual)
            per_case[key].append({**asdict(case), **{k: row[k] for k in CASE_FIELDS}})
            if key in whole_of:
                vs = compare(got[whole_of[key]], actual)
                per_case[key][-1].update(max_abs_error_vs_whole=vs["max_abs_error"],
                                         top1_agreement_vs_whole=vs["top1_agreement"])
    out = {key: summarize(rows, atol=atol, seed=seed) for key, rows in per_case.items()}
    for key, whole in whole_of.items():
        rows = per_case[key]
        worst = max(r["max_abs_error_vs_whole"] for r in rows)
        agree = min(r["top1_agreement_vs_whole"] for r in rows)
        out[key]["vs_whole"] = {"graph": whole, "max_abs_error": worst, "top1_agreement": agree, "atol": split_atol}
        out[key]["passed"] = bool(out[key]["passed"] and worst <= split_atol and agree == 1.0)
    return out


def _where(graph) -> str:
    return graph.name if isinstance(graph, Path) else str(getattr(graph, "where", graph))


def _open(runner):
    """Open a runner on a freshly written graph; a graph ONNX Runtime cannot load is an ExportError."""
    from dfma.contract.errors import BundleError

    try:
        return runner.open()
    except BundleError as exc:
        raise ExportError(str(exc)) from None


def summarize(rows: list[dict], *, atol: float, seed: int) -> dict:
    """Aggregate per-case rows into a graph's parity record."""
    samples = sum(r["batch"] for r in rows)
    agree = sum(r["top1_agreement"] * r["batch"] for r in rows) / max(samples, 1)
    worst_abs = max((r["max_abs_error"] for r in rows), default=0.0)
    return {
        "passed": bool(worst_abs <= atol and all(r["top1_agreement"] == 1.0 for r in rows)),
        "atol": atol,
        "max_abs_error": worst_abs,
        "max_rel_error": max((r["max_rel_error"] for r in rows), default=0.0),
        "top1_agreement": agree,
        "samples": samples,
        "seed": seed,
        "inputs": "random contract-valid feeds, fresh per case; NaN pixels in absent image slots",
        "cases": rows,
    }


def require_parity(parity: Mapping[str, dict], files: Mapping[str, str]) -> None:
    """ExportError naming the graph and its worst case when any graph failed validation."""
    for key, record in parity.items():
        if not record["passed"]:
            worst = max(record["cases"], key=lambda r: (r["top1_agreement"] < 1.0, r["max_abs_error"]))
            if "vs_whole" in record and record["vs_whole"]["max_abs_error"] > record["vs_whole"]["atol"]:
                vs = record["vs_whole"]
                raise ExportError(f"{files.get(key, key)}: the two stages differ from {vs['graph']} by "
                                  f"{vs['max_abs_error']:.3g} (atol {vs['atol']:g})")
            raise ExportError(
                f"{files.get(key, key)}: parity failed: max abs error {record['max_abs_error']:.3g} "
                f"(atol {record['atol']:g}), top-1 agreement {record['top1_agreement']:.4f}; worst at batch "
                f"{worst['batch']}, length {worst['length']}, crops {worst['crops']}")
