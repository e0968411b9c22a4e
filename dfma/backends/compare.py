"""The one comparator: logits of a runner against a reference (eager, or the fp32 graph), Polygraphy-style.

A row whose output holds NaN or Inf counts as a mismatch (and makes the errors infinite), never as
agreement. Relative error is ``max|actual - reference| / max|reference|`` (relative to the largest
reference logit). :func:`compare_with_labels` adds micro-F1 of both against gold labels (the MNRE metric).
"""
from __future__ import annotations

import numpy as np

from dfma.contract.errors import DFMAError


class ComparisonError(DFMAError, ValueError):
    """Two outputs that cannot be compared (different shapes)."""


def compare(reference: np.ndarray, actual: np.ndarray) -> dict:
    """``samples``, ``finite``, ``nonfinite_rows``, ``max_abs_error``, ``mean_abs_error``, ``max_rel_error``
    and ``top1_agreement`` of two ``(rows, labels)`` logit arrays."""
    reference, actual = np.asarray(reference), np.asarray(actual)
    if actual.shape != reference.shape:
        raise ComparisonError(f"logits shape {actual.shape} != reference {reference.shape}")
    ref, act = reference.astype(np.float64), actual.astype(np.float64)
    rows = ref.shape[0] if ref.ndim else 1
    bad = ~np.isfinite(act).reshape(rows, -1).all(axis=1)
    diff = np.abs(act - ref)
    diff[~np.isfinite(diff)] = np.inf
    scale = max(float(np.abs(ref).max(initial=0.0)), float(np.finfo(np.float32).tiny))
    same = (act.argmax(-1) == ref.argmax(-1)) & ~bad
    return {"samples": int(rows), "finite": bool(not bad.any()), "nonfinite_rows": int(bad.sum()),
            "max_abs_error": float(diff.max(initial=0.0)), "mean_abs_error": float(diff.mean()) if diff.size else 0.0,
            "max_rel_error": float(diff.max(initial=0.0) / scale), "top1_agreement": float(same.mean()) if rows else 1.0}


def compare_with_labels(reference: np.ndarray, actual: np.ndarray, gold: np.ndarray, none_id: int) -> dict:
    """:func:`compare` plus micro-F1 (percent) of the reference and of ``actual`` against ``gold`` and
    their difference in points; a row with non-finite outputs is scored as a wrong prediction."""
    from dfma.metrics import micro_prf

    out = compare(reference, actual)
    pred = np.asarray(actual).argmax(-1)
    bad = ~np.isfinite(np.asarray(actual, dtype=np.float64)).all(axis=-1)
    wrong = np.where(gold == none_id, (none_id + 1) % max(np.asarray(actual).shape[-1], 2), none_id)
    pred = np.where(bad, wrong, pred)  # a NaN row is never right
    f1_ref = micro_prf(gold, np.asarray(reference).argmax(-1), none_id)[2]
    f1 = micro_prf(gold, pred, none_id)[2]
    return {**out, "f1_fp32": round(100 * f1_ref, 3), "f1": round(100 * f1, 3),
            "f1_delta_points": round(100 * (f1 - f1_ref), 3)}
