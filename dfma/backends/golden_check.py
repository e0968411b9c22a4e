"""Run a runner on a bundle's golden set (``dfma.contract.golden``) and measure it against the golden logits."""
from __future__ import annotations

import time

import numpy as np

from dfma.backends.base import Runner
from dfma.backends.compare import compare
from dfma.contract.golden import Golden


def run_golden(runner: Runner, golden: Golden, *, repeats: int = 1) -> dict:
    """``top1_agreement``, ``max_abs_error``, ``mean_abs_error``, ``nonfinite_rows`` of an open runner against
    the golden logits, and ``ms_per_sample`` (the fastest of ``repeats`` passes over the golden set)."""
    best, logits = float("inf"), None
    for _ in range(max(1, repeats)):
        start = time.perf_counter()
        out = np.concatenate([runner.logits(batch) for batch in golden.batches()])
        best = min(best, time.perf_counter() - start)
        logits = out
    row = compare(golden.logits, logits)
    return {k: row[k] for k in ("top1_agreement", "max_abs_error", "mean_abs_error", "nonfinite_rows")} | {
        "samples": golden.rows, "ms_per_sample": round(1000 * best / golden.rows, 3)}
