"""The interleaving of timed calls (:mod:`dfma.timing`): the order of contenders in each round, and the worker's
wait for its own spinning pool before it answers."""
from __future__ import annotations

import time
from collections import Counter

import pytest
from repo_paths import REPO

from dfma.timing import Worker, call_order, interleave



def test_call_order_puts_every_contender_after_every_other_equally_often():
    """The interleaving's order (a Williams design): over one cycle of rounds each ordered pair of neighbours
    occurs equally often, for even and odd numbers of contenders; every round is a permutation."""
    for n in range(2, 8):
        cycle = n if n % 2 == 0 else 2 * n
        rounds = [call_order(n, r) for r in range(cycle)]
        assert all(sorted(r) == list(range(n)) for r in rounds)
        pairs = Counter((r[i - 1], r[i]) for r in rounds for i in range(1, n))
        assert len(pairs) == n * (n - 1) and len(set(pairs.values())) == 1, (n, pairs)
        assert call_order(n, cycle) == call_order(n, 0)


@pytest.mark.parametrize("settle", ["1", "0"])
def test_worker_waits_out_its_spinning_pool_before_the_next_call(settle, monkeypatch):
    """A worker whose pool spins after a call answers only once the pool is quiet (so the next contender's call,
    in another process, does not pay for it) and reports the CPU the pool burnt; ``DFMA_TIMING_SETTLE=0`` answers
    at once (what the benchmark did before)."""
    monkeypatch.setenv("DFMA_TIMING_SETTLE", settle)
    support = str(REPO / "tests" / "support")
    with Worker("spinner", "spinning_contender:spinning", {"spin_s": 0.15},
                env={"PYTHONPATH": support}) as w:
        t0 = time.perf_counter()
        r = w.call(0)
        waited = time.perf_counter() - t0
        times = interleave([w], range(2), repeats=1, warmup=0)
    spins = times["spinner"]["spin"][0]
    if settle == "1":
        # the wait lasts as long as the thread spins (0.15 s of wall time); its CPU is what the machine gave it
        assert waited >= 0.14 and r["spin_cpu"] >= 0.02, (r, waited)
        assert min(spins) >= 0.02 and times["spinner"]["after"][0] == ["", "spinner"]
    else:
        assert r["spin_cpu"] == 0.0 and waited < 0.14, (r, waited)
