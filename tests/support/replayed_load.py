"""A stand-in for ``benchmarks.timing.CpuLoad`` that replays given shares of the CPUs used by other processes:
the disturbance logic is tested on synthetic timings and load (tests/benchmarks/)."""
from __future__ import annotations


class ReplayedLoad:
    """Each call starts a probe whose ``others()`` reports the next share of ``shares``."""

    def __init__(self, shares):
        self.shares = iter(shares)

    def __call__(self):
        share = next(self.shares)
        return type("Probe", (), {"others": lambda self: {"others_cpu_fraction": share}})()
