"""Is a measured cell trustworthy on a shared machine? Disturbed cells are rerun, and never decide a target.

A cell (one batch x length, one mode, every backend interleaved) is **disturbed** when other processes
used more than ``OTHERS_MAX`` of the CPUs while it ran (``/proc/stat``, :class:`timing.CpuLoad`), or when
a backend's p50 is more than ``SPREAD_MAX`` x its fastest call (the run was uneven). Such a cell is
measured again, up to ``RERUNS`` more times; the least disturbed attempt is kept and every row carries
its verdict (``disturbance``), so that a target is reported met or missed only from undisturbed cells.
"""
from __future__ import annotations

from collections.abc import Callable

import numpy as np

OTHERS_MAX = 0.10
SPREAD_MAX = 1.25
RERUNS = 2
MIN_REPS_BATCH1 = 7  # timed calls per backend at batch 1, at least


def spread(seconds: list[float]) -> float | None:
    """p50 / min of one backend's calls (None with fewer than 2)."""
    if len(seconds) < 2 or min(seconds) <= 0:
        return None
    return float(np.percentile(seconds, 50) / min(seconds))


def judge(rows: list[dict], others: dict | None) -> dict:
    """The verdict on one attempt at a cell: ``{disturbed, why, others_cpu_fraction, spread}``."""
    spreads = [s for s in (spread(r["seconds"]) for r in rows) if s is not None]
    worst = max(spreads, default=None)
    busy = None if others is None else others.get("others_cpu_fraction")
    why = []
    if busy is not None and busy > OTHERS_MAX:
        why.append(f"other processes used {100 * busy:.0f}% of the CPUs (> {100 * OTHERS_MAX:.0f}%)")
    if worst is not None and worst > SPREAD_MAX:
        slow = max(rows, key=lambda r: spread(r["seconds"]) or 0)["backend"]
        why.append(f"{slow}: p50 / min = {worst:.2f} (> {SPREAD_MAX})")
    return {"disturbed": bool(why), "why": "; ".join(why), "others_cpu_fraction": busy,
            "spread": None if worst is None else round(worst, 3)}


def measure_cell(run_once: Callable[[], list[dict]], load: Callable[[], object], *, reruns: int = RERUNS,
                 log: Callable[[str], None] = lambda line: None) -> list[dict]:
    """Run ``run_once`` (rows with ``backend`` and ``seconds``) until an attempt is undisturbed or ``reruns``
    more attempts are spent; ``load()`` starts a :class:`timing.CpuLoad`-like probe (``.others()``).
    Returns the least disturbed attempt's rows, each with ``disturbance`` = verdict + ``attempts``."""
    attempts = []
    for attempt in range(1 + max(0, reruns)):
        probe = load()
        rows = run_once()
        verdict = judge(rows, probe.others())
        attempts.append((rows, verdict))
        if not verdict["disturbed"]:
            break
        log(f"  disturbed ({verdict['why']}): " + ("measuring again" if attempt < reruns else "kept, marked"))
    rows, verdict = min(attempts, key=lambda a: (a[1]["disturbed"], a[1]["others_cpu_fraction"] or 0.0,
                                                 a[1]["spread"] or 0.0))
    for row in rows:
        row["disturbance"] = {**verdict, "attempts": len(attempts)}
    return rows


def undisturbed(rows: list[dict]) -> list[dict]:
    """The rows whose cell was not disturbed (rows without a verdict count as undisturbed)."""
    return [r for r in rows if not (r.get("disturbance") or {}).get("disturbed")]
