"""The runner interface, the backend registry, the graph catalogue and the comparator, each against the
real thing: ONNX Runtime and OpenVINO sessions on a real tiny bundle, the eager model as the reference."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fixtures_bundle import copy_bundle, random_feeds, tiny_bundle, tiny_eager  # noqa: F401

import dfma.runtime as rt
from dfma.backends.compare import ComparisonError, compare, compare_with_labels
from dfma.backends.ort_runner import OrtRunner
from dfma.backends.registry import BACKENDS, auto_chain, backend
from dfma.contract.bundle import read_manifest
from dfma.contract.errors import BackendUnavailable, BundleError, InputError
from dfma.contract.graphs import CATALOGUE, PRECISIONS, engine_row, graph_kind, of_precision
from dfma.contract.manifest_digest import write_digest

REQUESTS = [{"words": ["Obama", "meets", "Merkel", "in", "Berlin"], "head": [0, 1], "tail": [2, 3]},
            {"words": ["the", "rocket", "of", "NASA", "flies", "again", "today"], "head": [3, 4], "tail": [1, 2]},
            {"words": ["a", "b"], "head": [0, 1], "tail": [1, 2]}]


# ---------------------------------------------------------------- catalogue

def test_catalogue_rows_are_unique_and_derive_from_known_graphs():
    files = [row.file for row in CATALOGUE.values()]
    assert len(set(files)) == len(files) and set(PRECISIONS) == {"fp32", "fp16", "int8", "int8-dynamic"}
    for row in CATALOGUE.values():
        assert row.derived_from is None or row.derived_from in CATALOGUE
        assert row.ops in ("onnx", "com.microsoft") and set(row.devices) <= {"cpu", "gpu"}
    assert [r.key for r in of_precision("fp32")] == ["portable", "ort"]
    with pytest.raises(BundleError, match="unknown precision 'bf16'"):
        of_precision("bf16")
    with pytest.raises(BundleError, match="unknown graph kind"):
        graph_kind("model.onnx")
    engine = engine_row("int8", "NVIDIA H100 80GB HBM3")
    assert engine.file == "engines/int8-nvidia-h100-80gb-hbm3.plan" and engine.derived_from == "int8"


def test_exported_manifest_records_the_catalogue_columns(tiny_bundle):
    manifest = read_manifest(tiny_bundle)
    for key in ("portable", "ort"):
        entry = manifest["graphs"][key]
        assert entry["file"] == CATALOGUE[key].file and entry["ops"] == CATALOGUE[key].ops
        assert entry["devices"] == list(CATALOGUE[key].devices)
    assert manifest["graphs"]["ort"]["derived_from"] == "model.onnx"


# ---------------------------------------------------------------- registry and runners

def test_registry_rows_import_and_auto_chain_order():
    for spec in BACKENDS.values():
        try:
            assert spec.runner_class().name
        except BackendUnavailable as exc:  # an optional backend that is not installed says which extra
            assert spec.extra and spec.extra in str(exc)
    assert [r.name for r in auto_chain()] == ["tensorrt", "onnxruntime-tensorrt", "onnxruntime-cuda", "onnxruntime-cpu"]
    with pytest.raises(BackendUnavailable, match="unknown backend"):
        backend("cuda-magic")


def test_runner_interface_open_infer_describe_close(tiny_bundle, tiny_eager):
    from dfma.model.runner import EagerRunner

    feeds = random_feeds(tiny_bundle)
    manifest = read_manifest(tiny_bundle)
    runner = OrtRunner(tiny_bundle / "model.ort.onnx", io=manifest["io"], graph=CATALOGUE["ort"], threads=1)
    assert not runner.is_open
    with pytest.raises(BackendUnavailable, match="not open"):
        runner.infer(feeds)
    with runner:
        out = runner.infer({**feeds, "unused": np.zeros(1)})  # extra entries are ignored
        assert set(out) == {"logits"} and out["logits"].shape == (3, 23)
        info = runner.describe()
        assert info["backend"] == "onnxruntime-cpu" and info["precision"] == "fp32"
        assert info["providers"] == ["CPUExecutionProvider"]
        with pytest.raises(InputError, match="image_mask"):
            runner.infer({k: v for k, v in feeds.items() if k != "image_mask"})
        with EagerRunner(tiny_eager) as eager:
            row = compare(eager.logits(feeds), runner.logits(feeds))
        assert row["max_abs_error"] <= 1e-4 and row["top1_agreement"] == 1.0
    assert not runner.is_open and runner.session is None


def test_graph_inputs_are_checked_against_the_manifest_once(tiny_bundle):
    io = json.loads(json.dumps(read_manifest(tiny_bundle)["io"]))
    io["inputs"][2]["shape"][3] = 999  # pixel_values: an image size the graph does not take
    with pytest.raises(BundleError, match=r"pixel_values dimension 3 is \d+, manifest io.inputs says 999"):
        OrtRunner(tiny_bundle / "model.onnx", io=io).open()
    io = json.loads(json.dumps(read_manifest(tiny_bundle)["io"]))
    io["inputs"] = io["inputs"][:3]
    with pytest.raises(BundleError, match="image_mask"):
        OrtRunner(tiny_bundle / "model.onnx", io=io).open()


def test_a_graph_onnxruntime_cannot_load_is_a_bundle_error_naming_the_file(tmp_path):
    bad = tmp_path / "broken.onnx"
    bad.write_bytes(b"not an onnx graph")
    with pytest.raises(BundleError, match="broken.onnx: ONNX Runtime cannot load it"):
        OrtRunner(bad).open()


# ---------------------------------------------------------------- comparator

def test_comparator_counts_nonfinite_rows_as_mismatches():
    ref = np.array([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0]], dtype=np.float32)
    act = ref.copy()
    act[1, 0] = np.nan
    act[3] = [5.0, 0.0]  # a real disagreement
    row = compare(ref, act)
    assert row["nonfinite_rows"] == 1 and not row["finite"] and row["top1_agreement"] == 0.5
    assert row["max_abs_error"] == np.inf
    same = compare(ref, ref + 1e-6)
    assert same["top1_agreement"] == 1.0 and same["max_abs_error"] < 2e-6
    assert same["max_rel_error"] == pytest.approx(same["max_abs_error"] / 3.0)
    gold = np.array([0, 1, 0, 1])
    labelled = compare_with_labels(ref, act, gold, none_id=0)
    assert labelled["f1_fp32"] == 100.0 and labelled["f1"] < labelled["f1_fp32"]
    with pytest.raises(ComparisonError, match="shape"):
        compare(ref, ref[:2])


# ---------------------------------------------------------------- precision="auto"

def _with_auto(bundle, tmp_path, record):
    out = tmp_path / "bundle"
    copy_bundle(bundle, out)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest.setdefault("defaults", {})["auto"] = record
    (out / "manifest.json").write_text(json.dumps(manifest))  # the manifest is not in `files`
    write_digest(out)  # a deliberate edit: re-digested
    return out


def test_auto_precision_is_fp32_without_a_recorded_default_and_says_why(tiny_bundle):
    with rt.load(tiny_bundle, threads=1) as ex:
        info = ex.describe()
        assert ex.precision == "fp32" and "records no cpu default" in info["precision_reason"]
        assert info["graph"] == "model.ort.onnx" and info["graph_key"] == "ort"


def test_auto_precision_follows_the_recorded_default(tiny_bundle, tmp_path):
    rec = {"graph": "portable", "backend": "onnxruntime-cpu", "precision": "fp32",
           "reason": "portable on onnxruntime-cpu: the fastest (test)", "host": {}}
    bundle = _with_auto(tiny_bundle, tmp_path, {"cpu": rec, "onnxruntime-cpu": rec})
    with rt.load(bundle, threads=1) as ex, rt.load(tiny_bundle, threads=1, precision="fp32") as fp32:
        assert ex.precision == "fp32" and "the fastest (test)" in ex.describe()["precision_reason"]
        np.testing.assert_allclose(ex.logits(REQUESTS), fp32.logits(REQUESTS), atol=1e-4, rtol=0)


def test_old_manifests_without_catalogue_columns_load_and_agree(tiny_bundle, tmp_path):
    """A bundle written before the catalogue columns (ops, devices) and defaults.auto gives the same logits."""
    old = tmp_path / "old"
    copy_bundle(tiny_bundle, old)
    manifest = json.loads((old / "manifest.json").read_text())
    for entry in manifest["graphs"].values():
        entry.pop("ops", None)
        entry.pop("devices", None)
    manifest.pop("defaults", None)
    (old / "manifest.json").write_text(json.dumps(manifest))
    write_digest(old)
    with rt.load(old, threads=1) as a, rt.load(tiny_bundle, threads=1) as b:
        assert a.describe()["graph"] == b.describe()["graph"]
        np.testing.assert_array_equal(a.logits(REQUESTS), b.logits(REQUESTS))


# ---------------------------------------------------------------- OpenVINO

@pytest.fixture(scope="module")
def openvino():
    try:
        backend("openvino").check_available()
    except BackendUnavailable as exc:
        pytest.skip(f"OpenVINO not installed here ({exc}); make test installs the 'openvino' extra")
    import openvino

    return openvino


def test_openvino_agrees_with_onnxruntime_fp32(tiny_bundle, openvino):
    with rt.load(tiny_bundle, backend="openvino", threads=1) as ov, \
            rt.load(tiny_bundle, backend="onnxruntime-cpu", precision="fp32", threads=1) as ort:
        info = ov.describe()
        assert ov.backend == "openvino" and info["graph"] == "model.onnx" and ov.precision == "fp32"
        assert "f32" in info["inference_precision"].lower()
        requests = REQUESTS + [{**r, "image": _image(i)} for i, r in enumerate(REQUESTS)]
        row = compare(ort.logits(requests), ov.logits(requests))
        assert row["max_abs_error"] <= 1e-4 and row["top1_agreement"] == 1.0
        with pytest.raises(InputError):
            ov.predict({"words": ["a"], "head": [0, 2], "tail": [0, 1]})
        assert ov.predict(REQUESTS[0]).relation == ort.predict(REQUESTS[0]).relation  # still serving


def test_openvino_runner_on_random_shapes(tiny_bundle, openvino):
    from dfma.backends.openvino_runner import OpenVINORunner

    io = read_manifest(tiny_bundle)["io"]
    with OpenVINORunner(tiny_bundle / "model.onnx", io=io, threads=1) as ov, OrtRunner(tiny_bundle / "model.onnx") as ort:
        for batch, length in ((1, 8), (3, 21), (7, 33)):
            feeds = random_feeds(tiny_bundle, batch, length, seed=batch)
            row = compare(ort.logits(feeds), ov.logits(feeds))
            assert row["max_abs_error"] <= 1e-4 and row["top1_agreement"] == 1.0, (batch, length, row)


def test_openvino_does_not_run_onnxruntime_kernels():
    spec = backend("openvino")
    assert [k for k in CATALOGUE if spec.runs(CATALOGUE[k])] == ["portable", "fp16", "int8", "int8-avx2",
                                                                   "int8-smooth", "int8-smooth-avx2"]


def _image(seed):
    from fixtures_bundle import jpeg_bytes

    return jpeg_bytes(seed)


# ---------------------------------------------------------------- slimmed bundles

def test_slim_for_cpu_keeps_the_cpu_graphs_and_loads(tiny_bundle, tmp_path):
    from dfma.contract.bundle import verify_bundle
    from dfma.export.slim_bundle import slim

    out = tmp_path / "cpu"
    manifest = slim(tiny_bundle, out, target="cpu")
    assert list(manifest.graphs) == ["ort"] and list(manifest.parity) == ["ort"]
    assert "model.onnx" not in manifest.files and not (out / "model.onnx").exists()
    assert manifest.slimmed["dropped"] == ["portable"]
    verify_bundle(out, strict=True)
    with rt.load(out, threads=1) as small, rt.load(tiny_bundle, threads=1) as full:
        np.testing.assert_array_equal(small.logits(REQUESTS), full.logits(REQUESTS))
    gpu = slim(tiny_bundle, tmp_path / "gpu", target="gpu")
    assert list(gpu.graphs) == ["portable"]
    with pytest.raises(Exception, match="--keep"):
        slim(tiny_bundle, tmp_path / "x", keep=["int8"])
    assert not (tmp_path / "x").exists()
