"""The guard on what is served (issue 22): serving conditions recorded apart, the tune/confirm split, batch
invariance measured and marked, and every path that resolves ``auto`` (the precision step's record, the Python
runtime, the C++ runtime, the Triton repository) passing over a batch-dependent graph unless allowed.

One precision run on the tiny bundle (dynamic INT8 only: 32 guard sentences per condition), shared by the tests.
Dynamic INT8 computes its activation scale over the batch: on the tiny preset its logits move by about 5e-2
between a sentence alone and inside a batch, far above the bound (1e-3, fp32's own difference is ~1e-6).
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from fixtures_bundle import copy_bundle, tiny_bundle  # noqa: F401
from repo_paths import REPO

from dfma.contract.manifest import Manifest

DYN = "int8-dynamic"


@pytest.fixture(scope="module")
def guarded(tiny_bundle, mnre_dir, tmp_path_factory):  # noqa: F811
    """A copy of the tiny bundle with its dynamic INT8 graphs, built by the precision step."""
    from dfma.export.precision.command_line import parse
    from dfma.export.precision.step import run

    bundle = tmp_path_factory.mktemp("served") / "bundle"
    copy_bundle(tiny_bundle, bundle)
    folder, options, recipe_options, chosen = parse([str(bundle), "--int8", "dynamic", "--data", str(mnre_dir),
                                                     "--calibration-samples", "16", "--guard-samples", "32",
                                                     "--latency-samples", "4", "--quiet"])
    manifest = run(folder, options, chosen, recipe_options)
    return bundle, manifest, options


def _with_auto(bundle: Path, key: str) -> None:
    """Record ``key`` as the CPU auto default, first in its ranking (as --allow-batch-dependent would)."""
    from dfma.contract.bundle_writer import update_bundle

    def edit(manifest):
        rec = manifest["defaults"]["auto"]["cpu"]
        entry = manifest["graphs"][key]
        rec.update(graph=key, precision=entry["precision"], label=key, backend="onnxruntime-cpu")
        rec["ranked"] = [{"label": key, "backend": "onnxruntime-cpu", "graph": key, "precision": entry["precision"],
                          "batch1_ms": 0.1, "batch_dependent": True},
                         *[e for e in rec["ranked"] if e["label"] != key]]
        manifest["defaults"]["auto"].pop("onnxruntime-cpu", None)
        return manifest

    update_bundle(bundle, {}, edit)


def test_each_serving_condition_and_split_is_recorded_apart(guarded):
    from dfma.export import photos
    from dfma.export.precision import accuracy_guard as guard

    _, manifest, options = guarded
    conditions = {"text-only"} | ({"with-images"} if photos.available() else set())
    row = manifest["precision"]["guard"][DYN]
    assert set(row["conditions"]) == conditions and set(row["tune"]["conditions"]) == conditions
    assert row["part"] == "confirm" and row["tune"]["part"] == "tune"
    for part in (row, row["tune"]):
        for c in part["conditions"].values():
            assert c["samples"] == 16 and 0 <= c["top1_agreement"] <= 1 and "f1_delta_points" in c
        # the row's own figures are its binding (worst) condition's
        assert part["top1_agreement"] == min(c["top1_agreement"] for c in part["conditions"].values())
    source = manifest["precision"]["guard_data"]
    assert set(source["conditions"]) == conditions
    assert all(s["split"] == {"tune": 16, "confirm": 16} for s in source["conditions"].values())
    # a graph meets the guard only where every condition of both parts does
    met = guard.meets_guard(row, options.target_agreement, options.f1_tolerance)
    assert met == all(guard.meets_guard(c, options.target_agreement, options.f1_tolerance)
                      for part in (row, row["tune"]) for c in part["conditions"].values())
    search = manifest["precision"]["search"][DYN]
    assert "confirmed" in search and "tuned" in search and search["met"] == (search["tuned"] and search["confirmed"])
    fake = {**row, "conditions": {**row["conditions"], "text-only": {**row["conditions"]["text-only"],
                                                                    "top1_agreement": 0.5}}}
    assert not guard.meets_guard(fake, options.target_agreement, options.f1_tolerance)


def test_split_is_deterministic_disjoint_and_regroup_matches_collate():
    from dfma.export.precision import guard_sets as sets

    tune, confirm = sets.split_indices(33, seed=0)
    assert len(tune) == 17 and len(confirm) == 16 and not set(tune) & set(confirm)
    assert sorted([*tune, *confirm]) == list(range(33))
    again = sets.split_indices(33, seed=0)
    assert (again[0] == tune).all() and (again[1] == confirm).all()
    singles = [{"input_ids": np.array([[5] * n]), "attention_mask": np.ones((1, n), np.int64),
                "image_mask": np.zeros((1, 4), np.int64)} for n in (3, 5, 2)]
    (batch,) = sets.regroup(singles, 8, pad_id=0)
    assert batch["input_ids"].shape == (3, 5) and batch["attention_mask"].sum(1).tolist() == [3, 5, 2]
    assert batch["input_ids"][0].tolist() == [5, 5, 5, 0, 0]


def test_dynamic_int8_is_marked_batch_dependent_and_fp32_is_not(guarded):
    _, manifest, _ = guarded
    records = manifest["precision"]["batch_invariance"]
    fp32_key = next(k for k in ("ort", "portable") if k in records)
    assert records[fp32_key]["batch_dependent"] is False
    assert records[fp32_key]["max_abs_diff"] < 1e-4 and records[fp32_key]["top1_differs"] == 0
    dyn = records[DYN]
    assert dyn["batch_dependent"] is True and dyn["max_abs_diff"] > dyn["logit_bound"] >= 1e-3
    for cond in dyn["conditions"].values():
        assert cond["sentences"] == 32 and {"batch8", "batch32"} <= set(cond)
    assert manifest["graphs"][DYN]["batch_dependent"] is True
    assert manifest["graphs"][f"{DYN}-avx2"]["batch_dependent"] is True
    assert not manifest["graphs"][fp32_key].get("batch_dependent")  # its record is in precision.batch_invariance


def test_auto_passes_over_a_batch_dependent_graph_unless_allowed(guarded):
    from dfma.export.precision import accuracy_guard as guard

    _, manifest, options = guarded
    auto = manifest["defaults"]["auto"]["cpu"]
    assert not manifest["graphs"][auto["graph"]].get("batch_dependent")
    assert all(e["batch_dependent"] == bool(manifest["graphs"][e["graph"]].get("batch_dependent"))
               for e in auto["ranked"])
    latency = manifest["precision"]["latency"]
    assert latency["fp32"]["served"] == "two-stage" and latency["fp32"]["samples"] == 4
    ok = {"top1_agreement": 1.0, "f1_delta_points": 0.0}
    fast = {"fp32": {**latency["fp32"], "batch1_median_ms": 10.0}, DYN: {**latency[DYN], "batch1_median_ms": 1.0}}
    batch = manifest["precision"]["batch_invariance"]
    default = guard.choose_auto({DYN: ok}, fast, options.target_agreement, options.f1_tolerance, batch=batch)
    assert default["cpu"]["label"] == "fp32" and "batch-dependent" in default["cpu"]["reason"]
    assert [e["label"] for e in default["cpu"]["ranked"]] == [DYN, "fp32"]
    allowed = guard.choose_auto({DYN: ok}, fast, options.target_agreement, options.f1_tolerance, batch=batch,
                                allow_batch_dependent=True)
    assert allowed["cpu"]["label"] == DYN and allowed["cpu"]["allow_batch_dependent"] is True


def test_python_runtime_honours_the_mark(guarded, tmp_path):
    import dfma.runtime as rt
    from dfma.contract.errors import InputError

    bundle = tmp_path / "bundle"
    copy_bundle(guarded[0], bundle)
    _with_auto(bundle, DYN)
    with rt.load(bundle, backend="onnxruntime-cpu", precision="auto") as ex:
        d = ex.describe()
        assert not d["graph_key"].startswith(DYN), d
        assert "passed over" in d["precision_reason"] and "batch-dependent" in d["precision_reason"]
    with rt.load(bundle, backend="onnxruntime-cpu", precision="auto", allow_batch_dependent=True) as ex:
        assert ex.describe()["graph_key"].startswith(DYN)
    with rt.load(bundle, backend="onnxruntime-cpu", precision="int8-dynamic") as ex:  # by name: served, warned
        d = ex.describe()
        assert d["graph_key"].startswith(DYN) and "batch-dependent" in d["precision_reason"]
    with pytest.raises(InputError, match="allow_batch_dependent"):
        rt.load(bundle, allow_batch_dependent="yes")


def test_cpp_runtime_honours_the_mark(guarded, cli, tmp_path):
    bundle = tmp_path / "bundle"
    copy_bundle(guarded[0], bundle)
    _with_auto(bundle, DYN)

    def info(*extra):
        proc = subprocess.run([str(cli), "info", "--bundle", str(bundle), *extra], capture_output=True, text=True,
                              timeout=300)
        assert proc.returncode == 0, proc.stderr
        return json.loads(proc.stdout)

    default = info()
    assert not default["graph"].startswith(DYN) and "passed over" in default["graph_reason"], default
    assert info("--allow-batch-dependent", "true")["graph"].startswith(DYN)
    named = info("--graph", DYN)
    assert named["graph"] == DYN and "batch-dependent" in named["graph_reason"]
    bad = subprocess.run([str(cli), "info", "--bundle", str(bundle), "--allow-batch-dependent", "maybe"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode != 0 and "--allow-batch-dependent" in bad.stderr


def test_triton_repository_honours_the_mark(guarded, tmp_path):
    from dfma.contract.errors import ExportError
    from dfma.export.to_triton import choose_onnx_graph

    bundle = tmp_path / "bundle"
    copy_bundle(guarded[0], bundle)
    _with_auto(bundle, DYN)
    manifest = Manifest.from_json(json.loads((bundle / "manifest.json").read_text()))
    notes: list[str] = []
    served = choose_onnx_graph(manifest, "auto", "cpu", notes=notes)
    assert DYN not in served and any("passed over" in n for n in notes)
    assert DYN in choose_onnx_graph(manifest, "auto", "cpu", allow_batch_dependent=True)
    with pytest.raises(ExportError, match="--allow-batch-dependent"):
        choose_onnx_graph(manifest, DYN, "cpu")
    assert DYN in choose_onnx_graph(manifest, DYN, "cpu", allow_batch_dependent=True)
    proc = subprocess.run([sys.executable, str(REPO / "export" / "to_triton.py"), str(bundle), "--out", str(tmp_path / "repo"),
                           "--precision", "auto"], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "passed over" in proc.stdout
