"""TensorRT: engine compatibility checks and the no-TensorRT exit run everywhere; building and running
engines needs TensorRT and a GPU (marked ``tensorrt``, skipped with the reason elsewhere)."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from fixtures_bundle import copy_bundle, random_feeds, tiny_bundle  # noqa: F401

from dfma.contract.errors import BackendUnavailable, BundleError
from dfma.export import trt_build as tb
from dfma.backends.trt_runner import check_engine, import_tensorrt, pick_engine

from repo_paths import REPO


HERE = {"tensorrt_version": "10.14.1", "gpu_name": "NVIDIA H100 80GB HBM3", "compute_capability": "9.0"}
ENGINE = {"file": "engines/fp16-nvidia-h100-80gb-hbm3.plan", "precision": "fp16", "kind": "tensorrt", **HERE}


def _has_tensorrt() -> bool:
    try:
        import_tensorrt()  # a real TensorRT, not a namespace package of type stubs
    except BackendUnavailable:
        return False
    return True


def test_engine_check_accepts_the_platform_it_was_built_on():
    check_engine(ENGINE, HERE)


@pytest.mark.parametrize("field,value,message", [
    ("tensorrt_version", "10.13.0", "built with TensorRT 10.13.0, this machine has 10.14.1"),
    ("gpu_name", "NVIDIA A100-SXM4-80GB", "built for NVIDIA A100-SXM4-80GB, this machine has NVIDIA H100"),
    ("compute_capability", "8.0", "compute capability 8.0"),
])
def test_engine_check_refuses_another_gpu_or_version(field, value, message):
    with pytest.raises(BackendUnavailable, match=message):
        check_engine({**ENGINE, field: value}, HERE, key="tensorrt-fp16")


def test_engine_check_refuses_an_engine_without_provenance():
    with pytest.raises(BundleError, match="does not record"):
        check_engine({"file": "engines/x.plan", "precision": "fp16", "kind": "tensorrt"}, HERE)
    graphs = {"old": {**ENGINE, "tensorrt_version": "8.6"}, "ok": ENGINE,
              "onnx": {"file": "model.onnx", "kind": "portable"}}
    key, entry = pick_engine({"graphs": graphs}, "fp16", HERE)
    assert (key, entry.to_json()) == ("ok", ENGINE)
    with pytest.raises(BackendUnavailable) as refused:
        pick_engine({"graphs": {k: graphs[k] for k in ("old", "onnx")}}, "fp16", HERE)
    assert "8.6" in str(refused.value) and "onnx" not in str(refused.value)


def test_profile_and_source_graph_come_from_the_manifest():
    manifest = {"limits": {"max_batch": 64, "max_length": 80},
                "io": {"inputs": [{"name": "input_ids", "shape": ["batch", "sequence"]},
                                  {"name": "pixel_values", "shape": ["batch", 4, 3, 64, 64]}]},
                "graphs": {"portable": {"file": "model.onnx"}}}
    shapes = tb.profile_shapes(manifest, tb.BuildOptions(opt_batch=8, opt_length=48))
    assert shapes["input_ids"] == ((1, 2), (8, 48), (64, 80))
    assert shapes["pixel_values"] == ((1, 4, 3, 64, 64), (8, 4, 3, 64, 64), (64, 4, 3, 64, 64))
    assert tb.source_graph(manifest, "fp32") == ("portable", "model.onnx")
    with pytest.raises(BundleError, match="to_precision.py --fp16"):
        tb.source_graph(manifest, "fp16")
    assert tb.slug("NVIDIA H100 80GB HBM3") == "nvidia-h100-80gb-hbm3"


def test_to_tensorrt_without_tensorrt_says_so_in_one_line(tmp_path):
    if _has_tensorrt():
        pytest.skip("TensorRT is installed here: the missing-TensorRT path cannot be exercised")
    bundle = tmp_path / "b"  # a small valid bundle (the C++ tests' toy): to_tensorrt opens and verifies it first
    copy_bundle(REPO / "runtime" / "cpp" / "tests" / "data" / "toy_bundle", bundle)
    proc = subprocess.run([sys.executable, str(REPO / "export" / "to_tensorrt.py"), str(bundle), "--precision", "fp32"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 3
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "TensorRT is not installed" in lines[0]


# ---------------------------------------------------------------- needs TensorRT and a GPU

@pytest.fixture(scope="module")
def gpu_platform():
    if not _has_tensorrt():
        pytest.skip("TensorRT is not installed (its wheels download from a host this machine cannot reach)")
    from dfma.backends.trt_runner import platform_info
    try:
        return platform_info()
    except BackendUnavailable as exc:
        pytest.skip(f"no usable GPU: {exc}")


@pytest.mark.tensorrt
@pytest.mark.slow
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8"])
def test_engine_builds_runs_and_matches_onnx(precision, gpu_platform, mnre_dir, tmp_path, request):
    bundle = tmp_path / "bundle"
    copy_bundle(request.getfixturevalue("tiny_bundle"), bundle)  # built only where the test can run
    if precision != "fp32":
        flag = ["--fp16"] if precision == "fp16" else ["--int8", "static"]
        subprocess.run([sys.executable, str(REPO / "export" / "to_precision.py"), str(bundle), *flag, "--quiet",
                        "--data", str(mnre_dir), "--guard-samples", "32", "--calibration-samples", "32"],
                       check=True, timeout=900)
    proc = subprocess.run([sys.executable, str(REPO / "export" / "to_tensorrt.py"), str(bundle),
                           "--precision", precision, "--workspace-mib", "1024"],
                          capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stderr[-3000:]
    manifest = json.loads((bundle / "manifest.json").read_text())
    key = next(k for k, g in manifest["graphs"].items() if g.get("kind") == "tensorrt" and g["precision"] == precision)
    entry = manifest["graphs"][key]
    assert entry["tensorrt_version"] == gpu_platform["tensorrt_version"]
    assert entry["gpu_name"] == gpu_platform["gpu_name"] and entry["strongly_typed"]
    assert (bundle / entry["timing_cache"]).is_file()
    check_engine(entry, gpu_platform, key=key)
    from dfma.backends.ort_runner import OrtRunner
    from dfma.backends.trt_runner import TensorRTRunner

    feeds = random_feeds(bundle, 3, 21, seed=1)
    with TensorRTRunner(bundle / entry["file"], entry=entry, io=manifest["io"]) as runner:
        out = runner.logits(feeds)
    with OrtRunner(bundle / "model.onnx") as runner:
        ref = runner.logits(feeds)
    tol = {"fp32": 1e-3, "fp16": 2e-2, "int8": 0.25}[precision] * max(1.0, float(np.abs(ref).max()))
    assert np.abs(out - ref).max() <= tol
