"""Batch invariance: does a graph answer a sentence the same alone and inside a batch?

Behind a dynamic batcher (Triton, ``predict_batch``, ``predict_pairs``) a request shares its batch with
others. Dynamic INT8 computes its activation scale over the whole batch, so one sentence's logits (and
sometimes its label) change with whoever else is in it. :func:`measure` runs every guard sentence alone
(batch 1, its own length), inside batches of 8 and inside batches of 32 (padded to the longest, as the
runtime's collate does), in each serving condition, and records per batch size how many top-1 labels differ
from the sentence alone and the largest |logit difference|.

The bound (:func:`verdict`): a graph is ``batch_dependent`` when any top-1 differs, or when a logit differs
by more than :data:`LOGIT_FLOOR` or :data:`FP32_FACTOR` times what the fp32 graph itself shows (whichever is
larger). fp32's own difference is float reassociation (the kernels block a padded batch differently): about
1e-6 on the tiny preset and MiniLM. A graph whose arithmetic per sentence does not depend on the batch (fp16,
static INT8 with calibrated scales) stays within a small multiple of that; a per-batch activation scale moves
logits by a quantization step (5e-2 on the tiny preset), four orders above. 1e-3 sits between the two with
room on both sides, and top-1 identity is what a user sees.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from dfma.export.precision import guard_sets as sets

BATCH_SIZES = (8, 32)
LOGIT_FLOOR = 1e-3
FP32_FACTOR = 100.0


def _logits(runner, batches) -> np.ndarray:
    return np.concatenate([runner.logits(b) for b in batches]).astype(np.float32)


def measure_runner(runner, feed_sets: Mapping, pad_id: int) -> dict:
    """Per condition and batch size: ``{"top1_differs", "max_abs_diff"}`` of ``runner`` (open) inside batches
    vs alone, over every sentence of each condition's FeedSet (``feed_sets``: condition -> FeedSet)."""
    out = {}
    for condition, feeds in feed_sets.items():
        singles = sets.rows(feeds)
        alone = _logits(runner, singles)
        row = {"sentences": len(singles)}
        for size in BATCH_SIZES:
            batched = _logits(runner, sets.regroup(singles, size, pad_id))
            row[f"batch{size}"] = {"top1_differs": int((batched.argmax(-1) != alone.argmax(-1)).sum()),
                                   "max_abs_diff": float(np.max(np.abs(batched - alone)))}
        out[condition] = row
    return out


def worst(figures: Mapping) -> tuple[int, float]:
    """``(top-1 labels differing, max |logit diff|)`` over the conditions and batch sizes of a record."""
    cells = [row[f"batch{s}"] for row in figures.values() for s in BATCH_SIZES]
    return max(c["top1_differs"] for c in cells), max(c["max_abs_diff"] for c in cells)


def bound(fp32_figures: Mapping) -> float:
    """The largest |logit diff| a batch-invariant graph may show (module doc)."""
    return max(LOGIT_FLOOR, FP32_FACTOR * worst(fp32_figures)[1])


def verdict(figures: Mapping, logit_bound: float) -> dict:
    """A graph's batch-invariance record: its figures, the bound, ``batch_dependent`` and why."""
    flips, diff = worst(figures)
    dependent = flips > 0 or diff > logit_bound
    why = (f"{flips} top-1 label(s) change inside a batch" if flips else
           f"logits move by up to {diff:.3g} inside a batch (bound {logit_bound:.3g})" if dependent else
           f"top-1 identical alone and in batches of {' and '.join(map(str, BATCH_SIZES))}; logits within "
           f"{diff:.3g} (bound {logit_bound:.3g})")
    return {"batch_dependent": bool(dependent), "why": why, "top1_differs": flips, "max_abs_diff": diff,
            "logit_bound": logit_bound, "conditions": dict(figures)}


def measure(ctx, graphs: Mapping) -> dict:
    """graph key -> :func:`verdict` of each graph (``graphs``: key -> (backend, path); the first is the fp32
    reference the bound is derived from), on every guard sentence of each serving condition."""
    from dfma.config import special_token_ids
    from dfma.export.precision.context import open_runner

    pad = next((v for k, v in special_token_ids(ctx.manifest).items() if "pad" in k.lower()), 0)
    figures = {}
    for key, (backend, path) in graphs.items():
        runner = open_runner(path, backend)
        figures[key] = measure_runner(runner, ctx.data.conditions, pad)
        runner.close()
    logit_bound = bound(next(iter(figures.values())))
    out = {key: verdict(f, logit_bound) for key, f in figures.items()}
    for key, rec in out.items():
        ctx.log(f"  batch invariance {key}: {'BATCH-DEPENDENT, ' if rec['batch_dependent'] else ''}{rec['why']}")
    return out
