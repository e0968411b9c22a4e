"""Is a measured cell trustworthy on a shared machine? Disturbed cells are rerun, and never decide a target.

What disturbs a measurement is other work on the CPUs, so the rule looks at that and at a robust spread:

- **other processes**: a cell is disturbed when other processes used more than ``OTHERS_MAX`` of the CPUs
  while it ran (``/proc/stat`` minus this process tree, :class:`timing.CpuLoad`);
- **spread**: a backend's calls, each divided by the fastest call of the same sample (so that real traffic's
  sentence lengths are not taken for noise), have p90 / p50 above ``SPREAD_MAX``: the run was uneven.
  p90 / p50 rather than p50 / min: one lucky call does not make every other call look slow;
- **bimodal backends**: a backend whose own calls fall in two separate groups (:func:`bimodal`: a gap in the
  sorted times with at least ``MODE_SHARE`` of the calls on each side, the groups' medians ``MODE_RATIO``
  apart) is reported with both modes and is *not* judged by the spread rule, so that it does not withhold
  the verdict on the others. Its row says so (``bimodal``), with each mode's CPU time per wall second when
  the worker recorded it: ~1 thread's worth in the slow mode and ~2 in the fast one means a thread of its
  pool did not get a core (contention), equal values mean the backend itself does more work in one mode.

A disturbed cell is measured again, up to ``RERUNS`` more times; the least disturbed attempt is kept and
every row carries the verdict (``disturbance``), so that a target is reported met or missed only from
undisturbed cells (:func:`undisturbed`).

A target compares two rows. Other processes' load always withholds its verdict; the uneven calls of one of
the two rows withhold it only when they make the comparison uncertain: when the bootstrap interval of the
ratio (:func:`ratio_interval`, ``LEVEL``, resampling the samples) contains the target. Uneven calls that
still leave a ratio of 1.0 against a target of 1.5 decide it.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

OTHERS_MAX = 0.10
SPREAD_MAX = 1.25  # p90 / p50 of the calls normalized per sample
MODE_SHARE = 0.2  # each mode of a bimodal backend holds at least this share of its calls
MODE_RATIO = 1.3  # and the slow mode's median is at least this many times the fast one's
MODE_GAP = 0.5  # the gap between the modes is at least this share of the distance between their medians (log)
RERUNS = 2
LEVEL = 0.90  # the bootstrap interval of a compared ratio
BOOTSTRAP = 2000
MIN_REPS_BATCH1 = 7  # timed calls per backend at batch 1, at least


def _normalized(row: dict) -> np.ndarray:
    """A row's calls divided by the fastest call of the same sample (``row["sample"]``: sample of each call;
    without it every call is of the same input)."""
    t = np.asarray(row["seconds"], dtype=np.float64)
    samples = row.get("sample")
    if samples is None or len(samples) != len(t):
        return t / t.min() if t.size and t.min() > 0 else t
    s = np.asarray(samples)
    best = {k: t[s == k].min() for k in set(s.tolist())}
    return t / np.asarray([best[k] for k in s.tolist()])


def spread(seconds: list[float] | dict) -> float | None:
    """p90 / p50 of one backend's calls (a row: normalized per sample first); None with fewer than 3."""
    row = seconds if isinstance(seconds, dict) else {"seconds": seconds}
    t = _normalized(row)
    if t.size < 3 or t.min() <= 0:
        return None
    p50, p90 = np.percentile(t, [50, 90])
    return float(p90 / p50)


def bimodal(seconds: Sequence[float] | dict, cpu: Sequence[float] | None = None) -> dict | None:
    """The two modes of a backend's calls when they form two groups, else None: ``{"fast_ms", "slow_ms",
    "slow_share", "ratio"}`` (+ ``fast_cpu_per_s``, ``slow_cpu_per_s`` when ``cpu`` seconds per call are given)."""
    row = seconds if isinstance(seconds, dict) else {"seconds": list(seconds)}
    raw = np.asarray(row["seconds"], dtype=np.float64)
    t = _normalized(row)
    n = t.size
    if n < 5 or t.min() <= 0:
        return None
    order = np.argsort(t, kind="stable")
    logs = np.log(t[order])
    lo_k, hi_k = max(int(np.ceil(MODE_SHARE * n)), 1), n - max(int(np.ceil(MODE_SHARE * n)), 1)
    if hi_k < lo_k:
        return None
    gaps = logs[lo_k:hi_k + 1] - logs[lo_k - 1:hi_k]  # gap after position k-1, for k in lo_k..hi_k
    k = lo_k + int(np.argmax(gaps))
    fast, slow = logs[:k], logs[k:]
    distance = float(np.median(slow) - np.median(fast))
    if distance < np.log(MODE_RATIO) or logs[k] - logs[k - 1] < MODE_GAP * distance:
        return None
    fast_i, slow_i = order[:k], order[k:]
    out = {"fast_ms": round(1e3 * float(np.median(raw[fast_i])), 3), "slow_ms": round(1e3 * float(np.median(raw[slow_i])), 3),
           "slow_share": round(len(slow_i) / n, 3), "ratio": round(float(np.exp(distance)), 3)}
    if cpu is not None and len(cpu) == n:
        c = np.asarray(cpu, dtype=np.float64)
        out["fast_cpu_per_s"] = round(float(np.median(c[fast_i] / raw[fast_i])), 2)
        out["slow_cpu_per_s"] = round(float(np.median(c[slow_i] / raw[slow_i])), 2)
        out["cause"] = mode_cause(out["fast_cpu_per_s"], out["slow_cpu_per_s"])
    return out


def mode_cause(fast_cpu: float, slow_cpu: float) -> str:
    """What the CPU time per wall second of the two modes says about the slow one."""
    if fast_cpu > 1.3 * slow_cpu:
        return (f"slow calls got {slow_cpu:.1f} CPU-s per s against {fast_cpu:.1f}: threads of its pool waited for a "
                "core (contention, or a pool parked between calls)")
    return (f"both modes used {slow_cpu:.1f}-{fast_cpu:.1f} CPU-s per s: the slow calls do more work (the backend "
            "itself, e.g. another kernel or allocation path), not a lack of cores")


def judge(rows: list[dict], others: dict | None) -> dict:
    """The verdict on one attempt at a cell: ``{disturbed, why, others_cpu_fraction, spread, bimodal}``;
    ``bimodal`` = ``{backend: modes}`` of the backends left out of the spread rule."""
    modes = {r["backend"]: m for r in rows if (m := bimodal(r, r.get("cpu"))) is not None}
    spreads = {r["backend"]: s for r in rows if r["backend"] not in modes and (s := spread(r)) is not None}
    worst = max(spreads.values(), default=None)
    busy = None if others is None else others.get("others_cpu_fraction")
    why = []
    if busy is not None and busy > OTHERS_MAX:
        why.append(f"other processes used {100 * busy:.0f}% of the CPUs (> {100 * OTHERS_MAX:.0f}%)")
    if worst is not None and worst > SPREAD_MAX:
        slow = max(spreads, key=spreads.get)
        why.append(f"{slow}: p90 / p50 = {worst:.2f} (> {SPREAD_MAX})")
    uneven = {b: round(s, 3) for b, s in spreads.items() if s > SPREAD_MAX}
    return {"disturbed": bool(why), "why": "; ".join(why), "others_cpu_fraction": busy,
            "spread": None if worst is None else round(worst, 3), "bimodal": modes,
            "busy": bool(busy is not None and busy > OTHERS_MAX), "uneven": uneven}


def measure_cell(run_once: Callable[[], list[dict]], load: Callable[[], object], *, reruns: int = RERUNS,
                 log: Callable[[str], None] = lambda line: None) -> list[dict]:
    """Run ``run_once`` (rows with ``backend`` and ``seconds``) until an attempt is undisturbed or ``reruns``
    more attempts are spent; ``load()`` starts a :class:`timing.CpuLoad`-like probe (``.others()``).
    Returns the least disturbed attempt's rows, each with ``disturbance`` = verdict + ``attempts``, and
    ``bimodal`` (its two modes) on a backend whose own calls are bimodal."""
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
        row["disturbance"] = {**{k: v for k, v in verdict.items() if k not in ("bimodal", "uneven")},
                              "attempts": len(attempts), "own_spread": verdict["uneven"].get(row["backend"])}
        if row["backend"] in verdict["bimodal"]:
            row["bimodal"] = verdict["bimodal"][row["backend"]]
    return rows


def compared_disturbance(rows: Sequence[dict | None], goal: float | None = None) -> str | None:
    """Why a comparison of these rows (one cell; ``rows[1]`` the reference) cannot decide a target of ``goal``
    (the ratio reference / row), or None: other processes were busy, or one of *these* rows was uneven (p90 /
    p50 over ``SPREAD_MAX``) and the ratio's :func:`ratio_interval` contains ``goal`` (without ``goal``: uneven
    at all). Each contender runs in its own worker, so another row's uneven calls (eager's OpenMP pool, say)
    say nothing about these; the cell is still measured again for it. Rows without the per-row fields fall
    back to the cell's verdict."""
    why: list[str] = []
    uneven: list[str] = []
    for row in rows:
        d = (row or {}).get("disturbance") or {}
        if "busy" not in d:
            if d.get("disturbed"):
                why.append(d.get("why") or "disturbed")
            continue
        if d["busy"]:
            why.append(f"other processes used {100 * (d.get('others_cpu_fraction') or 0):.0f}% of the CPUs "
                       f"(> {100 * OTHERS_MAX:.0f}%)")
        if d.get("own_spread"):
            uneven.append(f"{row['backend']}: p90 / p50 = {d['own_spread']:.2f} (> {SPREAD_MAX})")
    if uneven:
        interval = (ratio_interval(rows[0], rows[1]) if goal is not None and len(rows) == 2 and all(rows)
                    else None)
        if interval is None or interval[0] <= goal <= interval[1]:
            why += uneven + ([f"the ratio's {100 * LEVEL:.0f}% interval {interval[0]:.2f}-{interval[1]:.2f} "
                              f"contains {goal}"] if interval else [])
    return "; ".join(dict.fromkeys(why)) or None


def predecessor_effect(rows: Sequence[dict]) -> dict[str, float]:
    """What a call pays for the call before it: ``{previous contender: median over every row's calls that came
    right after it of (call / its sample's fastest call)}`` (rows need ``after``, from :func:`dfma.timing.interleave`).
    Near 1.0 everywhere when nothing a contender leaves behind (a spinning pool, evicted caches) slows the next."""
    by: dict[str, list[float]] = {}
    for row in rows:
        after = row.get("after")
        if not after or len(after) != len(row["seconds"]):
            continue
        for ratio, previous in zip(_normalized(row), after):
            if previous and previous != row["backend"]:
                by.setdefault(previous, []).append(float(ratio))
    return {k: round(float(np.median(v)), 3) for k, v in sorted(by.items()) if v}


def per_sample_best(row: dict) -> dict:
    """``{sample: fastest call}`` of a row (every call one sample when the row has no ``sample``)."""
    t, samples = list(row["seconds"]), row.get("sample")
    if samples is None or len(samples) != len(t):
        return {0: min(t)} if t else {}
    best: dict = {}
    for s, x in zip(samples, t):
        best[s] = min(best.get(s, x), x)
    return best


def ratio_interval(row: dict, ref: dict, *, level: float = LEVEL, draws: int = BOOTSTRAP,
                   seed: int = 0) -> tuple[float, float] | None:
    """The ``level`` bootstrap interval of ``ref``'s statistic over ``row``'s (per sample the fastest call,
    median over samples; samples resampled in pairs), or None with fewer than 3 common samples."""
    a, b = per_sample_best(row), per_sample_best(ref)
    common = sorted(set(a) & set(b), key=str)
    if len(common) < 3:
        return None
    x = np.asarray([a[k] for k in common], dtype=np.float64)
    y = np.asarray([b[k] for k in common], dtype=np.float64)
    idx = np.random.default_rng(seed).integers(0, len(common), size=(draws, len(common)))
    ratios = np.median(y[idx], axis=1) / np.median(x[idx], axis=1)
    lo, hi = np.quantile(ratios, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def undisturbed(rows: list[dict]) -> list[dict]:
    """The rows whose cell was not disturbed (rows without a verdict count as undisturbed)."""
    return [r for r in rows if not (r.get("disturbance") or {}).get("disturbed")]
