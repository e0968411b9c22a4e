"""benchmarks/latency.py --quick on a tiny bundle: the JSON has every field, every speed-up is eager p50 /
backend p50 of the same cell of the same run, the plot is a PNG, the torch.compile row is timed without its
compile cost (or skipped with the reason), the INT8 GEMM rate is measured and INT8 rows carry an efficiency
against it; and the pieces (FLOP formula, memory groups, interleaving, disturbance, bf16 emulation, INT8
efficiency) on their own."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import fixtures_bundle
from fixtures_bundle import copy_bundle
import numpy as np
import pytest
from replayed_load import ReplayedLoad
from repo_paths import REPO

BENCH = REPO / "benchmarks"

from dfma.benchmarks import backends as bk
from dfma.benchmarks import isa, memory
from dfma.benchmarks import latency_report as report
from dfma.benchmarks.flops import FORMULA, model_flops
from dfma.benchmarks.timing import Budget, interleave, latency_stats

tiny_bundle = fixtures_bundle.tiny_bundle  # the session fixture (a tiny bundle built by the exporter)

ROW_FIELDS = ("mode", "group", "batch", "length", "backend", "n", "p50_ms", "p90_ms", "p99_ms", "throughput",
              "speedup", "eager_p50_ms", "flops", "gflops_per_s", "efficiency", "seconds")


@pytest.fixture(scope="module")
def quick_run(tiny_bundle, tmp_path_factory):
    out = tmp_path_factory.mktemp("bench")
    cmd = [sys.executable, str(BENCH / "latency.py"), "--quick", "--bundle", str(tiny_bundle), "--modes", "model,e2e",
           "--out", str(out), "--name", "quick"]  # the grid; the served rows: tests/test_benchmark_served.py
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1200, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads((out / "quick.json").read_text())
    return result, out, proc.stdout


@pytest.fixture(scope="module")
def compile_run(tiny_bundle, tmp_path_factory):
    """The torch.compile row against eager at batch 1, lengths 16 and 32, both modes (one graph to compile)."""
    out = tmp_path_factory.mktemp("bench-compile")
    cmd = [sys.executable, str(BENCH / "latency.py"), "--quick", "--compile", "--bundle", str(tiny_bundle),
           "--no-memory", "--backends", "eager-compile", "--batch", "1", "--length", "16", "32",
           "--modes", "model,e2e", "--out", str(out), "--name", "compile"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=1500, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((out / "compile.json").read_text()), proc.stdout, proc.stderr


@pytest.fixture(scope="module")
def int8_run(tiny_bundle, mnre_dir, tmp_path_factory):
    """A copy of the tiny bundle with its dynamic INT8 graph (export/to_precision.py), benchmarked model-only
    at one cell against eager: the INT8 rows and the INT8 GEMM rate interleaved with them."""
    work = tmp_path_factory.mktemp("bench-int8")
    bundle = work / "bundle"
    copy_bundle(tiny_bundle, bundle)
    proc = subprocess.run([sys.executable, str(REPO / "export" / "to_precision.py"), str(bundle), "--int8", "dynamic",
                           "--data", str(mnre_dir), "--guard-samples", "16", "--latency-samples", "2", "--quiet"],
                          cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = bk.read_bundle(bundle).files
    keys = [k for k in bk.GRAPHS if k.startswith("ort-int8") and bk.graph_file(k) in files]
    assert keys, f"to_precision.py wrote no dynamic INT8 graph: {sorted(files)}"
    cmd = [sys.executable, str(BENCH / "latency.py"), "--quick", "--bundle", str(bundle), "--no-memory",
           "--modes", "model", "--batch", "1", "--length", "16", "--backends", ",".join(keys),
           "--out", str(work), "--name", "int8"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900, check=False)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return json.loads((work / "int8.json").read_text()), keys, proc.stdout


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
    # the grid's load table, from the memory probes: bytes of the graphs with their weights, cold and warm loads, RSS
    load = {r["row"]: r for r in result["load"]["rows"]}
    assert {"ort-portable", "ort-fused"} <= set(load) and "eager-fp32" in result["load"]["not_loaded"]
    for key in ("ort-portable", "ort-fused"):
        r = load[key]
        assert r["bytes"] == result["backends"][key]["size_bytes"] == fixtures_bundle.loaded_bytes(
            Path(result["bundle"]["path"]), r["graphs"])  # the graph file and the store ranges it references
        assert r["load_warm_s"] == result["backends"][key]["load_seconds"]["model"] > 0
        assert r["load_cold_s"] == pytest.approx(result["backends"][key]["memory"]["load_seconds"], abs=1e-3) \
            if r["cold"] is None else r["cold"].startswith("not measurable here")
        assert r["rss_growth_mb"] > 0 and r["peak_growth_mb"] == pytest.approx(result["backends"][key]["memory"]["delta_mb"], abs=0.1)
    assert "== load: grid backends" in stdout and "load cold s" in stdout


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


def _cells(result, modes=("model", "e2e")):
    return {f"{m} {b}x{L}" for m in modes for b in result["settings"]["batches"] for L in result["settings"]["lengths"]}


def test_quick_run_leaves_the_compile_row_out_and_says_so(quick_run):
    result, _, stdout = quick_run
    assert "eager-compile" not in result["backends"] and "--compile adds it" in result["skipped"]["eager-compile"]
    assert "eager-compile: not run" in stdout


def test_compile_row_is_timed_without_its_compile_cost(compile_run):
    from dfma.benchmarks.compiled import compile_unavailable

    result, stdout, stderr = compile_run
    why = compile_unavailable()
    if why:  # no inductor here: the row is skipped with the reason, the run still went through
        assert result["skipped"]["eager-compile"] == why and "eager-compile" not in result["backends"]
        assert "eager-compile: " in stdout
        return
    assert result["settings"]["backends"] == ["eager-fp32", "eager-compile"], result["skipped"]
    assert "torch.compile to compile" in stderr  # the expected duration says what compiling adds
    entry = result["backends"]["eager-compile"]
    assert entry["label"] == "torch.compile (inductor) fp32" and entry["precision"] == "fp32"
    comp = entry["compile"]
    assert comp["backend"] == "inductor" and comp["dynamic"] is True and "error" not in comp
    assert set(comp["first_calls"]) == _cells(result)  # an untimed first call in every cell of both modes
    compiling = {c: e for c, e in comp["first_calls"].items() if e["graphs_compiled"]}
    # dynamic shapes: the graph compiled at length 16 serves length 32, and end to end (same shapes) too
    assert set(compiling) == {"model 1x16"}, comp["first_calls"]
    assert comp["compile_seconds"] == pytest.approx(compiling["model 1x16"]["first_call_s"], abs=0.01)
    rows = {f"{r['mode']} {r['batch']}x{r['length']}": r for r in result["results"] if r["backend"] == "eager-compile"}
    assert set(rows) == _cells(result)
    assert max(rows["model 1x16"]["seconds"]) < compiling["model 1x16"]["first_call_s"]  # compiling is not timed
    for r in rows.values():  # the reference is eager fp32: the compiled model computes what it computes
        assert r["reference"] == "eager-fp32" and r["top1_vs_ref"] == 1.0 and r["max_abs_diff_vs_ref"] < 1e-4
    assert "compile s" in stdout and "eager-compile" in stdout


def test_bf16_row_says_whether_it_is_emulated(quick_run):
    from dfma.host import host_info

    result, _, stdout = quick_run
    entry = result["backends"]["eager-bf16"]
    emulated = isa.bf16_emulated(host_info())
    assert entry["emulated"] is emulated and ("emulated" in entry["label"]) is emulated
    assert ("eager-bf16 (emulated)" in stdout) is emulated
    # the same run on a CPU without bf16 instructions: the terminal table names the row emulated
    faked = {**result, "backends": {**result["backends"], "eager-bf16": {**entry, "emulated": True}}}
    assert "eager-bf16 (emulated)" in report.latency_tables(faked)
    assert "eager-bf16 (emulated)" in report.markdown(faked)


def test_bf16_emulation_follows_the_cpu_flags():
    avx512 = {"machine": "x86_64", "flags": ["avx2", "avx512f", "avx512_vnni"]}
    label, emulated = bk.bf16_label(avx512)
    assert emulated and label == "eager PyTorch bf16 autocast (emulated: no AVX512_BF16 or AMX)"
    for flag in ("avx512_bf16", "amx_bf16"):
        label, emulated = bk.bf16_label({**avx512, "flags": [*avx512["flags"], flag]})
        assert not emulated and label == "eager PyTorch bf16 autocast"
    assert bk.bf16_label({"machine": "x86_64", "flags": ["avx2", "amx_int8", "amx_tile"]})[1]  # AMX-INT8 is not bf16
    assert bk.bf16_label({"machine": "aarch64", "flags": ["asimddp"]})[1]
    assert not bk.bf16_label({"machine": "aarch64", "flags": ["asimddp", "bf16"]})[1]
    assert bk.bf16_label({"machine": "x86_64", "flags": ["bf16"]})[1]  # an Arm flag name means nothing on x86
    shown = {"backends": {"eager-bf16": {"emulated": True}, "eager-fp32": {}}}
    assert report.shown(shown, "eager-bf16") == "eager-bf16 (emulated)" and report.shown(shown, "eager-fp32") == "eager-fp32"


def test_int8_gemm_rate_is_measured_in_the_run(quick_run):
    from dfma.host import host_info

    result, _, stdout = quick_run
    int8 = result["gemm"]["int8"]
    cls = host_info()["class"]
    assert int8["rate"] > 0 and int8["best"] >= int8["rate"] and int8["exact"] is True
    assert int8["cpu_class"] == cls == result["machine"]["cpu_class"]
    assert int8["instructions"] == isa.int8_instructions(cls) != "unknown instruction class"
    assert len(int8["seconds"]) == 10 and int8["n"] == result["gemm"]["fp32"]["n"]
    assert "INT8 GEMM rate" in stdout and f"CPU class {cls}: {int8['instructions']}" in stdout


def test_int8_rows_show_their_efficiency_against_the_int8_limit(int8_run):
    result, keys, stdout = int8_run
    cell = result["gemm"]["per_cell_int8"]["model 1x16"]  # timed interleaved with the INT8 rows
    assert cell["rate"] > 0 and cell["reps"] >= result["settings"]["budget"]["min_reps"]
    rows = {r["backend"]: r for r in result["results"]}
    assert set(rows) == {"eager-fp32", *keys}
    for key in keys:
        r = rows[key]
        assert r["precision"].startswith("int8") and r["int8_gemm_rate"] == cell["rate"]
        assert r["int8_efficiency"] == pytest.approx(r["flops"] / (r["p50_ms"] / 1e3) / cell["rate"])
        assert r["efficiency"] == pytest.approx(r["flops"] / (r["p50_ms"] / 1e3) / r["gemm_rate"])
        shown = f"{100 * r['int8_efficiency']:.0f}%"
        line = next(ln for ln in stdout.splitlines() if ln.startswith(key + " ") and "1x16" in ln)
        assert shown in line.split()  # the terminal table's "eff int8" column
    assert rows["eager-fp32"]["int8_efficiency"] is None
    assert "eff int8" in stdout and "interleaved in each INT8 cell: model 1x16" in stdout
    md = report.markdown(result)  # what benchmarks/latency_report.py prints
    assert "eff. vs INT8 GEMM" in md and "INT8 GEMM rate" in md and result["gemm"]["int8"]["cpu_class"] in md


def test_int8_gemm_probe_is_exact():
    from dfma.benchmarks.gemm_int8 import (
        Int8GemmProbe,
        int8_gemm_rate,
        matmul_integer_model,
    )

    probe = Int8GemmProbe(96, threads=1)
    assert probe.check() and probe.flops == 2.0 * 96 ** 3
    rate = int8_gemm_rate(1, n=128, reps=3, cpu_class="x86-avx2")
    assert rate["median_flops"] > 0 and rate["exact"] and "VPMADDUBSW" in rate["instructions"]
    with pytest.raises(ValueError, match="positive"):
        matmul_integer_model(0)


def test_int8_efficiency_divides_by_the_int8_rate_of_the_cell():
    from dfma.benchmarks.analysis import summarize

    from dfma.config import preset

    cfg = preset("tiny")
    rows = [{"mode": "model", "group": 0, "batch": 1, "length": 16, "backend": key, "precision": precision,
             "seconds": [0.01, 0.011, 0.012]} for key, precision in
            (("eager-fp32", "fp32"), ("ort-int8", "int8"), ("ort-int8-dynamic", "int8-dynamic"), ("ort-fp16", "fp16"))]
    flops = model_flops(cfg, 1, 16).total
    out = {r["backend"]: r for r in summarize(rows, cfg, 1e11, {"model 1x16": {"rate": 5e10}}, gemm_int8=4e11,
                                              int8_cells={"model 1x16": {"rate": 2e11}})}
    for key in ("ort-int8", "ort-int8-dynamic"):
        assert out[key]["int8_gemm_rate"] == 2e11  # timed interleaved in that cell
        assert out[key]["int8_efficiency"] == pytest.approx(flops / 0.011 / 2e11)
        assert out[key]["efficiency"] == pytest.approx(flops / 0.011 / 5e10)  # and still against fp32
    for key in ("eager-fp32", "ort-fp16"):
        assert out[key]["int8_gemm_rate"] is None and out[key]["int8_efficiency"] is None
    run_rate = {r["backend"]: r for r in summarize(rows, cfg, 1e11, gemm_int8=4e11)}
    assert run_rate["ort-int8"]["int8_gemm_rate"] == 4e11  # no cell rate: the run's before/after rate
    assert summarize(rows, cfg, 1e11)[1]["int8_efficiency"] is None  # no INT8 rate measured at all


def test_a_compile_that_fails_drops_the_row_with_its_reason():
    import torch
    from dfma.benchmarks.compiled import CompiledModel
    from dfma.benchmarks.latency import prepare_cell

    from dfma.contract.errors import BackendUnavailable

    compiled = CompiledModel(torch.nn.Linear(2, 2))

    def no_compiler():
        raise RuntimeError("InvalidCxxCompiler: no working C++ compiler found")

    with pytest.raises(BackendUnavailable, match="torch.compile .inductor. failed: RuntimeError: InvalidCxxCompiler"):
        compiled.first_call("model 1x16", no_compiler)
    contender = bk.Contender("eager-compile", "model", "torch.compile", "eager", "fp32", None, 0, 0.0, lambda w: None,
                             prepare=lambda w: compiled.first_call("model 1x32", lambda: None))
    runners, reasons = [contender], {}
    prepare_cell(runners, None, "model 1x32", lambda r, exc: reasons.setdefault(r.key, str(exc)))
    assert runners == [] and "InvalidCxxCompiler" in reasons["eager-compile"]  # later cells fail at once, no retry
    assert compiled.describe()["error"] == reasons["eager-compile"] and contender.call is None  # closed


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
    from dfma.benchmarks.flops import measured_flops

    from dfma.config import preset
    from dfma.model import DFMAModel

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


def test_interleave_balances_neighbours_and_survives_a_failing_backend():
    log, errors = [], []
    runners = [_Fake("a", log), _Fake("b", log), _Fake("c", log, fail_at=4)]
    budget = Budget(warmup=1, min_reps=4, max_reps=4, budget_s=0.0, gap_s=0.0)
    times, outputs = interleave(runners, None, budget, on_error=lambda r, e: errors.append(r.key))
    assert log[:3] == ["a", "b", "c"]  # warm-up
    assert log[3:6] == ["a", "b", "c"] and log[6:9] == ["b", "c", "a"]  # Williams design rows, one per round
    assert errors == ["c"] and "c" not in times
    assert len(times["a"]) == len(times["b"]) == 4 and set(outputs) >= {"a", "b"}


# ---------------------------------------------------------------- disturbance (synthetic timings)


def _cell(eager_ms, fused_ms, jitter=1.0):
    """Rows of one cell: eager and ort-fused, 7 calls each; ``jitter`` stretches the slowest calls."""
    def calls(ms):
        return [ms / 1e3 * (1 + (jitter - 1) * i / 6) for i in range(7)]
    return [{"mode": "model", "group": 0, "batch": 1, "length": 80, "backend": "eager-fp32", "seconds": calls(eager_ms)},
            {"mode": "model", "group": 0, "batch": 1, "length": 80, "backend": "ort-fused", "seconds": calls(fused_ms)}]


def test_a_disturbed_cell_is_measured_again_and_the_quiet_attempt_kept():
    from dfma.benchmarks.disturbance import measure_cell

    attempts = iter([_cell(4944, 520), _cell(640, 400)])  # the first while another job shared the cores
    rows = measure_cell(lambda: next(attempts), ReplayedLoad([0.49, 0.02]))
    assert [r["seconds"][0] for r in rows] == [0.64, 0.4]
    verdict = rows[0]["disturbance"]
    assert verdict["attempts"] == 2 and not verdict["disturbed"] and verdict["others_cpu_fraction"] == 0.02


def test_a_cell_disturbed_every_time_never_meets_a_target():
    from dfma.benchmarks.analysis import evaluate_targets, summarize
    from dfma.benchmarks.disturbance import measure_cell

    from dfma.config import preset

    attempts = iter([_cell(4944, 520), _cell(4800, 510, jitter=2.0), _cell(4900, 500)])
    rows = measure_cell(lambda: next(attempts), ReplayedLoad([0.49, 0.3, 0.45]))
    assert rows[0]["disturbance"]["disturbed"] and rows[0]["disturbance"]["attempts"] == 3
    targets = evaluate_targets(summarize(rows, preset("tiny"), 1e11), {})
    fused = targets[0]
    assert fused["met"] is None and fused["disturbed"] and "unmeasured (disturbed)" in fused["where"]
    # the same cell measured quietly decides the target
    quiet = measure_cell(lambda: _cell(624, 358), ReplayedLoad([0.01]))
    assert evaluate_targets(summarize(quiet, preset("tiny"), 1e11), {})[0]["met"] is True


def test_an_uneven_run_counts_as_disturbed_even_on_a_quiet_machine():
    from dfma.benchmarks.disturbance import judge

    verdict = judge(_cell(600, 350, jitter=2.0), {"others_cpu_fraction": 0.0})
    assert verdict["disturbed"] and "p90 / p50" in verdict["why"] and not verdict["bimodal"]
    assert not judge(_cell(600, 350, jitter=1.1), {"others_cpu_fraction": 0.05})["disturbed"]


def test_op_profile_runs_on_a_bundle(tiny_bundle):
    """benchmarks/profile_ops.py as a user types it: a table of op types for the fused graph."""
    proc = subprocess.run([sys.executable, str(BENCH / "profile_ops.py"), "--bundle", str(tiny_bundle), "--graph",
                           "ort-fused", "--batch", "1", "--length", "16", "--reps", "2", "--warmup", "1"],
                          cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "op type" in proc.stdout and "MultiHeadAttention" in proc.stdout


def test_titles_name_the_checkpoint_or_the_preset():
    """The demo's plot is titled by the checkpoint it served (minilm-mnre), not by its architecture preset."""
    assert report.model_title({"preset": "tiny", "source": "checkpoint", "checkpoint": "minilm-mnre"}) \
        == "minilm-mnre (checkpoint)"
    assert report.model_title({"preset": "base", "source": "random"}) == "base (preset, random weights)"
    assert report.model_title({"preset": "tiny", "source": "checkpoint"}) == "tiny (preset)"  # an older result

