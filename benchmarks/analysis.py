"""From raw times to results: latency statistics, speed-up over eager of the same cell, efficiency against
the fp32 GEMM rate (every row) and against the INT8 GEMM rate (rows of precision ``int8*``), and the
issue's three targets."""
from __future__ import annotations

from collections.abc import Mapping

from dfma.benchmarks.backends import EAGER
from dfma.benchmarks.disturbance import undisturbed
from dfma.benchmarks.flops import model_flops
from dfma.benchmarks.timing import latency_stats
from dfma.contract.graphs import INT8

TARGET_SPEEDUP_FUSED, TARGET_EFFICIENCY_FUSED, TARGET_SPEEDUP_INT8 = 1.3, 0.5, 3.0


def is_int8(precision: str | None) -> bool:
    """Whether a row's precision is one of the INT8 ones (``int8``, ``int8-dynamic``)."""
    return bool(precision) and str(precision).startswith(INT8)


def _cell_rate(cells: Mapping | None, row: Mapping, fallback: float | None) -> float | None:
    return ((cells or {}).get(f"{row['mode']} {row['batch']}x{row['length']}") or {}).get("rate") or fallback


def summarize(rows: list[dict], cfg, gemm_fp32: float, gemm_cells: Mapping | None = None, *,
              gemm_int8: float | None = None, int8_cells: Mapping | None = None) -> list[dict]:
    """Latency statistics, throughput, speed-up over eager of the same cell and mode, and efficiency against
    the GEMM rate timed interleaved in that cell (the run's before/after rate where there is none); rows of
    precision ``int8*`` also get ``int8_efficiency`` against the INT8 GEMM rate, found the same way
    (``int8_gemm_rate`` and ``int8_efficiency`` are None on the other rows, and when no INT8 rate was measured)."""
    eager = {(r["mode"], r["group"], r["batch"], r["length"]): latency_stats(r["seconds"])
             for r in rows if r["backend"] == EAGER}
    out = []
    for r in rows:
        stats = latency_stats(r["seconds"])
        p50 = stats.get("p50_ms")
        flops = model_flops(cfg, r["batch"], r["length"]).total
        ref = eager.get((r["mode"], r["group"], r["batch"], r["length"])) or {}
        base = ref.get("p50_ms")
        row = {k: v for k, v in r.items() if k != "seconds"}
        row.update(stats)
        row["seconds"] = [round(s, 9) for s in r["seconds"]]
        row["eager_p50_ms"] = base
        row["speedup"] = base / p50 if base and p50 else None
        # best case against best case: less sensitive to other processes than the medians (noisy machines)
        row["eager_min_ms"] = ref.get("min_ms")
        row["speedup_min"] = ref["min_ms"] / stats["min_ms"] if ref.get("min_ms") and stats.get("min_ms") else None
        row["throughput"] = r["batch"] / (p50 / 1e3) if p50 else None
        row["flops"] = flops
        row["gflops_per_s"] = flops / (p50 / 1e3) / 1e9 if p50 else None
        rate = _cell_rate(gemm_cells, r, gemm_fp32)
        row["gemm_rate"] = rate
        row["efficiency"] = flops / (p50 / 1e3) / rate if p50 and rate else None
        rate8 = _cell_rate(int8_cells, r, gemm_int8) if is_int8(r.get("precision")) else None
        row["int8_gemm_rate"] = rate8
        row["int8_efficiency"] = flops / (p50 / 1e3) / rate8 if p50 and rate8 else None
        out.append(row)
    return out


def evaluate_targets(results: list[dict], backends: Mapping) -> list[dict]:
    """The targets, on the model-only rows: met / missed only from undisturbed cells (benchmarks/disturbance.py);
    a target whose cells were all disturbed is ``unmeasured (disturbed)`` (``met`` None, ``disturbed`` True)."""
    measured = [r for r in results if r["mode"] == "model" and r.get("p50_ms")]
    model = undisturbed(measured)

    def rows(key, batch):
        return [r for r in model if r["backend"] == key and r["batch"] == batch]

    def disturbed(key, batch):
        return any(r["backend"] == key and r["batch"] == batch for r in measured) and not rows(key, batch)

    targets = []
    fused1 = rows("ort-fused", 1)
    v = min((r["speedup"] for r in fused1), default=None)
    targets.append({"name": "ORT fp32 fused speed-up over eager, batch 1", "value": v,
                    "threshold": f">= {TARGET_SPEEDUP_FUSED}x", "met": None if v is None else v >= TARGET_SPEEDUP_FUSED,
                    "where": ", ".join(f"len {r['length']}: {r['speedup']:.2f}x" for r in fused1) or "not measured"})
    fused8 = rows("ort-fused", 8)
    v = min((r["efficiency"] for r in fused8 if r.get("efficiency") is not None), default=None)
    targets.append({"name": "ORT fp32 fused efficiency vs fp32 GEMM rate, batch 8", "value": v,
                    "threshold": f">= {TARGET_EFFICIENCY_FUSED:.2f}", "met": None if v is None else v >= TARGET_EFFICIENCY_FUSED,
                    "where": ", ".join(f"len {r['length']}: {100 * r['efficiency']:.0f}%" for r in fused8) or "not measured"})
    best, where = None, []
    for key in ("ort-int8", "ort-int8-dynamic"):
        rs = rows(key, 1)
        if not rs:
            continue
        speed = min(r["speedup"] for r in rs)
        guard = (backends.get(key) or {}).get("parity", {}).get("guard_passed")
        where.append(f"{key} {speed:.2f}x (guard {'ok' if guard else 'failed' if guard is False else 'unknown'})")
        if guard and (best is None or speed > best):
            best = speed
    met = None if not where else (best is not None and best >= TARGET_SPEEDUP_INT8)
    targets.append({"name": "best INT8 speed-up over eager, batch 1, accuracy guard satisfied", "value": best,
                    "threshold": f">= {TARGET_SPEEDUP_INT8}x", "met": met,
                    "where": "; ".join(where) or "no INT8 graph in the bundle"})
    for target, (key, batch) in zip(targets, (("ort-fused", 1), ("ort-fused", 8), ("ort-int8", 1))):
        if target["met"] is None and disturbed(key, batch):
            target.update(disturbed=True, where="unmeasured (disturbed): every such cell had other processes on "
                                                "the CPUs or an uneven run, even after reruns")
    return targets
