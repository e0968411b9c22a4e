"""The no-argument defaults of ``python benchmarks/latency.py`` and its expected duration
(benchmarks/duration.py): the plan fits 20 minutes on this project's machines, the compile row is opt-in,
and the printed estimate follows every flag that changes the work."""
from __future__ import annotations

import pytest

from dfma.benchmarks import backends as bk

# ---------------------------------------------------------------- defaults and the expected duration

def _cached_base_plan(tmp_path, *argv):
    """The plan of ``python benchmarks/latency.py ARGV`` as if bundles/base were cached, on this project's
    2-core machines (Intel Xeon with AMX, 24 GB: 18 GB for the backends side by side): the missing cache of
    ``--cache`` makes the plan predict every graph the export and the precision step write."""
    import dataclasses

    from dfma.benchmarks.duration import estimate, plan_run
    from dfma.benchmarks.latency_options import parse_args

    args = parse_args(["--cache", str(tmp_path / "no-bundle"), "--memory-budget", "18000", "--threads", "2", *argv])
    plan = plan_run(args)
    assert plan.export and plan.preset == args.preset
    plan = dataclasses.replace(plan, export=False, precision=False, cpu_class="x86-amx", bf16_emulated=False)
    return args, plan, estimate(plan)


def test_no_argument_defaults_fit_in_twenty_minutes(tmp_path):
    from dfma.benchmarks.latency_options import DEFAULT_GRID, GRIDS, parse_args

    args = parse_args([])  # the design card's command
    assert args.preset == "base" and args.grid == DEFAULT_GRID == "small" and args.modes == ["served", "model"]
    assert args.workloads == ["b1", "b8", "post"]  # real MNRE traffic through dfma.runtime, beside the model grid
    assert GRIDS[args.grid][:2] == ((1, 8), (80,))
    assert args.compile is False and args.no_memory is False  # compile row opt-in, memory probes on
    _, plan, parts = _cached_base_plan(tmp_path)
    assert bk.COMPILE not in plan.keys and parts["compile"] == 0 and parts["memory"] > 0 and parts["served"] > 0
    assert {bk.EAGER, "eager-bf16", "ort-fused"} <= set(plan.keys) and len(plan.keys) >= 10  # every backend
    assert parts["total"] <= 15 * 60, parts  # the target, with margin
    assert parts["max"] <= 20 * 60, parts  # even if every cell were measured three times
    # the full sweep stays available, with its own (larger) estimate
    _, full, full_parts = _cached_base_plan(tmp_path, "--grid", "full")
    assert len(full.cells) == 6 and full_parts["total"] > 2 * parts["total"]


def test_compile_row_is_opt_in_on_every_grid():
    from dfma.benchmarks.latency_options import parse_args

    for argv in ([], ["--grid", "full"], ["--grid", "small"], ["--quick"], ["--backends", "ort-fused"]):
        assert parse_args(argv).compile is False, argv
    for argv in (["--compile"], ["--grid", "full", "--compile"], ["--backends", "ort-fused,eager-compile"]):
        assert parse_args(argv).compile is True, argv
    assert parse_args(["--no-compile", "--backends", "eager-compile"]).compile is False
    assert parse_args(["--no-memory"]).no_memory and not parse_args(["--memory"]).no_memory


def test_expected_duration_follows_the_plan(tmp_path):
    from dfma.benchmarks.duration import COMPILE_CLASS_S, describe, estimate

    _, plan, parts = _cached_base_plan(tmp_path, "--modes", "model,e2e")
    line = describe(plan, parts)
    assert line.startswith("expected duration: about ") and "grid small = batch 1,8 x length 80" in line
    assert "modes model+e2e" in line and "memory probes" in line and "torch.compile" not in line
    _, served_plan, served = _cached_base_plan(tmp_path)  # the default: served rows beside the model grid
    assert "served rows" in describe(served_plan, served) and served["served"] > 0
    _, _, served_only = _cached_base_plan(tmp_path, "--modes", "served")
    assert served_only["cells"] == served_only["memory"] == 0 and served_only["served"] == served["served"]
    _, with_compile, compiled = _cached_base_plan(tmp_path, "--compile", "--modes", "model,e2e")
    assert bk.COMPILE in with_compile.keys  # compiles once per batch class: batch 1 and batch 8
    assert compiled["compile"] == COMPILE_CLASS_S["batch 1"] + COMPILE_CLASS_S["batch > 1"]
    assert compiled["total"] > parts["total"] + compiled["compile"]  # and its calls are timed in every cell
    assert "torch.compile to compile" in describe(with_compile, compiled)
    _, _, no_memory = _cached_base_plan(tmp_path, "--no-memory", "--modes", "model,e2e")
    assert no_memory["memory"] == 0 and no_memory["cells"] >= parts["cells"]
    _, _, model_only = _cached_base_plan(tmp_path, "--modes", "model")
    assert model_only["cells"] < 0.6 * parts["cells"] and model_only["loads"] < parts["loads"]
    _, _, one_cell = _cached_base_plan(tmp_path, "--batch", "1", "--modes", "model,e2e")
    assert one_cell["cells"] < 0.5 * parts["cells"]
    plan.export = plan.precision = True  # the first run exports the bundle and adds its precision graphs
    first = estimate(plan)
    assert first["total"] == pytest.approx(parts["total"] + first["export"] + first["precision"])
    assert "export" in describe(plan, first) and "precision graphs" in describe(plan, first)


def test_expected_duration_of_a_bundle(tiny_bundle):
    from dfma.benchmarks.duration import expected_duration
    from dfma.benchmarks.latency_options import parse_args

    line = expected_duration(parse_args(["--bundle", str(tiny_bundle), "--quick"]))
    assert line.startswith("expected duration: about ") and "grid quick" in line and "export" not in line
    assert "--compile adds" in line
    assert "not estimated" in expected_duration(parse_args(["--bundle", str(tiny_bundle / "missing")]))
