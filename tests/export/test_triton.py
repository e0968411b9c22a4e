"""Triton model repository from a bundle (export/to_triton.py): configs, Python-backend models, a real server.

- Every generated ``config.pbtxt`` is parsed with Triton's own schema (``tritonclient``'s
  ``model_config_pb2``) and checked against the manifest.
- The Python-backend models run under :class:`StubPbUtils`, a minimal stand-in of
  ``triton_python_backend_utils`` (Tensor / InferenceRequest / InferenceResponse / TritonError with the
  real call shapes: batch axis first, BYTES as numpy object arrays of bytes); requests are checked against
  each model's config like Triton does. The ensemble is walked step by step from its config, each network
  step (the two-stage layout's vision and text models, or the whole graph) run by onnxruntime on the
  repository's own ``model.onnx`` with the requests batched together as the dynamic batcher would, and the
  results (logits included) compared with ``dfma.runtime`` on the same bundle (which runs the whole graph).
- ``slow``: a real Triton server (the ``tritonserver`` binary of the ``nvidia-pytriton`` wheel), when
  ``DFMA_TRITON_VENV`` names a venv holding nvidia-pytriton, tokenizers, Pillow and onnxruntime (numpy < 2:
  its Python-backend stub is built against numpy 1), for both layouts. See docs/triton.md.
"""
from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from fixtures_bundle import copy_bundle
from google.protobuf import text_format
from triton_harness import (
    REPO, PythonModel, build_repo, mnre_samples, parse_config, pb2, request_of, run_ensemble,
)

from dfma.contract.manifest_digest import write_digest
from dfma.export.weight_store import inline_bytes


@pytest.fixture(scope="module")
def repo(tiny_bundle, tmp_path_factory):  # noqa: F811
    """The default layout: two-stage (the tiny bundle's graphs all have stage graphs)."""
    out = tmp_path_factory.mktemp("triton") / "repo"
    proc = build_repo(tiny_bundle, out, "--max-batch", "8", "--instances", "2")
    assert proc.returncode == 0, proc.stderr
    assert "layout: two-stage" in proc.stdout
    return out


@pytest.fixture(scope="module")
def whole_repo(tiny_bundle, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("triton") / "whole"
    proc = build_repo(tiny_bundle, out, "--max-batch", "8", "--instances", "2", "--layout", "whole")
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def runtime(tiny_bundle):  # noqa: F811
    """``dfma.runtime`` on the whole graph (model.ort.onnx), the reference both layouts are compared with."""
    import inspect

    import dfma.runtime as rt
    whole = {"stages": "whole"} if "stages" in inspect.signature(rt.load).parameters else {}  # else always whole
    extractor = rt.load(tiny_bundle, backend="onnxruntime-cpu", **whole)
    info = extractor.describe()
    assert info["graph"] == "model.ort.onnx" and (info.get("stages") or {}).get("mode", "whole") == "whole", info
    return extractor


# ---------------------------------------------------------------- configs

DTYPE = {"int64": "TYPE_INT64", "float32": "TYPE_FP32"}


def _configs(repo: Path) -> dict:
    configs = {p.parent.name: parse_config(p) for p in repo.glob("*/config.pbtxt")}
    assert all((repo / name / "1").is_dir() and configs[name].name == name for name in configs)
    return configs


def _assert_tensors(tensors, specs):
    """Names, dtypes and dims (batch axis dropped, symbolic axes -1) as the manifest's specs."""
    assert [t.name for t in tensors] == [s["name"] for s in specs]
    for t, s in zip(tensors, specs):
        assert pb2.DataType.Name(t.data_type) == DTYPE[s["dtype"]], (t.name, s)
        assert list(t.dims) == [d if isinstance(d, int) else -1 for d in s["shape"][1:]], (t.name, s)


def _assert_ensemble(configs: dict, steps: list[str], manifest: dict):
    """The ensemble's steps in order, its external interface, and every mapped name on its model."""
    ens = configs["dfma"]
    assert [s.model_name for s in ens.ensemble_scheduling.step] == steps
    assert not ens.instance_group and ens.platform == "ensemble"
    assert [t.name for t in ens.input] == ["TOKENS", "HEAD", "TAIL", "IMAGE", "CROPS"]
    assert [t.name for t in ens.output] == ["LABEL", "PROBABILITY", "PROBABILITIES"]
    produced = {t.name for t in ens.input}
    for step in ens.ensemble_scheduling.step:  # every mapped name exists on the composing model ...
        cfg = configs[step.model_name]
        assert set(step.input_map) <= {t.name for t in cfg.input}
        assert set(step.output_map) <= {t.name for t in cfg.output}
        assert {t.name for t in cfg.input if not t.optional} <= set(step.input_map), step.model_name
        assert set(step.input_map.values()) <= produced, step.model_name  # ... and was made by an earlier step
        produced |= set(step.output_map.values())
    _assert_tensors(configs["dfma_preprocess"].output, manifest["io"]["inputs"])
    assert list(configs["dfma_postprocess"].output[2].dims) == [len(manifest["labels"])]


def test_two_stage_configs_match_the_manifest_stages(repo, tiny_bundle):  # noqa: F811
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    configs = _configs(repo)
    assert set(configs) == {"dfma", "dfma_preprocess", "dfma_vision", "dfma_text", "dfma_postprocess"}
    for stage in ("vision", "text"):
        net = configs[f"dfma_{stage}"]
        assert net.platform == "onnxruntime_onnx" and net.max_batch_size == 8
        _assert_tensors(net.input, manifest["stages"][stage]["inputs"])
        _assert_tensors(net.output, manifest["stages"][stage]["outputs"])
        assert net.HasField("dynamic_batching"), stage
        assert [(g.count, pb2.ModelInstanceGroup.Kind.Name(g.kind)) for g in net.instance_group] == [(2, "KIND_CPU")]
        stage_file = manifest["graphs"]["ort"]["stages"][stage]["file"]  # the CPU choice: the fused graph's stage graphs
        assert (repo / f"dfma_{stage}" / "1" / "model.onnx").read_bytes() == inline_bytes(tiny_bundle / stage_file)
    vision, text = configs["dfma_vision"].dynamic_batching, configs["dfma_text"].dynamic_batching
    assert list(vision.preferred_batch_size) == [4, 8] and vision.max_queue_delay_microseconds == 4000
    assert list(text.preferred_batch_size) == [2, 4, 8] and text.max_queue_delay_microseconds == 1000
    assert [t.name for t in configs["dfma_text"].output] == [s["name"] for s in manifest["io"]["outputs"]]
    _assert_ensemble(configs, ["dfma_preprocess", "dfma_vision", "dfma_text", "dfma_postprocess"], manifest)
    steps = {s.model_name: s for s in configs["dfma"].ensemble_scheduling.step}
    assert dict(steps["dfma_vision"].output_map) == {"image_features": "image_features"}
    assert steps["dfma_text"].input_map["image_features"] == "image_features"
    assert steps["dfma_vision"].input_map["image_mask"] == steps["dfma_text"].input_map["image_mask"] == "image_mask"
    info = json.loads((repo / "dfma_repository.json").read_text())
    assert info["layout"] == "two-stage" and info["models"][2:4] == ["dfma_vision", "dfma_text"]


def test_whole_layout_configs_match_the_manifest(whole_repo, tiny_bundle):  # noqa: F811
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    configs = _configs(whole_repo)
    assert set(configs) == {"dfma", "dfma_preprocess", "dfma_onnx", "dfma_postprocess"}
    net = configs["dfma_onnx"]
    assert net.platform == "onnxruntime_onnx" and net.max_batch_size == 8
    _assert_tensors(net.input, manifest["io"]["inputs"])
    _assert_tensors(net.output, manifest["io"]["outputs"])
    assert list(net.dynamic_batching.preferred_batch_size) == [2, 4, 8]
    assert net.dynamic_batching.max_queue_delay_microseconds == 1000
    assert [(g.count, pb2.ModelInstanceGroup.Kind.Name(g.kind)) for g in net.instance_group] == [(2, "KIND_CPU")]
    _assert_ensemble(configs, ["dfma_preprocess", "dfma_onnx", "dfma_postprocess"], manifest)
    onnx_file = whole_repo / "dfma_onnx" / "1" / "model.onnx"
    assert onnx_file.read_bytes() == inline_bytes(tiny_bundle / "model.ort.onnx")


def test_vision_queue_delay_and_graph_choose_the_stage_models(tiny_bundle, tmp_path):  # noqa: F811
    proc = build_repo(tiny_bundle, tmp_path / "repo", "--graph", "model.onnx", "--vision-queue-delay-us", "250",
                      "--queue-delay-us", "50")
    assert proc.returncode == 0, proc.stderr
    vision, text = (parse_config(tmp_path / "repo" / f"dfma_{s}" / "config.pbtxt") for s in ("vision", "text"))
    assert vision.dynamic_batching.max_queue_delay_microseconds == 250
    assert text.dynamic_batching.max_queue_delay_microseconds == 50
    for stage in ("vision", "text"):
        served = (tmp_path / "repo" / f"dfma_{stage}" / "1" / "model.onnx").read_bytes()
        assert served == inline_bytes(tiny_bundle / f"model.{stage}.onnx")
    bad = build_repo(tiny_bundle, tmp_path / "bad", "--layout", "three-stage")
    assert bad.returncode == 2 and "--layout" in bad.stderr and not (tmp_path / "bad").exists()


def test_a_graph_without_stage_graphs_serves_whole_and_two_stage_is_refused(tiny_bundle, tmp_path):  # noqa: F811
    from dfma.contract.bundle_writer import update_bundle

    bundle = tmp_path / "bundle"
    copy_bundle(tiny_bundle, bundle)
    files = json.loads((bundle / "manifest.json").read_text())["graphs"]["ort"]["stages"]
    def drop_stages(manifest):
        del manifest["graphs"]["ort"]["stages"]

    update_bundle(bundle, {}, drop_stages, remove=[files["vision"]["file"], files["text"]["file"]])
    proc = build_repo(bundle, tmp_path / "auto")
    assert proc.returncode == 0, proc.stderr
    assert "layout whole: model.ort.onnx has no stage graphs" in proc.stdout
    assert (tmp_path / "auto" / "dfma_onnx").is_dir() and not (tmp_path / "auto" / "dfma_vision").exists()
    refused = build_repo(bundle, tmp_path / "two", "--layout", "two-stage")
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.startswith("error: --layout two-stage: model.ort.onnx"), refused.stderr
    assert "graphs.ort.stages" in refused.stderr
    assert not (tmp_path / "two").exists()


@pytest.mark.parametrize("damage, expect", [
    ("no_stages", "field 'stages'"), ("vision_output", "stages.vision.outputs is 'pixels'"),
    ("features_dims", "stages.text.inputs[2] (image_features): dtype/dims"),
    ("unknown_input", "stages.vision.inputs[0] (extra)"), ("text_output", "stages.text.outputs")])
def test_stage_io_checks_name_the_manifest_field(tiny_bundle, damage, expect):
    from dfma.contract.errors import BundleError
    from dfma.export.triton_config import stages_io

    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    stages = manifest["stages"]
    if damage == "no_stages":
        del manifest["stages"]
    elif damage == "vision_output":
        stages["vision"]["outputs"][0]["name"] = "pixels"
    elif damage == "features_dims":
        stages["text"]["inputs"][2]["shape"] = ["batch", 4, 16, 64]
    elif damage == "unknown_input":
        stages["vision"]["inputs"][0]["name"] = "extra"
    else:
        stages["text"]["outputs"][0]["shape"] = ["batch", 7]
    with pytest.raises(BundleError, match=re.escape(expect)):
        stages_io(manifest)


def test_ensemble_wiring_refuses_a_stage_fed_by_no_earlier_step(tiny_bundle):
    from dfma.contract.errors import ExportError
    from dfma.export.triton_config import ensemble_config

    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    stages, io = manifest["stages"], manifest["io"]
    kwargs = dict(num_labels=len(manifest["labels"]), max_batch=8, preprocess="p", postprocess="q")
    with pytest.raises(ExportError, match=r"t needs \['image_features'\]"):
        ensemble_config("e", io, networks=[("t", stages["text"]), ("v", stages["vision"])], **kwargs)
    with pytest.raises(ExportError, match="must output 'logits'"):
        ensemble_config("e", io, networks=[("v", stages["vision"])], **kwargs)
    steps = ensemble_config("e", io, networks=[("v", stages["vision"]), ("t", stages["text"])], **kwargs)
    assert [s["model_name"] for s in steps["ensemble_scheduling"]["step"]] == ["p", "v", "t", "q"]


def test_gpu_kind_adds_the_tensorrt_plan_where_the_bundle_has_an_engine(tiny_bundle, tmp_path):  # noqa: F811
    from dfma.contract.bundle_writer import update_bundle

    bundle = tmp_path / "bundle"
    copy_bundle(tiny_bundle, bundle)
    (tmp_path / "fake.plan").write_bytes(b"not really an engine")
    update_bundle(bundle, {"engines/fake.plan": tmp_path / "fake.plan"}, {"graphs": {"trt-fp32": {
        "file": "engines/fake.plan", "precision": "fp32", "kind": "tensorrt", "tensorrt_version": "10.14",
        "gpu_name": "NVIDIA H100"}}})
    cpu = build_repo(bundle, tmp_path / "cpu")
    assert cpu.returncode == 0 and "skipped TensorRT engine" in cpu.stdout and not (tmp_path / "cpu" / "dfma_plan").exists()
    gpu = build_repo(bundle, tmp_path / "gpu", "--kind", "gpu")
    assert gpu.returncode == 0, gpu.stderr
    plan, trt = (parse_config(tmp_path / "gpu" / n / "config.pbtxt") for n in ("dfma_plan", "dfma_trt"))
    assert plan.platform == "tensorrt_plan" and plan.default_model_filename == "model.plan"
    assert pb2.ModelInstanceGroup.Kind.Name(plan.instance_group[0].kind) == "KIND_GPU"
    assert [s.model_name for s in trt.ensemble_scheduling.step] == ["dfma_preprocess", "dfma_plan", "dfma_postprocess"]
    assert "dfma_trt serves the engine whole" in gpu.stdout  # engines have no stage graphs
    assert (tmp_path / "gpu" / "dfma_plan" / "1" / "model.plan").read_bytes() == b"not really an engine"
    for stage in ("vision", "text"):  # the ONNX models: the portable graph's stage graphs, on the GPU
        cfg = parse_config(tmp_path / "gpu" / f"dfma_{stage}" / "config.pbtxt")
        assert pb2.ModelInstanceGroup.Kind.Name(cfg.instance_group[0].kind) == "KIND_GPU"
        served = (tmp_path / "gpu" / f"dfma_{stage}" / "1" / "model.onnx").read_bytes()
        assert served == inline_bytes(bundle / f"model.{stage}.onnx")
    whole = build_repo(bundle, tmp_path / "whole", "--kind", "gpu", "--layout", "whole")
    assert whole.returncode == 0, whole.stderr
    onnx = parse_config(tmp_path / "whole" / "dfma_onnx" / "config.pbtxt")
    assert pb2.ModelInstanceGroup.Kind.Name(onnx.instance_group[0].kind) == "KIND_GPU"
    assert (tmp_path / "whole" / "dfma_onnx" / "1" / "model.onnx").read_bytes() == inline_bytes(bundle / "model.onnx")
    assert (tmp_path / "whole" / "dfma_trt").is_dir()


@pytest.mark.parametrize("damage", ["hash", "io", "batch_axis", "max_batch", "stages"])
def test_malformed_bundle_or_option_gives_a_clear_error_and_no_repository(tiny_bundle, tmp_path, damage):  # noqa: F811
    bundle = tmp_path / "bundle"
    copy_bundle(tiny_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    extra, expect = [], {"hash": "tokenizer.json: sha256", "io": "io.inputs", "batch_axis": "first axis",
                         "max_batch": "exceeds the bundle's limits.max_batch", "stages": "stages.text.inputs"}[damage]
    expect = "io.inputs.input_ids.shape" if damage == "batch_axis" else expect  # refused by the manifest checks
    if damage == "hash":
        with open(bundle / "tokenizer.json", "ab") as f:
            f.write(b" ")
    elif damage == "io":
        manifest["io"]["inputs"] = "nope"
    elif damage == "batch_axis":
        manifest["io"]["inputs"][0]["shape"] = [1, "sequence"]
    elif damage == "stages":
        manifest["stages"]["text"]["inputs"] = manifest["stages"]["text"]["inputs"][:2]  # image_features lost
    else:
        extra = ["--max-batch", str(manifest["limits"]["max_batch"] + 1)]
    (bundle / "manifest.json").write_text(json.dumps(manifest))
    write_digest(bundle)  # deliberate edits: re-digested, so that the error is the one each case is about
    proc = build_repo(bundle, tmp_path / "repo", *extra)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ") and (expect in proc.stderr or "tokenizer.json" in proc.stderr), proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]  # no repository, no temp folder


def test_existing_repository_is_kept_without_force(repo, tiny_bundle):  # noqa: F811
    proc = build_repo(tiny_bundle, repo)
    assert proc.returncode == 1 and "already exists" in proc.stderr


# ---------------------------------------------------------------- Python-backend models vs dfma.runtime

@pytest.mark.parametrize("layout", ["two-stage", "whole"])
def test_ensemble_of_python_models_matches_the_runtime(layout, request, runtime, monkeypatch):
    repo = request.getfixturevalue({"two-stage": "repo", "whole": "whole_repo"}[layout])
    samples = mnre_samples()
    results = run_ensemble(repo, "dfma", [request_of(s) for s in samples], monkeypatch, keep=("logits",))
    expected = runtime.predict_batch(samples)
    np.testing.assert_allclose(np.concatenate([r["logits"] for r in results]), runtime.logits(samples),
                               rtol=0, atol=1e-5)  # the runtime runs the whole graph (model.ort.onnx)
    for got, want in zip(results, expected):
        assert isinstance(got, dict), got
        assert got["LABEL"].shape == (1, 1) and got["LABEL"][0, 0].decode() == want.relation
        assert got["PROBABILITY"][0, 0] == pytest.approx(want.probability, abs=1e-5)
        np.testing.assert_allclose(got["PROBABILITIES"][0], [want.probabilities[n] for n in runtime.labels.names],
                                   atol=1e-5)


def test_preprocess_gives_the_runtime_inputs_padded_to_max_length(repo, runtime, monkeypatch):
    samples = mnre_samples()[:3]
    batch = {k: np.concatenate([request_of(s)[k] for s in samples]) for k in ("HEAD", "TAIL", "IMAGE")}
    width = max(len(s["words"]) for s in samples)  # one multi-row request: rows padded with empty words
    batch["TOKENS"] = np.array([[w.encode() for w in s["words"]] + [b""] * (width - len(s["words"]))
                                for s in samples], dtype=np.object_)
    [response] = PythonModel(repo, "dfma_preprocess", monkeypatch)([batch])
    assert not response.has_error(), response.error() and response.error().message()
    got = {t.name(): t.as_numpy() for t in response.output_tensors()}
    want = runtime.preprocessor.collate([runtime.prepare({**s, "crops": []}) for s in samples])
    assert got["input_ids"].shape == (3, runtime.preprocessor.text.max_length)
    n = want["input_ids"].shape[1]
    np.testing.assert_array_equal(got["input_ids"][:, :n], want["input_ids"])
    assert not got["input_ids"][:, n:].any() and not got["attention_mask"][:, n:].any()
    np.testing.assert_array_equal(got["pixel_values"], want["pixel_values"])
    np.testing.assert_array_equal(got["image_mask"], want["image_mask"])


def test_a_bad_request_gets_a_triton_error_and_the_others_still_run(repo, monkeypatch):
    good, bad = request_of(mnre_samples()[0]), request_of(mnre_samples()[0])
    bad["HEAD"] = np.array([[0, 999]], dtype=np.int64)
    broken_image = dict(good, IMAGE=np.array([[b"not an image"]], dtype=np.object_))
    responses = PythonModel(repo, "dfma_preprocess", monkeypatch)([good, bad, broken_image])
    assert [r.has_error() for r in responses] == [False, True, True]
    assert "HEAD" in responses[1].error().message() or "head" in responses[1].error().message()
    assert "ImageError" in responses[2].error().message()


# ---------------------------------------------------------------- a real Triton server (slow)

# The pytriton wheel's server has the Python backend only (no onnxruntime backend): the network step runs
# as a Python model on the same model.onnx, batching the requests Triton's dynamic batcher hands it.
NETWORK_PY = '''
import json, os, site
for d in filter(None, os.environ.get("DFMA_TRITON_SITE_DIRS", "").split(os.pathsep)):
    site.addsitedir(d)
from pathlib import Path
import numpy as np, onnxruntime as ort
import triton_python_backend_utils as pb_utils

class TritonPythonModel:
    def initialize(self, args):
        cfg = json.loads(args["model_config"])
        self.inputs, self.output = [i["name"] for i in cfg["input"]], cfg["output"][0]["name"]
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        path = Path(args["model_repository"]) / args["model_version"] / "model.onnx"
        self.session = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])

    def execute(self, requests):
        feeds = [{n: pb_utils.get_input_tensor_by_name(r, n).as_numpy() for n in self.inputs} for r in requests]
        logits = self.session.run([self.output], {n: np.concatenate([f[n] for f in feeds]) for n in self.inputs})[0]
        sizes = np.cumsum([0] + [len(f[self.inputs[0]]) for f in feeds])
        return [pb_utils.InferenceResponse([pb_utils.Tensor(self.output, logits[a:b])]) for a, b in zip(sizes, sizes[1:])]
'''


def _pytriton() -> tuple[Path, Path, str]:
    """(pytriton's tritonserver folder, the venv's site-packages, its Python version) or skip."""
    venv = os.environ.get("DFMA_TRITON_VENV")
    if not venv:
        pytest.skip("no Triton server: set DFMA_TRITON_VENV to a venv with nvidia-pytriton, tokenizers, pillow "
                    "and onnxruntime (numpy < 2), see docs/triton.md")
    found = sorted(Path(venv).glob("lib/python3.*/site-packages/pytriton/tritonserver/bin/tritonserver"))
    if not found:
        pytest.skip(f"DFMA_TRITON_VENV={venv}: no pytriton/tritonserver/bin/tritonserver (pip install nvidia-pytriton)")
    server = found[0].parents[1]
    site_packages = server.parents[1]
    return server, site_packages, site_packages.parent.name.removeprefix("python")


def _dfma_site(folder: Path) -> Path:
    """A site folder exposing this checkout's dfma (its editable-install finder, or the installed package)."""
    folder.mkdir()
    finders = [m for name, m in sys.modules.items() if name.startswith("__editable__") and "dfma" in name]
    if finders:
        src = Path(finders[0].__file__)
        for path in [src, *src.parent.glob("__editable__*dfma*.pth")]:
            shutil.copy(path, folder)
    else:
        import dfma
        (folder / "dfma").symlink_to(Path(dfma.__file__).parent)
    return folder


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_python_models(repo: Path, names: list[str]) -> None:
    """Serve the repository's onnxruntime_onnx models as Python models on the same model.onnx (the wheel's
    server has no onnxruntime backend); their IO, max_batch_size and dynamic batching stay as generated."""
    for name in names:
        cfg = parse_config(repo / name / "config.pbtxt")
        assert cfg.platform == "onnxruntime_onnx" and cfg.HasField("dynamic_batching"), name
        cfg.platform, cfg.backend, cfg.default_model_filename = "", "python", ""
        (repo / name / "config.pbtxt").write_text(text_format.MessageToString(cfg))
        (repo / name / "1" / "model.py").write_text(NETWORK_PY)


LOGITS_ENSEMBLE = "dfma_with_logits"


def _add_logits_ensemble(repo: Path, num_labels: int) -> None:
    """A test-only copy of the ``dfma`` ensemble (same steps) that also returns the internal ``logits``, so
    the test can compare them with the runtime's; ``dfma`` itself is served as generated."""
    ens = parse_config(repo / "dfma" / "config.pbtxt")
    ens.name = LOGITS_ENSEMBLE
    out = ens.output.add()
    out.name, out.data_type = "logits", pb2.TYPE_FP32
    out.dims.append(num_labels)
    (repo / LOGITS_ENSEMBLE / "1").mkdir(parents=True)
    (repo / LOGITS_ENSEMBLE / "config.pbtxt").write_text(text_format.MessageToString(ens))


@contextlib.contextmanager
def _tritonserver(repo: Path, tmp_path: Path, server_dir: Path, site_packages: Path, pyver: str,
                  ready: tuple[str, ...] = ("dfma",)):
    """A real tritonserver on 127.0.0.1 serving ``repo``, once the models ``ready`` are; yields (gRPC client,
    log tail function)."""
    import tritonclient.grpc as grpcclient

    backends = tmp_path / "backends"
    shutil.copytree(server_dir / "backends", backends)
    shutil.copy(server_dir / "python_backend_stubs" / pyver / "triton_python_backend_stub", backends / "python")
    grpc_port, http_port = _free_port(), _free_port()
    env = dict(os.environ, DFMA_TRITON_SITE_DIRS=os.pathsep.join([str(site_packages), str(_dfma_site(tmp_path / "site"))]),
               LD_LIBRARY_PATH=os.pathsep.join([str(site_packages / "nvidia_pytriton.libs"),
                                                os.environ.get("LD_LIBRARY_PATH", "")]))
    log = (tmp_path / "server.log").open("w")
    server = subprocess.Popen([str(server_dir / "bin" / "tritonserver"), f"--model-repository={repo}",
                               f"--backend-directory={backends}", "--http-address=127.0.0.1", "--grpc-address=127.0.0.1",
                               f"--grpc-port={grpc_port}", f"--http-port={http_port}", "--allow-metrics=false",
                               "--exit-timeout-secs=5"], env=env, stdout=log, stderr=subprocess.STDOUT)
    tail = lambda: (tmp_path / "server.log").read_text()[-4000:]  # noqa: E731
    try:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and server.poll() is None:
            try:
                if all(client.is_model_ready(m) for m in ready):
                    break
            except Exception:  # not listening yet
                pass
            time.sleep(1)
        assert server.poll() is None and all(client.is_model_ready(m) for m in ready), tail()
        yield client, tail
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        log.close()


def _logits_concurrently(client, example, samples, timeout_s: float = 60.0) -> list:
    """``logits`` of every sample, all requests in flight at once (so the dynamic batchers can group them)."""
    done, results = threading.Semaphore(0), [None] * len(samples)

    def finish(i, result, error):
        results[i] = error if error is not None else result.as_numpy("logits")
        done.release()

    for i, sample in enumerate(samples):
        client.async_infer(LOGITS_ENSEMBLE, example.infer_inputs(example.request_arrays(sample)),  # all outputs
                           client_timeout=timeout_s,
                           callback=lambda result, error, i=i: finish(i, result, error))
    for _ in samples:
        assert done.acquire(timeout=timeout_s), "no answer"
    return results


def _batched(client, model: str) -> tuple[int, int]:
    """(inference_count, execution_count) of a model: more inferences than executions = batches of > 1."""
    stats = client.get_inference_statistics(model_name=model, as_json=True)["model_stats"][0]
    return int(stats.get("inference_count", 0)), int(stats.get("execution_count", 0))


@pytest.mark.slow
@pytest.mark.parametrize("layout", ["two-stage", "whole"])
def test_real_triton_server_answers_like_the_runtime(layout, request, tmp_path):
    server_dir, site_packages, pyver = _pytriton()  # skips before the bundle is built
    tiny_bundle, runtime = request.getfixturevalue("tiny_bundle"), request.getfixturevalue("runtime")  # noqa: F811
    import tritonclient.grpc as grpcclient

    from dfma.contract.samples import Sample

    repo = tmp_path / "repo"
    # two-stage: a long vision queue delay, so that the concurrent requests surely meet in one vision batch
    proc = build_repo(tiny_bundle, repo, "--max-batch", "8", "--preprocess-instances", "1", "--layout", layout,
                      "--vision-queue-delay-us", "1000000")
    assert proc.returncode == 0, proc.stderr
    networks = ["dfma_vision", "dfma_text"] if layout == "two-stage" else ["dfma_onnx"]
    _as_python_models(repo, networks)
    _add_logits_ensemble(repo, len(runtime.labels.names))
    spec = importlib.util.spec_from_file_location("triton_client_example", REPO / "examples" / "triton_client.py")
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    samples = mnre_samples()
    requests = [Sample.from_words(s["words"], s["head"], s["tail"], image=s["image"], crops=s["crops"])
                for s in samples]
    with _tritonserver(repo, tmp_path, server_dir, site_packages, pyver, ("dfma", LOGITS_ENSEMBLE)) as (client, tail):
        bad = Sample.from_words(["a", "b"], (0, 1), (1, 5))
        results = example.infer_all(client, "dfma", requests + [bad], concurrency=4, timeout_s=60)
        for got, want in zip(results, runtime.predict_batch(samples)):
            assert got.get("relation") == want.relation, (got, tail())
            assert got["probability"] == pytest.approx(want.probability, abs=1e-5)
            np.testing.assert_allclose(got["probabilities"], [want.probabilities[n] for n in runtime.labels.names],
                                       atol=1e-5)
        assert "error" in results[-1] and "tail" in results[-1]["error"], results[-1]
        logits = _logits_concurrently(client, example, requests)
        assert all(isinstance(x, np.ndarray) for x in logits), ([str(x) for x in logits], tail())
        np.testing.assert_allclose(np.concatenate(logits), runtime.logits(samples), rtol=0, atol=1e-5)
        if layout == "two-stage":  # the vision model batched requests of different clients
            inferences, executions = _batched(client, "dfma_vision")
            assert inferences == 2 * len(samples) and executions < inferences, (inferences, executions, tail())
        only = client.infer("dfma", example.infer_inputs(example.request_arrays(requests[0])),
                            outputs=[grpcclient.InferRequestedOutput("LABEL")])  # a subset of the outputs
        assert only.as_numpy("LABEL")[0, 0].decode() == runtime.predict_batch(samples[:1])[0].relation
