"""Interleaved timing of several runners on one cell, latency statistics, and the GEMM rate of this machine.

Interleaving: after a warm-up, every round calls each runner once, in the order of a Williams design
(:func:`dfma.timing.call_order`), so that slow drift (other processes, thermal, frequency) hits every backend
alike and every runner follows every other equally often (a rotation kept one neighbour before each runner
in nearly every round). Rounds continue until at least ``min_reps`` calls per runner
AND ``budget_s`` seconds have passed, or ``max_reps`` is reached (repetitions budgeted by time: a
batch-32 cell on the base preset gets few repetitions, a batch-1 cell many). Before each call the loop
sleeps ``gap_s`` (10 ms): ONNX Runtime's and OpenMP's worker threads spin for a while after a call, and
without the gap they would steal a core from the next backend (2 cores: that halves a 2-thread run).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from dfma.timing import call_order


@dataclass
class Budget:
    """How long one cell (one mode) is measured."""

    warmup: int = 1
    min_reps: int = 3
    max_reps: int = 50
    budget_s: float = 15.0
    gap_s: float = 0.01  # idle time before each call: the previous backend's spinning threads go to sleep

    def to_dict(self) -> dict:
        """JSON-ready."""
        return {"warmup": self.warmup, "min_reps": self.min_reps, "max_reps": self.max_reps,
                "budget_s": self.budget_s, "gap_s": self.gap_s}


def interleave(runners: Sequence, workload, budget: Budget, *,
               on_error: Callable[[object, BaseException], None] | None = None) -> tuple[dict[str, list[float]], dict]:
    """Time ``runner.run(workload)`` in rounds, each in :func:`dfma.timing.call_order` (every runner follows every
    other equally often); ``({key: [seconds...]}, {key: last output})``.

    A runner that raises is dropped from the cell (``on_error(runner, exc)`` is told) and the others go on.
    """
    active = list(runners)
    times: dict[str, list[float]] = {r.key: [] for r in active}
    outputs: dict = {}

    def call(runner) -> float | None:
        if budget.gap_s > 0:
            time.sleep(budget.gap_s)
        try:
            if hasattr(runner, "timed"):  # a contender in a worker process times its own call
                dt, out = runner.timed(workload)
            else:
                t0 = time.perf_counter()
                out = runner.run(workload)
                dt = time.perf_counter() - t0
        except Exception as exc:  # noqa: BLE001  (a backend that cannot run this cell: reported, not fatal)
            active.remove(runner)
            times.pop(runner.key, None)
            if on_error is not None:
                on_error(runner, exc)
            return None
        outputs[runner.key] = out
        return dt

    for _ in range(budget.warmup):
        for runner in list(active):
            call(runner)
    start = time.perf_counter()
    rounds = 0
    while active and rounds < budget.max_reps:
        if rounds >= budget.min_reps and time.perf_counter() - start >= budget.budget_s:
            break
        for runner in [active[k] for k in call_order(len(active), rounds)]:
            if runner not in active:  # dropped earlier in this round
                continue
            dt = call(runner)
            if dt is not None:
                times[runner.key].append(dt)
        rounds += 1
    return times, outputs


def latency_stats(seconds: Sequence[float]) -> dict:
    """p50/p90/p99/mean/min/max in milliseconds and the number of repetitions."""
    a = np.asarray(seconds, dtype=np.float64) * 1e3
    if a.size == 0:
        return {"n": 0}
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"n": int(a.size), "p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99),
            "mean_ms": float(a.mean()), "min_ms": float(a.min()), "max_ms": float(a.max())}


class GemmProbe:
    """A square fp32 torch matmul timed like a backend, interleaved with them (``key`` = ``gemm-fp32``), so that
    each cell's efficiency divides by a GEMM rate measured under the same conditions as its latencies."""

    key = "gemm-fp32"

    def __init__(self, n: int = 2048):
        import torch

        g = torch.Generator().manual_seed(0)
        self.n = n
        self.a, self.b = torch.randn(n, n, generator=g), torch.randn(n, n, generator=g)
        self.out = torch.empty(n, n)

    @property
    def flops(self) -> float:
        """FLOPs of one call."""
        return 2.0 * self.n ** 3

    def run(self, workload=None):
        """One matmul (the workload is ignored)."""
        import torch

        with torch.inference_mode():
            torch.mm(self.a, self.b, out=self.out)


def gemm_rate(threads: int, n: int = 2048, reps: int = 5, dtype: str = "float32") -> dict:
    """FLOP/s of a square ``n x n`` matmul with torch at ``threads`` threads (median and best of ``reps``)."""
    import torch

    torch.set_num_threads(threads)
    dt = getattr(torch, dtype)
    g = torch.Generator().manual_seed(0)
    a = torch.randn(n, n, generator=g).to(dt)
    b = torch.randn(n, n, generator=g).to(dt)
    out = torch.empty(n, n, dtype=dt)
    with torch.inference_mode():
        torch.mm(a, b, out=out)  # warm-up
        times = []
        for _ in range(reps):
            t0 = time.perf_counter()
            torch.mm(a, b, out=out)
            times.append(time.perf_counter() - t0)
    flops = 2.0 * n ** 3
    return {"dtype": dtype, "n": n, "threads": threads, "reps": reps,
            "median_flops": flops / float(np.median(times)), "best_flops": flops / min(times),
            "seconds": [round(t, 5) for t in times]}


class CpuLoad:
    """CPU time that OTHER processes used while this one ran, from /proc/stat (Linux; None elsewhere)."""

    def __init__(self, pids=None):
        """``pids``: a callable giving the ids of live child processes whose CPU time counts as ours (worker
        processes: a child's time reaches ``os.times()`` only once it has exited)."""
        self.pids = pids
        self.start = self._sample()

    def _sample(self):
        import os

        try:
            with open("/proc/stat") as stat:
                fields = [int(v) for v in stat.readline().split()[1:]]
        except (OSError, ValueError):
            return None
        busy = sum(fields) - fields[3] - (fields[4] if len(fields) > 4 else 0)  # minus idle and iowait
        hz = os.sysconf("SC_CLK_TCK")
        t = os.times()
        children = 0
        for pid in (self.pids() if self.pids else []):
            try:
                with open(f"/proc/{pid}/stat") as stat:
                    parts = stat.read().rsplit(")", 1)[1].split()
                children += int(parts[11]) + int(parts[12])  # utime, stime (fields 14 and 15)
            except (OSError, ValueError, IndexError):
                continue
        return busy / hz, t.user + t.system + t.children_user + t.children_system + children / hz, time.monotonic()

    def others(self) -> dict | None:
        """``{"others_cpu_fraction": share of all CPUs busy with other processes, "ours_cpu_fraction": ...}``."""
        import os

        end = self._sample()
        if self.start is None or end is None:
            return None
        busy, ours, wall = (e - s for e, s in zip(end, self.start))
        cpus = os.cpu_count() or 1
        if wall <= 0:
            return None
        return {"others_cpu_fraction": round(max(busy - ours, 0.0) / (wall * cpus), 3),
                "ours_cpu_fraction": round(ours / (wall * cpus), 3), "wall_s": round(wall, 1), "cpus": cpus}
