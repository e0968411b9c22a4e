"""FP16 / INT8 graphs of the tiny preset: contents, execution, tolerances against fp32, guard, calibration cache.

Tolerances (tiny preset, random weights, so logits are small and close together):
- FP16 vs eager, executed with the onnx reference evaluator (fp16 arithmetic): max |diff| <= 2% of max |logit|;
  ONNX Runtime CPU (which casts most fp16 nodes back to fp32) the same bound.
- static INT8 (U8/S8 per channel) vs fp32 on MNRE validation sentences: max |diff| <= 25% and mean |diff|
  <= 5% of max |logit|, top-1 agreement >= 90%; dynamic INT8: 10% / 2%, agreement >= 95%.
  (The trained checkpoint's figures are in docs/precision.md: agreement >= 99% there.)
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from dfma.export.precision import accuracy_guard as guard
from dfma.export.precision import calibration as cal
from dfma.export import fp16
from dfma.export import quantize as q
from fixtures_bundle import copy_bundle, jpeg_bytes, random_feeds, tiny_bundle, tiny_eager  # noqa: F401
from onnx import TensorProto

from dfma.backends.compare import compare_with_labels
from dfma.backends.ort_runner import OrtRunner
from dfma.backends.reference_runner import ReferenceRunner
from dfma.contract.errors import DataError

from repo_paths import REPO


def _eager(model, feeds: dict) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(**{k: torch.from_numpy(v) for k, v in feeds.items()}).numpy()


@pytest.fixture(scope="module")
def fp16_graph(tiny_bundle, tmp_path_factory) -> tuple[Path, fp16.FP16Result]:
    res = fp16.convert_to_fp16(onnx.load(str(tiny_bundle / "model.onnx")))
    path = tmp_path_factory.mktemp("fp16") / "model.fp16.onnx"
    onnx.save(res.model, str(path))
    return path, res


def test_fp16_graph_keeps_overflow_prone_ops_fp32(fp16_graph):
    path, res = fp16_graph
    model = onnx.load(str(path))
    types = fp16.tensor_types(model)
    inits = {t.name: t.data_type for t in model.graph.initializer}
    for node in model.graph.node:
        if node.op_type in ("LayerNormalization", "Softmax", "ReduceSum"):
            assert types[node.input[0]] == TensorProto.FLOAT, node.name
        if node.op_type in ("MatMul", "Gemm", "Conv"):
            assert types[node.input[0]] == TensorProto.FLOAT16, node.name
            if node.input[1] in inits:
                assert inits[node.input[1]] == TensorProto.FLOAT16, node.input[1]
    assert all(i.type.tensor_type.elem_type in (TensorProto.FLOAT, TensorProto.INT64) for i in model.graph.input)
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    kept = {k["op"] for k in res.kept_fp32}
    assert {"LayerNormalization", "Softmax"} <= kept
    assert all(k["reason"] for k in res.kept_fp32)
    summary = res.summary()
    assert summary["nodes_kept_fp32"] == len(res.kept_fp32) and summary["nodes_fp16"] > 100
    onnx.checker.check_model(model)


def test_fp16_runs_within_tolerance_of_eager(fp16_graph, tiny_bundle, tiny_eager):
    path, _ = fp16_graph
    feeds = random_feeds(tiny_bundle, 3, 21, seed=5)  # NaN pixels in the absent slots
    reference = _eager(tiny_eager, feeds)
    scale = float(np.abs(reference).max())
    honest = ReferenceRunner(path).open().logits(feeds)
    assert np.isfinite(honest).all()
    assert np.abs(honest - reference).max() <= 0.02 * scale
    via_ort = OrtRunner(path).open().logits(feeds)
    assert np.abs(via_ort - reference).max() <= 0.02 * scale
    # ONNX Runtime's CPU provider computes most fp16 nodes in fp32 (inserted casts): recorded, not hidden
    assert fp16.ort_fp32_fallbacks(path).get("MatMul", 0) > 0


@pytest.fixture(scope="module")
def images_dir(mnre_dir, tmp_path_factory) -> Path:
    from dfma.mnre import read_mnre

    folder = tmp_path_factory.mktemp("images")
    for i, s in enumerate(read_mnre(mnre_dir / "mnre_train.txt")[:24]):
        (folder / s.img_id).write_bytes(jpeg_bytes(i))
    return folder


@pytest.fixture(scope="module")
def static_parts(tiny_bundle, mnre_dir, images_dir, tmp_path_factory):
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    work = tmp_path_factory.mktemp("int8")
    pre = q.preprocess(tiny_bundle / "model.onnx", work / "pre.onnx")
    feeds = cal.mnre_feeds(tiny_bundle, manifest, mnre_dir / "mnre_train.txt", 24, images=images_dir)
    ranges = cal.calibrate(pre, cal.MNRECalibrationReader(feeds.batches, progress=False), "minmax")
    val = cal.mnre_feeds(tiny_bundle, manifest, mnre_dir / "mnre_val.txt", 96, batch_size=32)
    reference = guard.run_feeds(OrtRunner(tiny_bundle / "model.onnx").open(), val, progress=False)
    return {"work": work, "pre": pre, "ranges": ranges, "feeds": feeds, "val": val, "ref": reference,
            "manifest": manifest}


def test_calibration_reads_real_sentences_and_images(static_parts):
    feeds = static_parts["feeds"]
    assert len(feeds) == 24 and "image slots" in feeds.source["images"]
    assert any(b["image_mask"].any() for b in feeds.batches)
    assert all(lo <= hi for lo, hi in static_parts["ranges"].values())


def test_static_int8_has_qdq_on_matmuls_and_convs(static_parts):
    out = static_parts["work"] / "int8.onnx"
    _, reduce_range = _recipe_for_this_host("int8")  # the recipe served on this CPU class
    stats = q.quantize_static_qdq(static_parts["pre"], out, static_parts["ranges"], reduce_range=reduce_range)
    assert stats["quantized"].get("Conv", 0) >= 10 and stats["quantized"].get("MatMul", 0) >= 10
    assert stats["left_fp32"].get("Conv", 0) == 0
    assert stats["per_channel_weights"] == sum(stats["quantized"].values())
    model = onnx.load(str(out))
    zps = {t.name: t.data_type for t in model.graph.initializer if t.name.endswith("zero_point")}
    assert TensorProto.UINT8 in zps.values() and TensorProto.INT8 in zps.values()  # U8 activations, S8 weights
    val, ref = static_parts["val"], static_parts["ref"]
    out_logits = guard.run_feeds(OrtRunner(out).open(), val, progress=False)
    row = compare_with_labels(ref, out_logits, val.labels, 0)
    scale = float(np.abs(ref).max())
    assert row["max_abs_error"] <= 0.25 * scale and row["mean_abs_error"] <= 0.05 * scale
    assert row["top1_agreement"] >= 0.90


def test_static_int8_concats_are_quantized_on_their_inputs_exactly(static_parts, monkeypatch):
    """The Concat rewrite OpenVINO needs (export/qdq_concat.py) leaves ONNX Runtime's logits bit-identical."""
    from dfma.export import qdq_concat

    out = static_parts["work"] / "int8-concat.onnx"
    stats = q.quantize_static_qdq(static_parts["pre"], out, static_parts["ranges"])
    assert stats["concats_quantized_on_inputs"] >= 1
    model = onnx.load(str(out))
    producers = {o: n.op_type for n in model.graph.node for o in n.output}
    assert not [n.name for n in model.graph.node if n.op_type == "QuantizeLinear" and producers.get(n.input[0]) == "Concat"]
    plain = static_parts["work"] / "int8-plain.onnx"
    monkeypatch.setattr(qdq_concat, "quantize_concat_inputs", lambda m: (onnx.load(m), []))
    q.quantize_static_qdq(static_parts["pre"], plain, static_parts["ranges"])
    batch = static_parts["val"].batches[0]
    np.testing.assert_array_equal(OrtRunner(out).open().logits(batch), OrtRunner(plain).open().logits(batch))


def test_openvino_compiles_and_runs_the_static_int8_graph(static_parts):
    """OpenVINO 2026.4 refused the INT8 graph before the Concat rewrite; now it runs it within INT8's bounds."""
    from dfma.backends.registry import backend
    from dfma.contract.errors import BackendUnavailable

    try:
        backend("openvino").check_available()
    except BackendUnavailable as exc:
        pytest.skip(f"OpenVINO not installed here ({exc})")
    from dfma.backends.openvino_runner import OpenVINORunner

    out = static_parts["work"] / "int8-ov.onnx"
    q.quantize_static_qdq(static_parts["pre"], out, static_parts["ranges"])
    val, ref = static_parts["val"], static_parts["ref"]
    with OpenVINORunner(out, io=static_parts["manifest"]["io"], threads=1) as ov:
        row = compare_with_labels(ref, guard.run_feeds(ov, val, progress=False), val.labels, 0)
    scale = float(np.abs(ref).max())
    assert row["finite"] and row["max_abs_error"] <= 0.25 * scale and row["mean_abs_error"] <= 0.05 * scale
    assert row["top1_agreement"] >= 0.90


def test_without_images_the_image_encoder_stays_fp32(static_parts):
    pre_model = onnx.load(str(static_parts["pre"]))
    image_only = q.image_only_nodes(pre_model)
    convs = [n.name for n in pre_model.graph.node if n.op_type == "Conv"]
    assert set(convs) <= set(image_only)
    out = static_parts["work"] / "int8-noimg.onnx"
    stats = q.quantize_static_qdq(static_parts["pre"], out, static_parts["ranges"], exclude=image_only)
    assert stats["quantized"].get("Conv", 0) == 0 and stats["quantized"].get("MatMul", 0) >= 10


def test_tensorrt_form_is_symmetric_int8_and_close(static_parts):
    src = onnx.load(str(static_parts["work"] / "int8.onnx"))
    s8, rewritten = q.to_symmetric_s8(src)
    assert rewritten > 0
    qdq = [n for n in s8.graph.node if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    inits = {t.name: t for t in s8.graph.initializer}
    zero_point_types = {inits[n.input[2]].data_type for n in qdq if len(n.input) > 2}
    assert TensorProto.UINT8 not in zero_point_types and TensorProto.INT8 in zero_point_types  # (+ int32 biases)
    path = static_parts["work"] / "int8.s8.onnx"
    onnx.save(s8, str(path))
    val, ref = static_parts["val"], static_parts["ref"]
    logits = guard.run_feeds(OrtRunner(path, optimization="basic").open(), val, progress=False)
    assert compare_with_labels(ref, logits, val.labels, 0)["mean_abs_error"] <= 0.05 * float(np.abs(ref).max())


def _recipe_for_this_host(precision: str) -> tuple[str, bool]:
    """The catalogue row the runtime serves for ``precision`` on this CPU class, and whether it is the
    7-bit-weight recipe (x86 without VNNI, whose U8xS8 products saturate at full range)."""
    from dfma.contract.graphs import of_precision
    from dfma.host import host_info

    row = min(of_precision(precision), key=lambda r: r.host_rank(host_info()["class"]))
    return row.key, row.cpu_classes is not None


def test_dynamic_int8_quantizes_matmuls_only(static_parts, tiny_bundle):
    """Judged for this host's CPU class: the recipe its runtime serves (full range with VNNI/AMX/ARM dot
    products, 7-bit weights on AVX2 / AVX-512 without VNNI), the same bounds on every class."""
    out = static_parts["work"] / "dyn.onnx"
    key, reduce_range = _recipe_for_this_host("int8-dynamic")
    stats = q.quantize_dynamic_int8(tiny_bundle / "model.onnx", out, reduce_range=reduce_range)
    assert stats["integer_ops"].get("MatMulInteger", 0) >= 10 and stats["conv_fp32"] >= 10
    val, ref = static_parts["val"], static_parts["ref"]
    row = compare_with_labels(ref, guard.run_feeds(OrtRunner(out).open(), val, progress=False), val.labels, 0)
    scale = float(np.abs(ref).max())
    assert row["max_abs_error"] <= 0.10 * scale and row["mean_abs_error"] <= 0.02 * scale
    assert row["top1_agreement"] >= 0.95


def test_calibration_cache_round_trips(static_parts, tmp_path):
    path = tmp_path / "calibration.json"
    cal.save_cache(path, static_parts["ranges"], method="minmax", source=static_parts["feeds"].source,
                   graph="model.onnx", graph_sha256="0" * 64, op_types=q.STATIC_OPS)
    doc = cal.load_cache(path)
    assert doc["ranges"] == {k: [float(a), float(b)] for k, (a, b) in static_parts["ranges"].items()}
    assert doc["method"] == "minmax" and doc["source"]["samples"] == 24
    a, b = static_parts["work"] / "a.onnx", static_parts["work"] / "b.onnx"
    q.quantize_static_qdq(static_parts["pre"], a, static_parts["ranges"])
    q.quantize_static_qdq(static_parts["pre"], b, doc["ranges"])
    def scales(path):
        return {t.name: t.raw_data for t in onnx.load(str(path)).graph.initializer if "scale" in t.name}

    assert scales(a) == scales(b)
    doc["ranges"]["x"] = [1.0, 0.0]
    path.write_text(json.dumps(doc))
    with pytest.raises(DataError, match="calibration.json.*ranges"):
        cal.load_cache(path)


def test_guard_with_impossible_target_stops_at_budget(static_parts):
    pre, ranges, val, ref = static_parts["pre"], static_parts["ranges"], static_parts["val"], static_parts["ref"]
    out = static_parts["work"] / "guard.onnx"
    calls = []

    def evaluate(excluded):
        calls.append(list(excluded))
        q.quantize_static_qdq(pre, out, ranges, exclude=excluded)
        return compare_with_labels(ref, guard.run_feeds(OrtRunner(out).open(), val, progress=False), val.labels, 0)

    def rank():
        names = q.quantized_node_names(onnx.load(str(out)))
        return guard.node_sensitivity(pre, names, static_parts["feeds"].batches[:2], ranges)

    rebuilt = []
    found = guard.search(evaluate, rank, target=1.5, budget=2, rebuild=rebuilt.append)  # agreement is <= 1
    assert not found["met"] and "budget of 2 round(s) spent" in found["stopped"]
    assert [r["kept_fp32"] for r in found["rounds"]] == [0, 1, 3] and len(calls) == 3
    assert [len(c) for c in calls] == [0, 1, 3]
    best = found["chosen_round"]  # the best round is kept (re-built when it was not the last)
    assert found["final"]["top1_agreement"] == max(r["top1_agreement"] for r in found["rounds"])
    assert rebuilt == ([] if best == 2 else [found["excluded"]])
    assert found["excluded"] == [k["node"] for k in found["kept"]] == calls[best]
    assert all("local SQNR" in k["reason"] for k in found["kept"])
    ranked = [k["sqnr_db"] for k in found["kept"]]
    assert ranked == sorted(ranked)  # most sensitive first


@pytest.mark.slow
def test_to_precision_cli_updates_the_bundle(tiny_bundle, mnre_dir, tmp_path):
    bundle = tmp_path / "bundle"
    copy_bundle(tiny_bundle, bundle)
    cmd = [sys.executable, str(REPO / "export" / "to_precision.py"), str(bundle), "--data", str(mnre_dir),
           "--calibration-samples", "32", "--guard-samples", "32", "--latency-samples", "4", "--quiet"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    from dfma.contract.bundle import verify_bundle

    manifest = verify_bundle(bundle, strict=True)
    for key, file in (("fp16", "model.fp16.onnx"), ("int8", "model.int8.onnx"),
                      ("int8-dynamic", "model.int8-dynamic.onnx")):
        assert manifest["graphs"][key]["file"] == file and key in manifest["parity"]
        assert key in manifest["precision"]["guard"]
    assert "calibration.json" in manifest["files"]
    # the new graphs keep their large tensors in the bundle's one weight store, each tensor once
    from dfma.contract.weight_store import STORE_FILE, external_refs

    assert STORE_FILE in manifest["files"]
    refs = {p.name: external_refs(p) for p in bundle.glob("*.onnx")}
    assert all(refs[f] for f in ("model.fp16.onnx", "model.int8.onnx", "model.int8-dynamic.onnx",
                                 "model.int8.text.onnx", "model.fp16.vision.onnx"))
    offsets = [r.get("offset") for rs in refs.values() for r in rs]
    assert len(set(offsets)) < len(offsets) and not [p for p in bundle.iterdir() if p.suffix == ".data"]
    assert manifest["graphs"]["fp16"]["fp16"]["kept_fp32_by_op"]["LayerNormalization"] >= 1
    assert manifest["graphs"]["fp16"]["validation"]["executor"].startswith("onnx.reference")
    assert manifest["graphs"]["int8"]["quantization"]["calibration"]["method"] == "minmax"
    auto = manifest["defaults"]["auto"]["cpu"]
    assert auto["precision"] in ("fp32", "int8", "int8-dynamic") and auto["reason"] and auto["host"]["class"]
    timed = manifest["precision"]["latency"]  # the benchmark's timing core, on what its batch-1 row serves
    assert timed and all(t["condition"] == "text-only" and "one worker process per candidate" in t["how"]
                         and t["batch1_median_ms"] > 0 for t in timed.values())
    # a second build reuses the saved ranges instead of calibrating again
    cmd2 = cmd[:3] + ["--int8", "static", "--calibration-cache", str(bundle / "calibration.json")] + cmd[3:]
    proc = subprocess.run(cmd2, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    again = verify_bundle(bundle, strict=True)
    assert again["graphs"]["int8"]["quantization"]["calibration"]["reused_from"].endswith("calibration.json")
    bad = subprocess.run(cmd[:3] + ["--target-agreement", "1.5"], capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "--target-agreement" in bad.stderr
    assert again["graphs"]["int8"]["quantization"]["search_by"] == "kind"
    # the end-to-end probe: one kind INT8 at a time, worst (largest logit error) first, bundle untouched
    from dfma.export.precision.sensitivity_probe import probe

    rows = probe(bundle, samples=16, by="kind", progress=False)
    assert any(".*." in r["unit"] for r in rows) and sum(r["nodes"] for r in rows) >= 20
    errors = [r["mean_abs_error"] for r in rows]
    assert errors == sorted(errors, reverse=True) and all(0 <= r["top1_agreement"] <= 1 for r in rows)
    assert verify_bundle(bundle, strict=True) == again


def test_guard_search_also_holds_f1_within_tolerance():
    """An agreement above target with F1 off by more than the tolerance is not met: the search goes on."""
    def evaluate(excluded):
        return {"top1_agreement": 0.995, "max_abs_error": 0.1, "mean_abs_error": 0.01,
                "f1_delta_points": -1.2 if len(excluded) < 3 else -0.3}

    ranking = [{"node": f"n{i}", "sqnr_db": float(i), "activation_sqnr_db": float(i), "weight_sqnr_db": 99.0}
               for i in range(8)]
    found = guard.search(evaluate, lambda: ranking, target=0.99, budget=5, f1_tolerance=0.5)
    assert found["met"] and [r["kept_fp32"] for r in found["rounds"]] == [0, 1, 3]
    assert found["excluded"] == ["n0", "n1", "n2"] and "F1 delta -1.20" in found["kept"][0]["reason"]
    alone = guard.search(evaluate, lambda: ranking, target=0.99, budget=5)  # agreement only: met at once
    assert alone["met"] and alone["rounds"][-1]["round"] == 0


def test_guard_search_by_kind_keeps_every_layers_instance_at_once():
    """by="kind": one round keeps every layer's node of the most sensitive role, ranked by its worst member."""
    def row(node, module, db):
        return {"node": node, "module": module, "sqnr_db": db, "activation_sqnr_db": db, "weight_sqnr_db": 99.0}

    ranking = [row("a", "text.encoder.layer.0.output.dense", 20.0), row("b", "text.encoder.layer.1.intermediate.dense", 21.0),
               row("c", "text.encoder.layer.1.output.dense", 22.0), row("d", "classifier", 23.0),
               row("e", "", 24.0)]
    assert [[r["node"] for r in g] for g in guard.group_ranking(ranking, "kind")] == [["a", "c"], ["b"], ["d"], ["e"]]
    assert guard.kind_of(ranking[0]) == "text.encoder.layer.*.output.dense" and guard.kind_of(ranking[4]) == "e"

    def evaluate(excluded):
        return {"top1_agreement": 0.999 if {"a", "c"} <= set(excluded) else 0.97, "max_abs_error": 0.1,
                "mean_abs_error": 0.01, "f1_delta_points": 0.0}

    found = guard.search(evaluate, lambda: ranking, target=0.99, budget=3, by="kind")
    assert found["met"] and found["excluded"] == ["a", "c"] and found["rounds"][-1]["kept_fp32"] == 2
    assert all(k["kind"] == "text.encoder.layer.*.output.dense" for k in found["kept"])
    by_node = guard.search(evaluate, lambda: ranking, target=0.99, budget=3, by="node")
    assert by_node["met"] and by_node["excluded"] == ["a", "b", "c"]  # 1 then 2 more: c comes in round 2
