"""MNRE evaluation: micro precision / recall / F1 over the non-"None" relations (numpy only).

As in the MNRE literature (the HVPNeT / MKGformer scorer): a prediction other than "None" counts as a
guess, a gold label other than "None" counts as gold, and a guess is correct when it equals a gold label
other than "None". ``P = correct / guessed``, ``R = correct / gold``, ``F1 = 2PR / (P + R)``; a ratio
with a zero denominator is 0. Scores are fractions in ``[0, 1]``; :func:`format_report` prints percents.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

NONE_LABEL = "None"


@dataclass(frozen=True)
class RelationScore:
    """Scores of one relation: precision, recall, F1, gold count (support), predicted and correct."""

    name: str
    precision: float
    recall: float
    f1: float
    support: int
    predicted: int
    correct: int


@dataclass(frozen=True)
class Report:
    """Micro scores over non-"None" labels, overall accuracy, and the per-relation table."""

    precision: float
    recall: float
    f1: float
    n_gold: int
    n_pred: int
    n_correct: int
    accuracy: float
    n_samples: int
    per_relation: list[RelationScore] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-serialisable form (per-relation rows as dicts)."""
        return asdict(self)


def _ratio(num: int, den: int) -> float:
    return float(num) / den if den else 0.0


def _f1(p: float, r: float) -> float:
    return 2 * p * r / (p + r) if p + r > 0 else 0.0


def _as_ids(values: Sequence[int] | np.ndarray, name: str, n_labels: int | None) -> np.ndarray:
    arr = np.asarray(values)
    if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
        raise ValueError(f"{name} must be a 1-D sequence of class ids, got shape {arr.shape} "
                         f"dtype {arr.dtype}")
    arr = arr.astype(np.int64)
    if n_labels is not None and arr.size and (arr.min() < 0 or arr.max() >= n_labels):
        raise ValueError(f"{name} has ids outside 0..{n_labels - 1}")
    return arr


def micro_prf(gold: Sequence[int] | np.ndarray, pred: Sequence[int] | np.ndarray,
              none_id: int) -> tuple[float, float, float]:
    """Micro ``(precision, recall, f1)`` over labels other than ``none_id``."""
    g, p = _as_ids(gold, "gold", None), _as_ids(pred, "pred", None)
    if g.shape != p.shape:
        raise ValueError(f"gold and pred differ in length: {g.size} vs {p.size}")
    guessed = int(np.sum(p != none_id))
    n_gold = int(np.sum(g != none_id))
    correct = int(np.sum((p == g) & (g != none_id)))
    precision, recall = _ratio(correct, guessed), _ratio(correct, n_gold)
    return precision, recall, _f1(precision, recall)


def _names(labels: Any) -> list[str]:
    return list(getattr(labels, "names", labels))  # a LabelMap or a list of names


def per_relation(gold: Sequence[int] | np.ndarray, pred: Sequence[int] | np.ndarray,
                 labels: Any, none_label: str = NONE_LABEL) -> list[RelationScore]:
    """One :class:`RelationScore` per non-"None" relation; ``labels``: a LabelMap or names by id."""
    return evaluate(gold, pred, labels, none_label).per_relation


def evaluate(gold: Sequence[int] | np.ndarray, pred: Sequence[int] | np.ndarray,
             names: Any, none_label: str = NONE_LABEL) -> Report:
    """Score class-id predictions against gold ids; ``names[i]`` is the relation of id ``i``
    (a LabelMap works too)."""
    names = _names(names)
    if none_label not in names:
        raise ValueError(f"{none_label!r} is not among the label names")
    none_id = names.index(none_label)
    g, p = _as_ids(gold, "gold", len(names)), _as_ids(pred, "pred", len(names))
    if g.shape != p.shape:
        raise ValueError(f"gold and pred differ in length: {g.size} vs {p.size}")
    k = len(names)
    gold_count = np.bincount(g, minlength=k)
    pred_count = np.bincount(p, minlength=k)
    correct_count = np.bincount(g[g == p], minlength=k)
    rows = []
    for i, name in enumerate(names):
        if i == none_id:
            continue
        pr, rc = _ratio(correct_count[i], pred_count[i]), _ratio(correct_count[i], gold_count[i])
        rows.append(RelationScore(name, pr, rc, _f1(pr, rc), int(gold_count[i]), int(pred_count[i]),
                                  int(correct_count[i])))
    n_gold = int(gold_count.sum() - gold_count[none_id])
    n_pred = int(pred_count.sum() - pred_count[none_id])
    n_correct = int(correct_count.sum() - correct_count[none_id])
    precision, recall = _ratio(n_correct, n_pred), _ratio(n_correct, n_gold)
    return Report(precision, recall, _f1(precision, recall), n_gold, n_pred, n_correct,
                  _ratio(int(np.sum(g == p)), g.size), int(g.size), rows)


def format_report(report: Report | tuple[float, float, float],
                  rows: Sequence[RelationScore] | None = None, *, digits: int = 2,
                  include_empty: bool = False) -> str:
    """A plain-text table: one row per relation (percent), then the micro average and accuracy.

    ``report`` is a :class:`Report`, or a ``micro_prf`` tuple together with ``rows`` from
    :func:`per_relation` (then the counts come from the rows and there is no accuracy line).
    Relations with no gold and no prediction are left out unless ``include_empty``.
    """
    if not isinstance(report, Report):
        p, r, f = report
        rows = list(rows or [])
        report = Report(p, r, f, sum(x.support for x in rows), sum(x.predicted for x in rows),
                        sum(x.correct for x in rows), float("nan"), 0, rows)
    rows = [r for r in report.per_relation if include_empty or r.support or r.predicted]
    width = max([len("micro (non-None)")] + [len(r.name) for r in rows])
    num = 7 + digits

    def line(name: str, p: float, r: float, f: float, support: int, predicted: int) -> str:
        return (f"{name:<{width}}  {100 * p:>{num}.{digits}f}  {100 * r:>{num}.{digits}f}  "
                f"{100 * f:>{num}.{digits}f}  {support:>8d}  {predicted:>9d}")

    header = (f"{'relation':<{width}}  {'P (%)':>{num}}  {'R (%)':>{num}}  {'F1 (%)':>{num}}  "
              f"{'support':>8}  {'predicted':>9}")
    out = [header, "-" * len(header)]
    out += [line(r.name, r.precision, r.recall, r.f1, r.support, r.predicted) for r in rows]
    out.append("-" * len(header))
    out.append(line("micro (non-None)", report.precision, report.recall, report.f1,
                    report.n_gold, report.n_pred))
    if report.n_samples:
        out.append(f"accuracy (all labels, {report.n_samples} samples): "
                   f"{100 * report.accuracy:.{digits}f}%")
    return "\n".join(out)
