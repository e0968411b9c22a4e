"""The NNCF SmoothQuant recipe (``int8-smooth``) on the tiny bundle, and its S8 -> U8 activation rewrite.

- ``export/qdq_u8.py``: rewriting an INT8 activation Q/DQ pair as UINT8 (zero point + 128) gives bit-identical
  dequantized values (the onnx reference evaluator, every value of the range and beyond it), and refuses a
  quantized tensor read by anything but DequantizeLinear.
- ``export/recipes/int8_smooth.py`` (skipped without nncf; ``make test`` installs it with the ``export``
  extra): the precision step builds it only when asked (``--int8-smooth``), guards it, cuts its stage graphs
  and records it; the graph loads in ONNX Runtime with every optimization, its activations are U8 and its
  weights S8, and its logits are the same for a sentence alone and inside a batch of 8; the node names the
  guard search passes to NNCF as an ignored scope are the portable graph's, and NNCF leaves them fp32.
"""
from __future__ import annotations

import numpy as np
import onnx
import pytest
from fixtures_bundle import copy_bundle, random_feeds, tiny_bundle  # noqa: F401
from onnx import TensorProto, helper, numpy_helper

from dfma.contract.errors import ExportError
from dfma.export.qdq_u8 import activations_to_u8, qdq_types

KEY, TWIN = "int8-smooth", "int8-smooth-avx2"


def _qdq_pair_model(zero_points: np.ndarray, scales: np.ndarray, axis: int | None) -> onnx.ModelProto:
    """x -> QuantizeLinear(INT8 zero points) -> DequantizeLinear -> y, and -> Relu(DQ) -> z (two readers)."""
    attrs = {"axis": axis} if axis is not None else {}
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zp"], ["xq"], name="q", **attrs),
             helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["y"], name="dq", **attrs),
             helper.make_node("DequantizeLinear", ["xq", "s", "zp"], ["y2"], name="dq2", **attrs),
             helper.make_node("Relu", ["y2"], ["z"], name="relu")]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4, 600])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4, 600]),
                               helper.make_tensor_value_info("z", TensorProto.FLOAT, [4, 600])],
                              initializer=[numpy_helper.from_array(scales.astype(np.float32), "s"),
                                           numpy_helper.from_array(zero_points.astype(np.int8), "zp")])
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])


@pytest.mark.parametrize("zero_points, axis", [(np.array(-128), None), (np.array(127), None), (np.array(-3), None),
                                               (np.array([-128, -1, 0, 127]), 0)])
def test_u8_rewrite_gives_identical_dequantized_values(zero_points, axis):
    from onnx.reference import ReferenceEvaluator

    scales = np.full(zero_points.shape, 0.0173) if zero_points.ndim else np.array(0.0173)
    model = _qdq_pair_model(zero_points, scales, axis)
    rewritten, done = activations_to_u8(model)
    assert (done.pairs, done.dequantize, done.already_u8) == (1, 2, 0)
    assert qdq_types(rewritten)["activations"] == {"uint8": 1} and qdq_types(model)["activations"] == {"int8": 1}
    inits = {t.name: numpy_helper.to_array(t) for t in rewritten.graph.initializer}
    assert "zp" not in inits  # the INT8 zero point no node reads any more is gone
    onnx.checker.check_model(rewritten)
    # every quantization level, the half-way points between them (rounding) and far outside the range (clipping)
    x = np.concatenate([np.arange(-300, 300) * 0.0173, (np.arange(-300, 300) + 0.5) * 0.0173,
                        np.linspace(-1e4, 1e4, 600), np.random.default_rng(0).normal(0, 3, 600)]).astype(np.float32)
    x = x.reshape(4, 600)
    before = ReferenceEvaluator(model).run(None, {"x": x})
    after = ReferenceEvaluator(rewritten).run(None, {"x": x})
    for b, a in zip(before, after):
        assert b.dtype == a.dtype == np.float32 and np.array_equal(b, a)
    quantized = ReferenceEvaluator(rewritten).run(["xq"], {"x": x})[0]
    original = ReferenceEvaluator(model).run(["xq"], {"x": x})[0]
    assert quantized.dtype == np.uint8 and np.array_equal(quantized.astype(np.int16), original.astype(np.int16) + 128)


def test_u8_rewrite_refuses_a_quantized_tensor_read_by_another_op():
    model = _qdq_pair_model(np.array(5), np.array(0.1), None)
    model.graph.node.append(helper.make_node("Cast", ["xq"], ["xq_f"], name="reads_int8", to=TensorProto.FLOAT))
    with pytest.raises(ExportError, match="reads_int8"):
        activations_to_u8(model)


def test_u8_rewrite_leaves_weights_and_u8_activations():
    w = numpy_helper.from_array(np.array([[1, -2], [3, -4]], dtype=np.int8), "w")
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "zpu"], ["xq"], name="q"),
             helper.make_node("DequantizeLinear", ["xq", "s", "zpu"], ["xd"], name="dq"),
             helper.make_node("DequantizeLinear", ["w", "s", "zps"], ["wd"], name="wdq"),
             helper.make_node("MatMul", ["xd", "wd"], ["y"], name="mm")]
    graph = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              initializer=[w, numpy_helper.from_array(np.array(0.1, np.float32), "s"),
                                           numpy_helper.from_array(np.array(3, np.uint8), "zpu"),
                                           numpy_helper.from_array(np.array(0, np.int8), "zps")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    rewritten, done = activations_to_u8(model)
    assert (done.pairs, done.already_u8) == (0, 1)
    assert qdq_types(rewritten) == {"activations": {"uint8": 1}, "weights": {"int8": 1}}
    assert rewritten.SerializeToString() == model.SerializeToString()


# ---------------------------------------------------------------- the recipe (needs nncf)

@pytest.fixture(scope="module")
def smooth_bundle(tiny_bundle, mnre_dir, tmp_path_factory):
    """A copy of the tiny bundle with the int8-smooth graph built by the precision step (asked for alone)."""
    pytest.importorskip("nncf", reason="nncf is not installed (the `export` extra installs it; make test does)")
    from dfma.export.precision.command_line import parse
    from dfma.export.precision.step import run

    bundle = tmp_path_factory.mktemp("smooth") / "bundle"
    copy_bundle(tiny_bundle, bundle)
    folder, options, recipe_options, chosen = parse([str(bundle), "--int8-smooth", "--data", str(mnre_dir),
                                                     "--calibration-samples", "32", "--guard-samples", "64",
                                                     "--latency-samples", "4", "--smooth-quant-alpha", "0.8",
                                                     "--quiet"])
    assert [r.key for r in chosen] == [KEY, TWIN]  # the 7-bit-weight twin comes with it
    run(folder, options, chosen, recipe_options)
    return bundle


def test_int8_smooth_is_opt_in(tiny_bundle):
    from dfma.export.precision.command_line import build_parser, parse

    assert "--int8-smooth" in build_parser().format_help() and "--smooth-quant-alpha" in build_parser().format_help()
    everything = [r.key for r in parse([str(tiny_bundle)])[3]]
    assert KEY not in everything and TWIN not in everything and {"fp16", "int8", "int8-dynamic"} <= set(everything)
    assert KEY not in {r.key for r in parse([str(tiny_bundle), "--int8", "both"])[3]}


def test_int8_smooth_is_built_guarded_and_recorded(smooth_bundle):
    from dfma.contract.bundle import verify_bundle

    checked = verify_bundle(smooth_bundle, strict=True)
    entry = checked["graphs"][KEY]
    assert entry["file"] == "model.int8-smooth.onnx" and entry["file"] in checked["files"]
    assert entry["precision"] == "int8" and entry["kind"] == "portable" and entry["derived_from"] == "model.onnx"
    quant = entry["quantization"]
    assert quant["smooth_quant_alpha"] == 0.8 and quant["tool"].startswith("nncf 3.")
    assert quant["stats"]["smooth_quant_muls"] > 0 and quant["stats"]["u8_rewrite"]["pairs"] > 0
    assert quant["stats"]["zero_points"]["activations"].keys() == {"uint8"}
    assert quant["stats"]["zero_points"]["weights"].keys() == {"int8"}
    # NNCF quantizes the token-embedding table itself (DequantizeLinear(table) -> Gather)
    assert quant["stats"]["embedding"].startswith("int8")
    row = checked["precision"]["guard"][KEY]
    assert set(row["conditions"]) == {"with-images", "text-only"} and "tune" in row
    assert checked["parity"][KEY]["passed"] == (row["top1_agreement"] >= 0.99)
    assert checked["precision"]["search"][KEY]["rounds"][0]["round"] == 0
    assert set(entry["stages"]) >= {"vision", "text", "parity"}
    assert all(entry["stages"][s]["file"] in checked["files"] for s in ("vision", "text"))
    assert entry["batch_dependent"] is False and not checked["precision"]["batch_invariance"][KEY]["batch_dependent"]
    assert KEY in checked["golden"]["expected"] and KEY in checked["precision"]["latency"]
    # the 7-bit twin: the same nodes fp32, every layer's weights at 7 bits, guarded on its own, for CPUs without VNNI
    twin = checked["graphs"][TWIN]
    assert twin["cpu_classes"] and "x86-avx2" in twin["cpu_classes"] and "7 bits" in twin["quantization"]["weights"]
    assert twin["quantization"]["kept_fp32"] == quant["kept_fp32"] and TWIN in checked["precision"]["guard"]
    w = {}
    for name in ("model.int8-smooth.onnx", "model.int8-smooth-avx2.onnx"):
        m = onnx.load(str(smooth_bundle / name))
        inits = {t.name: t for t in m.graph.initializer}
        w[name] = max(int(np.abs(numpy_helper.to_array(inits[n.input[0]]).astype(np.int16)).max())
                      for n in m.graph.node if n.op_type == "DequantizeLinear" and n.input[0] in inits
                      and inits[n.input[0]].data_type == TensorProto.INT8 and "embeddings" not in n.input[0])
    assert w["model.int8-smooth-avx2.onnx"] <= 64 < w["model.int8-smooth.onnx"]


def test_int8_smooth_graph_runs_in_onnxruntime_and_is_batch_invariant(smooth_bundle):
    import onnxruntime as ort

    path = smooth_bundle / "model.int8-smooth.onnx"
    model = onnx.load(str(path))
    types = qdq_types(model)
    assert types["activations"].keys() == {"uint8"} and types["activations"]["uint8"] > 0
    assert types["weights"].keys() == {"int8"} and types["weights"]["int8"] > 0
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    names = {i.name for i in session.get_inputs()}
    feeds = {k: v for k, v in random_feeds(smooth_bundle, batch=8, length=19, seed=3).items() if k in names}
    together = session.run(None, feeds)[0]
    alone = np.concatenate([session.run(None, {k: v[i:i + 1] for k, v in feeds.items()})[0] for i in range(8)])
    assert together.shape == alone.shape and np.isfinite(together).all()
    assert np.abs(together - alone).max() <= 1e-4 and (together.argmax(1) == alone.argmax(1)).all()


def test_nncf_ignored_scope_uses_the_portable_graph_names(tiny_bundle, mnre_dir):
    pytest.importorskip("nncf", reason="nncf is not installed (the `export` extra installs it; make test does)")
    from dfma.contract.bundle import open_bundle
    from dfma.export import quantize as q
    from dfma.export.precision.accuracy_guard import node_sensitivity
    from dfma.export.precision.calibration import mnre_feeds
    from dfma.export.recipes.int8_smooth import nncf_quantize

    source = tiny_bundle / "model.onnx"
    model = onnx.load(str(source))
    feeds = mnre_feeds(tiny_bundle, open_bundle(tiny_bundle).manifest, mnre_dir / "mnre_train.txt", 16, batch_size=8)
    every = q.quantized_node_names(nncf_quantize(model, feeds.batches, alpha=0.85, ignored=[]))
    portable = {n.name for n in model.graph.node}
    assert every and set(every) <= portable  # what the search ranks and keeps is named as NNCF names it
    ranked = node_sensitivity(source, every, feeds.batches[:1], None)
    kept = [r["node"] for r in ranked[:3]]
    left = q.quantized_node_names(nncf_quantize(model, feeds.batches, alpha=0.85, ignored=kept))
    assert not set(kept) & set(left) and set(left) == set(every) - set(kept)


def test_recipe_report_rows(smooth_bundle, mnre_dir):
    from dfma.export.precision.recipe_report import CONDITIONS, report

    out = report(smooth_bundle, [KEY, TWIN], mnre_dir, sentences=8, threads=1, repeats=1)
    assert out["samples"] == {c: 1624 for c in CONDITIONS} and out["host"]["class"]
    for key in (KEY, TWIN):
        row = out["rows"][key]
        assert all(0.5 <= row["agreement"][c] <= 1 for c in CONDITIONS) and row["batch_invariant"] is True
        assert row["file_mb"] > 0 and row["batch1_vs_fp32"] > 0 and row["batch8_vs_fp32"] > 0
        assert out["times_ms"]["batch1"][key] > 0 and out["times_ms"]["batch8"]["ort"] > 0
    assert out["table"].count("\n") == 1 and out["table"].startswith(f"| `{KEY}` |")
