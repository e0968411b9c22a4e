"""Triton model repository from a bundle (export/to_triton.py): configs, Python-backend models, a real server.

- Every generated ``config.pbtxt`` is parsed with Triton's own schema (``tritonclient``'s
  ``model_config_pb2``) and checked against the manifest.
- The Python-backend models run under :class:`StubPbUtils`, a minimal stand-in of
  ``triton_python_backend_utils`` (Tensor / InferenceRequest / InferenceResponse / TritonError with the
  real call shapes: batch axis first, BYTES as numpy object arrays of bytes); requests are checked against
  each model's config like Triton does. The ensemble is walked step by step from its config, the network
  step run by onnxruntime on the repository's own ``model.onnx`` with the requests batched together as the
  dynamic batcher would, and the results compared with ``dfma.runtime`` on the same bundle.
- ``slow``: a real Triton server (the ``tritonserver`` binary of the ``nvidia-pytriton`` wheel), when
  ``DFMA_TRITON_VENV`` names a venv holding nvidia-pytriton, tokenizers, Pillow and onnxruntime (numpy < 2:
  its Python-backend stub is built against numpy 1). See docs/triton.md.
"""
from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from google.protobuf import text_format
from triton_harness import (
    REPO, PythonModel, build_repo, mnre_samples, parse_config, pb2, request_of, run_ensemble,
)

from dfma.contract.manifest_digest import write_digest


@pytest.fixture(scope="module")
def repo(tiny_bundle, tmp_path_factory):  # noqa: F811
    out = tmp_path_factory.mktemp("triton") / "repo"
    proc = build_repo(tiny_bundle, out, "--max-batch", "8", "--instances", "2")
    assert proc.returncode == 0, proc.stderr
    return out


@pytest.fixture(scope="module")
def runtime(tiny_bundle):  # noqa: F811
    import dfma.runtime as rt
    return rt.load(tiny_bundle, backend="onnxruntime-cpu")


# ---------------------------------------------------------------- configs

def test_every_config_parses_and_matches_the_manifest(repo, tiny_bundle):  # noqa: F811
    manifest = json.loads((tiny_bundle / "manifest.json").read_text())
    configs = {p.parent.name: parse_config(p) for p in repo.glob("*/config.pbtxt")}
    assert set(configs) == {"dfma", "dfma_preprocess", "dfma_onnx", "dfma_postprocess"}
    assert all((repo / name / "1").is_dir() and configs[name].name == name for name in configs)
    net = configs["dfma_onnx"]
    assert net.platform == "onnxruntime_onnx" and net.max_batch_size == 8
    for tensors, specs in ((net.input, manifest["io"]["inputs"]), (net.output, manifest["io"]["outputs"]),
                           (configs["dfma_preprocess"].output, manifest["io"]["inputs"])):
        assert [t.name for t in tensors] == [s["name"] for s in specs]
        for t, s in zip(tensors, specs):
            assert pb2.DataType.Name(t.data_type) == {"int64": "TYPE_INT64", "float32": "TYPE_FP32"}[s["dtype"]]
            assert list(t.dims) == [d if isinstance(d, int) else -1 for d in s["shape"][1:]]
    assert list(net.dynamic_batching.preferred_batch_size) == [2, 4, 8]
    assert net.dynamic_batching.max_queue_delay_microseconds == 1000
    assert [(g.count, pb2.ModelInstanceGroup.Kind.Name(g.kind)) for g in net.instance_group] == [(2, "KIND_CPU")]
    assert list(configs["dfma_postprocess"].output[2].dims) == [len(manifest["labels"])]
    steps = configs["dfma"].ensemble_scheduling.step
    assert [s.model_name for s in steps] == ["dfma_preprocess", "dfma_onnx", "dfma_postprocess"]
    assert not configs["dfma"].instance_group and configs["dfma"].platform == "ensemble"
    for step in steps:  # every mapped name exists on the composing model
        cfg = configs[step.model_name]
        assert set(step.input_map) <= {t.name for t in cfg.input}
        assert set(step.output_map) <= {t.name for t in cfg.output}
    onnx_file = repo / "dfma_onnx" / "1" / "model.onnx"
    assert onnx_file.read_bytes() == (tiny_bundle / "model.ort.onnx").read_bytes()


def test_gpu_kind_adds_the_tensorrt_plan_where_the_bundle_has_an_engine(tiny_bundle, tmp_path):  # noqa: F811
    from dfma.contract.bundle_writer import update_bundle

    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
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
    assert (tmp_path / "gpu" / "dfma_plan" / "1" / "model.plan").read_bytes() == b"not really an engine"
    onnx = parse_config(tmp_path / "gpu" / "dfma_onnx" / "config.pbtxt")
    assert pb2.ModelInstanceGroup.Kind.Name(onnx.instance_group[0].kind) == "KIND_GPU"
    assert (tmp_path / "gpu" / "dfma_onnx" / "1" / "model.onnx").read_bytes() == (bundle / "model.onnx").read_bytes()


@pytest.mark.parametrize("damage", ["hash", "io", "batch_axis", "max_batch"])
def test_malformed_bundle_or_option_gives_a_clear_error_and_no_repository(tiny_bundle, tmp_path, damage):  # noqa: F811
    bundle = tmp_path / "bundle"
    shutil.copytree(tiny_bundle, bundle)
    manifest = json.loads((bundle / "manifest.json").read_text())
    extra, expect = [], {"hash": "tokenizer.json: sha256", "io": "io.inputs", "batch_axis": "first axis",
                         "max_batch": "exceeds the bundle's limits.max_batch"}[damage]
    expect = "io.inputs.input_ids.shape" if damage == "batch_axis" else expect  # refused by the manifest checks
    if damage == "hash":
        with open(bundle / "tokenizer.json", "ab") as f:
            f.write(b" ")
    elif damage == "io":
        manifest["io"]["inputs"] = "nope"
    elif damage == "batch_axis":
        manifest["io"]["inputs"][0]["shape"] = [1, "sequence"]
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

def test_ensemble_of_python_models_matches_the_runtime(repo, runtime, monkeypatch):
    samples = mnre_samples()
    results = run_ensemble(repo, "dfma", [request_of(s) for s in samples], monkeypatch)
    expected = runtime.predict_batch(samples)
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


@pytest.mark.slow
def test_real_triton_server_answers_like_the_runtime(request, tmp_path):
    server_dir, site_packages, pyver = _pytriton()  # skips before the bundle is built
    tiny_bundle, runtime = request.getfixturevalue("tiny_bundle"), request.getfixturevalue("runtime")  # noqa: F811
    import tritonclient.grpc as grpcclient

    from dfma.contract.samples import Sample

    repo = tmp_path / "repo"
    proc = build_repo(tiny_bundle, repo, "--max-batch", "8", "--preprocess-instances", "1")
    assert proc.returncode == 0, proc.stderr
    net = parse_config(repo / "dfma_onnx" / "config.pbtxt")
    net.platform, net.backend, net.default_model_filename = "", "python", ""
    (repo / "dfma_onnx" / "config.pbtxt").write_text(text_format.MessageToString(net))
    (repo / "dfma_onnx" / "1" / "model.py").write_text(NETWORK_PY)
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
    try:
        client = grpcclient.InferenceServerClient(f"127.0.0.1:{grpc_port}")
        deadline = time.monotonic() + 180
        while time.monotonic() < deadline and server.poll() is None:
            try:
                if client.is_model_ready("dfma"):
                    break
            except Exception:  # not listening yet
                pass
            time.sleep(1)
        tail = lambda: (tmp_path / "server.log").read_text()[-4000:]  # noqa: E731
        assert server.poll() is None and client.is_model_ready("dfma"), tail()
        spec = importlib.util.spec_from_file_location("triton_client_example", REPO / "examples" / "triton_client.py")
        example = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(example)
        samples = mnre_samples()
        requests = [Sample.from_words(s["words"], s["head"], s["tail"], image=s["image"], crops=s["crops"])
                    for s in samples] + [Sample.from_words(["a", "b"], (0, 1), (1, 5))]
        results = example.infer_all(client, "dfma", requests, concurrency=4, timeout_s=60)
        for got, want in zip(results, runtime.predict_batch(samples)):
            assert got.get("relation") == want.relation, (got, tail())
            assert got["probability"] == pytest.approx(want.probability, abs=1e-5)
            np.testing.assert_allclose(got["probabilities"], [want.probabilities[n] for n in runtime.labels.names],
                                       atol=1e-5)
        assert "error" in results[-1] and "tail" in results[-1]["error"], results[-1]
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=10)
        log.close()
