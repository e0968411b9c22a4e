"""benchmarks/latency.py --quick on a tiny bundle: the JSON has every field, every speed-up is eager p50 /
backend p50 of the same cell of the same run, the plot is a PNG; and the pieces (FLOP formula, memory
groups, interleaving) on their own."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import fixtures_bundle

REPO = Path(__file__).resolve().parents[1]
BENCH = REPO / "benchmarks"

from dfma.benchmarks import backends as bk  # noqa: E402
from dfma.benchmarks import memory  # noqa: E402
from dfma.benchmarks.flops import FORMULA, model_flops  # noqa: E402
from dfma.benchmarks.timing import Budget, interleave, latency_stats  # noqa: E402

tiny_bundle = fixtures_bundle.tiny_bundle  # the session fixture (a tiny bundle built by the exporter)

ROW_FIELDS = ("mode", "group", "batch", "length", "backend", "n", "p50_ms", "p90_ms", "p99_ms", "throughput",
              "speedup", "eager_p50_ms", "flops", "gflops_per_s", "efficiency", "seconds")


@pytest.fixture(scope="module")
def quick_run(tiny_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    cmd = [sys.executable, str(BENCH / "latency.py"), "--quick", "--bundle", str(tiny_bundle),
           "--out", str(out), "--name", "quick"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads((out / "quick.json").read_text())
    return result, out, proc.stdout


def test_quick_run_fields(quick_run):
    result, _, stdout = quick_run
    assert result["schema"] == "dfma-latency/1"
    assert result["command"].startswith("python benchmarks/latency.py --quick")
    for key in ("cpu", "threads", "logical_cpus", "loadavg_start", "loadavg_end"):
        assert key in result["machine"]
    settings = result["settings"]
    assert settings["grid"] == "quick" and settings["modes"] == ["model", "e2e"]
    assert settings["batches"] and settings["lengths"]
    assert result["gemm"]["fp32"]["rate"] > 0 and result["gemm"]["bf16"]["rate"] > 0
    assert result["flops"]["formula"] == FORMULA
    check = result["flops"]["check"]
    assert abs(check["rel_diff"]) < 1e-6, check  # formula = FlopCounterMode on the eager model
    for key in ("eager-fp32", "eager-bf16", "ort-portable", "ort-fused"):
        entry = result["backends"][key]
        assert entry["size_bytes"] > 0
        assert set(entry["load_seconds"]) == {"model", "e2e"}
        assert entry["memory"]["peak_rss_mb"] > 0 and entry["memory"]["delta_mb"] >= 0
    names = {t["name"] for t in result["targets"]}
    assert len(names) == 3 and any("INT8" in n for n in names)
    assert "vs eager" in stdout and "p50 ms" in stdout


def test_speedups_are_from_the_same_run(quick_run):
    result, _, _ = quick_run
    rows = result["results"]
    cells = {(b, L) for b in result["settings"]["batches"] for L in result["settings"]["lengths"]}
    eager = {}
    for r in rows:
        for field in ROW_FIELDS:
            assert field in r, (field, r["backend"])
        stats = latency_stats(r["seconds"])  # the summary is computed from the raw times stored with it
        assert r["n"] == len(r["seconds"]) >= result["settings"]["budget"]["min_reps"]
        assert r["p50_ms"] == pytest.approx(stats["p50_ms"], abs=1e-4)  # stored to the nanosecond
        assert r["p50_ms"] <= r["p90_ms"] <= r["p99_ms"]
        assert r["throughput"] == pytest.approx(r["batch"] / (r["p50_ms"] / 1e3), rel=1e-9)
        if r["backend"] == "eager-fp32":
            eager[(r["mode"], r["group"], r["batch"], r["length"])] = r["p50_ms"]
    for mode in ("model", "e2e"):
        assert {(b, L) for (m, _, b, L) in eager if m == mode} == cells
    cfg = _cfg(result)
    for r in rows:
        base = eager[(r["mode"], r["group"], r["batch"], r["length"])]
        assert r["eager_p50_ms"] == base
        assert r["speedup"] == pytest.approx(base / r["p50_ms"], rel=1e-12)
        assert r["speedup_min"] == pytest.approx(r["eager_min_ms"] / r["min_ms"], rel=1e-12)
        assert r["flops"] == pytest.approx(model_flops(cfg, r["batch"], r["length"]).total)
        assert r["flops"] == pytest.approx(result["flops"]["per_cell"][f"{r['batch']}x{r['length']}"]["total"])
        gemm = result["gemm"]["per_cell"][f"{r['mode']} {r['batch']}x{r['length']}"]  # timed in the same rounds
        assert r["gemm_rate"] == gemm["rate"] > 0 and gemm["reps"] >= result["settings"]["budget"]["min_reps"]
        assert r["efficiency"] == pytest.approx(r["flops"] / (r["p50_ms"] / 1e3) / r["gemm_rate"])
    assert all(r["speedup"] == 1.0 for r in rows if r["backend"] == "eager-fp32")


def _cfg(result):
    manifest = bk.read_bundle(Path(result["bundle"]["path"]))
    return bk.model_config(manifest)


def test_plot_is_png(quick_run):
    result, out, _ = quick_run
    png = Path(result["outputs"]["png"])
    assert png.parent == out and png.is_file()
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert png.stat().st_size > 10_000


def test_flops_formula_matches_flop_counter():
    import torch

    from dfma.config import preset
    from dfma.model import DFMAModel
    from dfma.benchmarks.flops import measured_flops

    cfg = preset("tiny")
    torch.manual_seed(0)
    model = DFMAModel(cfg).eval()
    for batch, length in ((1, 16), (3, 40)):
        measured, per_op = measured_flops(model, model.example_inputs(batch=batch, length=length))
        assert model_flops(cfg, batch, length).total == pytest.approx(measured, rel=1e-9)
        assert any("attention" in op for op in per_op)


def test_base_flops_scale():
    from dfma.config import preset

    cfg = preset("base")
    one = model_flops(cfg, 1, 32)
    # ResNet-50 on 4 images at 224: ~4.1 GMAC each (about 33 GFLOP), the design's measured figure
    assert one.parts["vision"] / 1e9 == pytest.approx(32.7, abs=0.2)
    assert model_flops(cfg, 8, 32).total == pytest.approx(8 * one.total, rel=1e-9)  # linear in batch
    assert model_flops(cfg, 1, 80).parts["text"] > one.parts["text"]


def test_memory_groups_keep_eager_in_each():
    keys = ["eager-fp32", "ort-portable", "ort-fused", "ort-int8"]
    assert memory.plan_groups(keys, {k: 1000 for k in keys}, None) == [keys]
    assert memory.plan_groups(keys, {k: 1000 for k in keys}, 10_000) == [keys]
    groups = memory.plan_groups(keys, {k: 1000 for k in keys}, 2500)
    assert groups == [["eager-fp32", "ort-portable"], ["eager-fp32", "ort-fused"], ["eager-fp32", "ort-int8"]]
    huge = memory.plan_groups(keys, {"eager-fp32": 10, "ort-portable": 99_999, "ort-fused": 1, "ort-int8": 1}, 100)
    assert huge == [["eager-fp32", "ort-portable"], ["eager-fp32", "ort-fused", "ort-int8"]]


class _Fake:
    def __init__(self, key, log, fail_at=None):
        self.key, self.log, self.calls, self.fail_at = key, log, 0, fail_at

    def run(self, workload):
        self.calls += 1
        if self.fail_at is not None and self.calls >= self.fail_at:
            raise RuntimeError("boom")
        self.log.append(self.key)
        return np.zeros((1, 3))


def test_interleave_rotates_and_survives_a_failing_backend():
    log, errors = [], []
    runners = [_Fake("a", log), _Fake("b", log), _Fake("c", log, fail_at=4)]
    budget = Budget(warmup=1, min_reps=4, max_reps=4, budget_s=0.0, gap_s=0.0)
    times, outputs = interleave(runners, None, budget, on_error=lambda r, e: errors.append(r.key))
    assert log[:3] == ["a", "b", "c"]  # warm-up
    assert log[3:6] == ["a", "b", "c"] and log[6:9] == ["b", "c", "a"]  # order rotated each round
    assert errors == ["c"] and "c" not in times
    assert len(times["a"]) == len(times["b"]) == 4 and set(outputs) >= {"a", "b"}


# ---------------------------------------------------------------- disturbance (synthetic timings)

class _Load:
    """A CpuLoad stand-in replaying the other processes' CPU share of successive attempts."""

    def __init__(self, shares):
        self.shares = iter(shares)

    def __call__(self):
        share = next(self.shares)
        return type("Probe", (), {"others": lambda self: {"others_cpu_fraction": share}})()


def _cell(eager_ms, fused_ms, jitter=1.0):
    """Rows of one cell: eager and ort-fused, 7 calls each; ``jitter`` stretches the slowest calls."""
    def calls(ms):
        return [ms / 1e3 * (1 + (jitter - 1) * i / 6) for i in range(7)]
    return [{"mode": "model", "group": 0, "batch": 1, "length": 80, "backend": "eager-fp32", "seconds": calls(eager_ms)},
            {"mode": "model", "group": 0, "batch": 1, "length": 80, "backend": "ort-fused", "seconds": calls(fused_ms)}]


def test_a_disturbed_cell_is_measured_again_and_the_quiet_attempt_kept():
    from dfma.benchmarks.disturbance import measure_cell

    attempts = iter([_cell(4944, 520), _cell(640, 400)])  # the first while another job shared the cores
    rows = measure_cell(lambda: next(attempts), _Load([0.49, 0.02]))
    assert [r["seconds"][0] for r in rows] == [0.64, 0.4]
    verdict = rows[0]["disturbance"]
    assert verdict["attempts"] == 2 and not verdict["disturbed"] and verdict["others_cpu_fraction"] == 0.02


def test_a_cell_disturbed_every_time_never_meets_a_target():
    from dfma.benchmarks.analysis import evaluate_targets, summarize
    from dfma.benchmarks.disturbance import measure_cell
    from dfma.config import preset

    attempts = iter([_cell(4944, 520), _cell(4800, 510, jitter=2.0), _cell(4900, 500)])
    rows = measure_cell(lambda: next(attempts), _Load([0.49, 0.3, 0.45]))
    assert rows[0]["disturbance"]["disturbed"] and rows[0]["disturbance"]["attempts"] == 3
    targets = evaluate_targets(summarize(rows, preset("tiny"), 1e11), {})
    fused = targets[0]
    assert fused["met"] is None and fused["disturbed"] and "unmeasured (disturbed)" in fused["where"]
    # the same cell measured quietly decides the target
    quiet = measure_cell(lambda: _cell(624, 358), _Load([0.01]))
    assert evaluate_targets(summarize(quiet, preset("tiny"), 1e11), {})[0]["met"] is True


def test_an_uneven_run_counts_as_disturbed_even_on_a_quiet_machine():
    from dfma.benchmarks.disturbance import judge

    verdict = judge(_cell(600, 350, jitter=2.0), {"others_cpu_fraction": 0.0})
    assert verdict["disturbed"] and "p50 / min" in verdict["why"]
    assert not judge(_cell(600, 350, jitter=1.1), {"others_cpu_fraction": 0.05})["disturbed"]


def test_op_profile_runs_on_a_bundle(tiny_bundle):
    """benchmarks/profile_ops.py as a user types it: a table of op types for the fused graph."""
    proc = subprocess.run([sys.executable, str(BENCH / "profile_ops.py"), "--bundle", str(tiny_bundle), "--graph",
                           "ort-fused", "--batch", "1", "--length", "16", "--reps", "2", "--warmup", "1"],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "op type" in proc.stdout and "MultiHeadAttention" in proc.stdout
