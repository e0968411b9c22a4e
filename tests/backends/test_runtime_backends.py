"""Backend choice: auto falls through TensorRT > ONNX Runtime GPU > CPU and says why; engines are refused
when built with another TensorRT or GPU; graphs by precision; batches padded to their longest member."""
from __future__ import annotations

import sys
import types

import numpy as np
import pytest

from fixtures_bundle import tiny_bundle  # noqa: F401

import dfma.runtime as rt
from dfma.contract.errors import BackendUnavailable, BundleError
from dfma.backends.registry import backend
from dfma.backends.trt_runner import pick_engine
from dfma.contract.manifest import Manifest


def test_auto_picks_cpu_here_and_says_why(tiny_bundle):
    import onnxruntime as ort
    if {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(ort.get_available_providers()):
        pytest.skip("this machine has a GPU provider")
    with rt.load(tiny_bundle, threads=2) as ex:
        info = ex.describe()
        assert ex.backend == "onnxruntime-cpu" and ex.precision == "fp32"
        assert info["graph"] == "model.ort.onnx" and info["threads"] == 2
        assert [s.split(":")[0] for s in info["skipped"]] == ["tensorrt", "onnxruntime-tensorrt",
                                                              "onnxruntime-cuda"]


@pytest.mark.parametrize("backend", ["tensorrt", "onnxruntime-cuda", "onnxruntime-tensorrt"])
def test_forced_gpu_backend_unavailable_in_one_line(tiny_bundle, backend):
    try:
        import tensorrt  # noqa: F401
        pytest.skip("TensorRT is installed here")
    except ImportError:
        pass
    import onnxruntime as ort
    if backend != "tensorrt" and ("CUDAExecutionProvider" in ort.get_available_providers()):
        pytest.skip("a GPU provider is installed here")
    with pytest.raises(BackendUnavailable) as info:
        rt.load(tiny_bundle, backend=backend)
    assert "\n" not in str(info.value)


def test_forced_cpu_and_portable_graph(tiny_bundle):
    with rt.load(tiny_bundle, backend="onnxruntime-cpu", threads=1) as ex:
        assert ex.backend == "onnxruntime-cpu"
        p = ex.predict({"words": ["a", "b", "c"], "head": [0, 1], "tail": [2, 3]})
        assert p.relation in ex.labels.names


def test_unknown_backend(tiny_bundle):
    with pytest.raises(BackendUnavailable, match="unknown backend"):
        rt.load(tiny_bundle, backend="cuda-magic")


def _rows(*keys):
    from dfma.contract.graphs import CATALOGUE

    return Manifest.from_json({"graphs": {k: CATALOGUE[k].manifest_fields() for k in keys},
                               "files": {CATALOGUE[k].file: {} for k in keys}}).present()


def test_graph_candidates_by_precision_and_device(tiny_bundle):
    rows = _rows("portable", "ort", "int8")
    cpu, cuda = backend("onnxruntime-cpu"), backend("onnxruntime-cuda")
    assert [rows[k].file for k in cpu.ordered(rows, "fp32")] == ["model.ort.onnx", "model.onnx"]
    assert [rows[k].file for k in cuda.ordered(rows, "fp32")] == ["model.onnx", "model.ort.onnx"]
    assert [rows[k].file for k in cpu.ordered(rows, "int8")] == ["model.int8.onnx"]
    only = _rows("portable")
    assert [only[k].file for k in cpu.ordered(only, "fp32")] == ["model.onnx"]
    assert cpu.ordered(rows, "fp16") == [] and cuda.ordered(_rows("int8-dynamic"), "int8-dynamic") == []
    with pytest.raises(BundleError, match=r"no fp16 graph.*\['fp32'\]"):
        rt.load(tiny_bundle, backend="onnxruntime-cpu", precision="fp16")
    with pytest.raises(BundleError, match="unknown precision"):
        rt.load(tiny_bundle, precision="bf16")


ENGINES = {
    "portable": {"file": "model.onnx", "precision": "fp32", "kind": "portable"},
    "trt-fp16": {"file": "engines/h100-fp16.plan", "precision": "fp16", "kind": "tensorrt",
                 "tensorrt_version": "10.14.1", "gpu_name": "NVIDIA H100 80GB HBM3"},
    "trt-fp32": {"file": "engines/h100-fp32.plan", "precision": "fp32", "kind": "tensorrt",
                 "tensorrt_version": "10.14.1", "gpu_name": "NVIDIA H100 80GB HBM3"},
}


def _platform(trt: str, gpu: str) -> dict:
    return {"tensorrt_version": trt, "gpu_name": gpu}


def test_engine_choice_refuses_other_tensorrt_or_gpu():
    manifest = {"graphs": ENGINES}
    assert set(Manifest.from_json(manifest).engines()) == {"trt-fp16", "trt-fp32"}
    h100 = "NVIDIA H100 80GB HBM3"
    assert pick_engine(manifest, "fp16", _platform("10.14.1", h100))[1].file == "engines/h100-fp16.plan"
    with pytest.raises(BackendUnavailable, match="built with TensorRT 10.14.1, this machine has 10.15.0"):
        pick_engine(manifest, "fp32", _platform("10.15.0", h100))
    with pytest.raises(BackendUnavailable, match="built for NVIDIA H100 80GB HBM3, this machine has NVIDIA L4"):
        pick_engine(manifest, "fp32", _platform("10.14.1", "NVIDIA L4"))
    with pytest.raises(BackendUnavailable, match="precision"):
        pick_engine(manifest, "int8", _platform("10.14.1", h100))
    with pytest.raises(BackendUnavailable, match="no TensorRT engine"):
        pick_engine({"graphs": {"portable": ENGINES["portable"]}}, "fp32", _platform("10.14.1", "x"))


def test_auto_falls_through_a_tensorrt_without_gpu(tiny_bundle, monkeypatch):
    """tensorrt importable but no CUDA bindings / GPU: auto still serves from ONNX Runtime."""
    fake = types.ModuleType("tensorrt")
    fake.__version__ = "10.14.1"
    monkeypatch.setitem(sys.modules, "tensorrt", fake)
    monkeypatch.setitem(sys.modules, "cuda", None)  # `import cuda...` raises ImportError
    with rt.load(tiny_bundle, threads=1) as ex:
        assert ex.backend.startswith("onnxruntime")
        assert any(s.startswith("tensorrt:") and "cuda-python" in s for s in ex.skipped)
    with pytest.raises(BackendUnavailable, match="cuda-python"):
        rt.load(tiny_bundle, backend="tensorrt")


def test_batches_are_padded_to_their_longest_member(tiny_bundle):
    with rt.load(tiny_bundle, threads=1) as ex:
        short = {"words": ["a", "b"], "head": [0, 1], "tail": [1, 2]}
        long = {"words": ["word"] * 30, "head": [0, 1], "tail": [5, 6]}
        feats = [ex.prepare(short), ex.prepare(long)]
        feeds = ex.preprocessor.collate(feats)
        width = max(len(f.encoded.input_ids) for f in feats)
        assert feeds["input_ids"].shape == (2, width) and feeds["pixel_values"].shape[:2] == (2, 4)
        assert feeds["attention_mask"].sum(1).tolist() == [len(f.encoded.input_ids) for f in feats]
        assert feeds["input_ids"].dtype == np.int64 and feeds["pixel_values"].dtype == np.float32
        alone = ex.predict(short)
        batched = ex.predict_batch([short, long])[0]
        np.testing.assert_allclose(batched.logits, alone.logits, atol=1e-5, rtol=0)
        assert batched.relation == alone.relation


def test_max_batch_chunks(tiny_bundle):
    with rt.load(tiny_bundle, threads=1, max_batch=3) as ex:
        reqs = [{"words": ["a", "b", "c"][: 2 + i % 2], "head": [0, 1], "tail": [1, 2]} for i in range(7)]
        assert len(ex.predict_batch(reqs)) == 7 and ex.max_batch == 3
