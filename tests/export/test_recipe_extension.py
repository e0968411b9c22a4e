"""Adding a precision is one catalogue row plus one recipe, and no other edit.

A throw-away precision, ``int8-weights-only`` (weights stored INT8 per output channel behind a standard
``DequantizeLinear``, activations and math fp32), is registered here: its row in the graph catalogue and
its recipe (defined in this file, with an option of its own). Then, with no production file touched, the
precision step's command line offers it, the step builds it into the tiny bundle, guards it, hashes it in
the manifest with its two-stage pair and golden expectation, times it among ``auto``'s candidates, and
``auto`` serves it exactly when it is the fastest graph meeting the guard; ``slim_bundle`` keeps and drops
it by the catalogue like any row, and the latency benchmark lists (and can time) it as a contender.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
from fixtures_bundle import copy_bundle, tiny_bundle  # noqa: F401

from dfma.contract.graphs import CATALOGUE, PORTABLE, GraphKind, register
from dfma.export import recipes
from dfma.export.precision.options import option
from dfma.export.recipes.base import Built, Recipe

KEY = "int8-weights-only"
RECIPE = "weights_only_for_a_test"
ROW = GraphKind(key=KEY, file=f"model.{KEY}.onnx", precision=KEY, format=PORTABLE, ops="onnx", devices=("cpu",),
                derived_from="portable", tensorrt=None, recipe=RECIPE,
                doc="weight-only INT8: per-channel S8 weights behind DequantizeLinear, fp32 activations and math")


@dataclass(frozen=True)
class WeightsOnlyOptions:
    """The throw-away recipe's own option (so the generated command line must carry it)."""

    weights_only_ops: str = option("MatMul", "op types whose constant weights are stored INT8, comma-separated",
                                   metavar="OPS")


class WeightsOnly(Recipe):
    """Quantize the constant 2-D weights of the chosen ops to S8 per output column (DequantizeLinear)."""

    name = RECIPE
    options = WeightsOnlyOptions
    switch = ("--int8-weights-only", None)
    switch_help = "build the weight-only INT8 graph"
    timed = True

    def build(self, ctx, out: Path, parent) -> Built:
        import onnx
        from onnx import TensorProto, helper, numpy_helper

        ops = set(ctx.options_of(WeightsOnlyOptions).weights_only_ops.split(","))
        model = onnx.load(str(ctx.graph_path(self.source)))
        inits = {t.name: t for t in model.graph.initializer}
        wanted = sorted({n.input[1] for n in model.graph.node if n.op_type in ops and len(n.input) > 1
                         and n.input[1] in inits and len(inits[n.input[1]].dims) == 2
                         and inits[n.input[1]].data_type == TensorProto.FLOAT})
        dq_nodes = []
        for name in wanted:
            w = numpy_helper.to_array(inits[name])
            scale = np.maximum(np.abs(w).max(axis=0), 1e-12).astype(np.float32) / 127.0
            q = np.clip(np.round(w / scale), -127, 127).astype(np.int8)
            model.graph.initializer.remove(inits[name])
            model.graph.initializer.extend([numpy_helper.from_array(q, f"{name}_s8"),
                                            numpy_helper.from_array(scale, f"{name}_scale")])
            dq_nodes.append(helper.make_node("DequantizeLinear", [f"{name}_s8", f"{name}_scale"], [name],
                                             name=f"{name}_dequantize", axis=1))
        for i, node in enumerate(dq_nodes):
            model.graph.node.insert(i, node)
        onnx.save(model, str(out))
        return Built(fields={"producer": "tests/export/test_recipe_extension.py (DequantizeLinear on weights)",
                             "quantization": {"format": "weight-only", "weights": "int8 symmetric, per column",
                                              "tensors": len(wanted)}})


@pytest.fixture()
def registered():
    """The throw-away row and recipe, registered for one test and removed after."""
    register(ROW)
    recipes.register(WeightsOnly)
    yield
    recipes.unregister(RECIPE)
    CATALOGUE.pop(KEY, None)


def test_a_new_recipe_is_built_guarded_recorded_chosen_slimmed_and_benchmarked(registered, tiny_bundle, mnre_dir,
                                                                              tmp_path, monkeypatch):
    from dfma.benchmarks import backends as bk
    from dfma.contract.bundle import verify_bundle
    from dfma.export.precision import accuracy_guard as guard
    from dfma.export.precision.command_line import build_parser, parse
    from dfma.export.precision.step import run
    from dfma.contract.manifest import Manifest
    from dfma.export.slim_bundle import graphs_for, slim

    bundle = tmp_path / "bundle"
    copy_bundle(tiny_bundle, bundle)
    assert "--int8-weights-only" in build_parser().format_help() and "--weights-only-ops" in build_parser().format_help()
    folder, options, recipe_options, chosen = parse([str(bundle), "--int8-weights-only", "--data", str(mnre_dir),
                                                     "--calibration-samples", "16", "--guard-samples", "32",
                                                     "--latency-samples", "4", "--quiet"])
    assert [r.key for r in chosen] == [KEY]  # only what was asked for
    manifest = run(folder, options, chosen, recipe_options)

    # built from the portable graph, hashed, verified; the rest of the bundle untouched
    checked = verify_bundle(bundle, strict=True)
    entry = checked["graphs"][KEY]
    assert entry["file"] == ROW.file and ROW.file in checked["files"] and entry["kind"] == PORTABLE
    assert entry["derived_from"] == CATALOGUE["portable"].file and entry["quantization"]["tensors"] > 0
    assert entry["op_counts"]["DequantizeLinear"] == entry["quantization"]["tensors"]
    before = verify_bundle(tiny_bundle, strict=True)
    assert set(checked["graphs"]) == set(before["graphs"]) | {KEY}
    assert all(checked["graphs"][k] == before["graphs"][k] for k in before["graphs"])
    # guarded: a guard row, a parity record, a two-stage pair guarded too, a golden expectation
    row = checked["precision"]["guard"][KEY]
    assert 0 <= row["top1_agreement"] <= 1 and "f1_delta_points" in row
    assert checked["parity"][KEY]["passed"] == (row["top1_agreement"] >= options.target_agreement)
    assert set(entry["stages"]) >= {"vision", "text", "parity"}
    assert all(entry["stages"][s]["file"] in checked["files"] for s in ("vision", "text"))
    assert KEY in checked["golden"]["expected"]
    # timed among auto's candidates; auto serves it exactly when it is the fastest graph meeting the guard
    latency = checked["precision"]["latency"]
    assert latency[KEY]["graph"] == KEY and latency[KEY]["batch1_median_ms"] > 0
    meeting = [k for k in latency if k == "fp32" or guard.meets_guard(
        checked["precision"]["guard"].get(k, {"top1_agreement": -1, "f1_delta_points": 0}), options.target_agreement,
        options.f1_tolerance)]
    fastest = min(meeting, key=lambda k: latency[k]["batch1_median_ms"])
    assert (checked["defaults"]["auto"]["cpu"]["graph"] == KEY) == (fastest == KEY)
    forced = guard.choose_auto({KEY: {"top1_agreement": 1.0, "f1_delta_points": 0.0}},
                               {"fp32": {**latency["fp32"], "batch1_median_ms": 10.0},
                                KEY: {**latency[KEY], "batch1_median_ms": 1.0}},
                               options.target_agreement, options.f1_tolerance)
    assert forced["cpu"]["graph"] == KEY and forced["cpu"]["precision"] == KEY
    assert manifest["graphs"][KEY]["file"] == ROW.file
    import dfma.runtime as rt  # the runtime serves it by its precision, and auto's choice as recorded

    for asked, expect in ((KEY, ROW.file), ("auto", checked["graphs"][checked["defaults"]["auto"]["cpu"]["graph"]]["file"])):
        extractor = rt.load(bundle, backend="onnxruntime-cpu", precision=asked, stages="whole")
        assert extractor.describe()["graph"] == expect, extractor.describe()
        extractor.close()

    # slimming: kept for CPU exactly when auto could serve it there (ONNX Runtime CPU runs it, it passed its guard,
    # is not batch-dependent and is in the recorded ranking: the only row of its precision); dropped for GPU
    typed = Manifest.from_json(checked)  # the slimming and benchmark code read the typed view
    servable = (checked["parity"][KEY].get("passed") is True and not typed.batch_dependent(KEY)
                and KEY in [e["precision"] for e in checked["defaults"]["auto"]["cpu"].get("ranked", [])])
    assert (KEY in graphs_for(typed, "cpu")) == servable and KEY not in graphs_for(typed, "gpu")
    only = slim(bundle, tmp_path / "only", keep=[KEY])
    assert list(only.graphs) == [KEY] and ROW.file in only.files
    without = slim(bundle, tmp_path / "without", keep=["portable"])
    assert KEY not in without.graphs and ROW.file not in without.files

    # the latency benchmark: a contender row of its own, available with this bundle, and timed once
    contenders = bk._contenders()  # the benchmark's rows, listed from the catalogue as it is now
    key = next(k for k, (backend, graph) in contenders.items() if graph == KEY and backend == "onnxruntime-cpu")
    monkeypatch.setattr(bk, "GRAPHS", contenders)  # what the module lists at import once the row is registered
    monkeypatch.setattr(bk, "KEYS", bk.EAGER_KEYS + tuple(contenders))
    keys, skipped = bk.available(bundle, typed)
    assert key in keys, skipped
    from dfma.benchmarks.workload import Workload, make_feeds

    contender = bk.Loader(bundle, typed, threads=1).load(key, "model")
    logits = contender.run(Workload(1, 16, make_feeds(bk.model_config(typed), typed, 1, 16)))
    assert contender.precision == KEY and np.asarray(logits).shape == (1, len(checked["labels"]))
    contender.close()
