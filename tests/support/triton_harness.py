"""Test harness for the Triton model repository: a minimal stand-in of `triton_python_backend_utils`
(the real call shapes: batch axis first, BYTES as numpy object arrays of bytes), a loader for the
repository's Python-backend models, and an ensemble walker that batches each network step (the whole
graph, or the vision and text stages) like Triton's dynamic batcher. The models and the runtime underneath
are real; only Triton's process is stood in for.
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
import types
from pathlib import Path

import numpy as np
import pytest
from fixtures_bundle import jpeg_bytes

pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
from google.protobuf import json_format, text_format  # noqa: E402

from repo_paths import REPO  # noqa: E402

TO_TRITON = REPO / "export" / "to_triton.py"
NP_TYPES = {"TYPE_STRING": np.object_, "TYPE_INT64": np.int64, "TYPE_FP32": np.float32,
            "TYPE_INT32": np.int32, "TYPE_FP16": np.float16, "TYPE_BOOL": np.bool_}


# ---------------------------------------------------------------- stand-in of triton_python_backend_utils

class Tensor:
    """``pb_utils.Tensor(name, numpy_array)``; BYTES tensors are object arrays of bytes, batch axis first."""

    def __init__(self, name, array):
        if not isinstance(array, np.ndarray):
            raise TypeError("pb_utils.Tensor takes a numpy array")
        self._name, self._array = name, array

    def name(self): return self._name  # noqa: E704
    def as_numpy(self): return self._array  # noqa: E704
    def is_cpu(self): return True  # noqa: E704


class InferenceRequest:
    def __init__(self, inputs, requested_output_names=(), model_name=""):
        self._inputs, self._outputs, self.model_name = list(inputs), list(requested_output_names), model_name

    def inputs(self): return self._inputs  # noqa: E704
    def requested_output_names(self): return self._outputs  # noqa: E704


class TritonError:
    def __init__(self, message): self._message = message  # noqa: E704
    def message(self): return self._message  # noqa: E704


class InferenceResponse:
    def __init__(self, output_tensors=None, error=None):
        self._tensors, self._error = list(output_tensors or []), error

    def output_tensors(self): return self._tensors  # noqa: E704
    def has_error(self): return self._error is not None  # noqa: E704
    def error(self): return self._error  # noqa: E704


def _by_name(tensors, name):
    return next((t for t in tensors if t.name() == name), None)


def stub_pb_utils() -> types.ModuleType:
    """The stand-in module (what Triton's Python stub injects as ``triton_python_backend_utils``)."""
    mod = types.ModuleType("triton_python_backend_utils")
    mod.Tensor, mod.InferenceRequest, mod.InferenceResponse, mod.TritonError = (
        Tensor, InferenceRequest, InferenceResponse, TritonError)
    mod.get_input_tensor_by_name = lambda request, name: _by_name(request.inputs(), name)
    mod.get_output_tensor_by_name = lambda response, name: _by_name(response.output_tensors(), name)
    mod.triton_string_to_numpy = lambda s: NP_TYPES[s]
    return mod


# ---------------------------------------------------------------- helpers

def parse_config(path: Path):
    """Parse a config.pbtxt with Triton's ModelConfig schema."""
    return text_format.Parse(path.read_text(encoding="utf-8"), pb2.ModelConfig())


def build_repo(bundle: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    """Run the CLI the way users do."""
    return subprocess.run([sys.executable, str(TO_TRITON), str(bundle), "--out", str(out), *extra],
                          capture_output=True, text=True, timeout=300, cwd=REPO)


def check_tensors(tensors, specs, cfg, what):
    """Triton's checks: names known, required inputs present, dtype and [batch] + dims (-1 = any)."""
    by_name = {s.name: s for s in specs}
    for t in tensors:
        spec = by_name.get(t.name())
        assert spec is not None, f"{cfg.name}: unexpected {what} {t.name()}"
        arr = t.as_numpy()
        dtype = pb2.DataType.Name(spec.data_type)
        assert arr.dtype == NP_TYPES[dtype], f"{cfg.name}.{t.name()}: {arr.dtype} is not {dtype}"
        if dtype == "TYPE_STRING":
            assert all(isinstance(v, bytes) for v in arr.flat), f"{cfg.name}.{t.name()}: BYTES must hold bytes"
        assert arr.ndim == 1 + len(spec.dims) and 1 <= arr.shape[0] <= cfg.max_batch_size, (t.name(), arr.shape)
        assert all(d == -1 or d == s for d, s in zip(spec.dims, arr.shape[1:])), (t.name(), arr.shape, spec.dims)
    missing = {s.name for s in specs if not getattr(s, "optional", False)} - {t.name() for t in tensors}
    assert not missing, f"{cfg.name}: missing {what}s {missing}"


class PythonModel:
    """A repository's Python-backend model loaded as Triton loads it (model.py + initialize(args))."""

    def __init__(self, repo: Path, name: str, monkeypatch):
        monkeypatch.setitem(sys.modules, "triton_python_backend_utils", stub_pb_utils())
        self.config = parse_config(repo / name / "config.pbtxt")
        spec = importlib.util.spec_from_file_location(f"triton_{name}", repo / name / "1" / "model.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        self.model = module.TritonPythonModel()
        self.model.initialize({
            "model_config": json.dumps(json_format.MessageToDict(self.config, preserving_proto_field_name=True)),
            "model_instance_kind": "CPU", "model_instance_name": f"{name}_0_0", "model_instance_device_id": "0",
            "model_repository": str(repo / name), "model_version": "1", "model_name": name})

    def __call__(self, requests: list[dict]) -> list[InferenceResponse]:
        reqs = []
        for arrays in requests:
            tensors = [Tensor(k, v) for k, v in arrays.items()]
            check_tensors(tensors, self.config.input, self.config, "input")
            reqs.append(InferenceRequest(tensors, [o.name for o in self.config.output], self.config.name))
        responses = self.model.execute(reqs)
        assert len(responses) == len(reqs)
        for r in responses:
            if not r.has_error():
                check_tensors(r.output_tensors(), self.config.output, self.config, "output")
        return responses


def run_ensemble(repo: Path, name: str, requests: list[dict], monkeypatch, keep: tuple[str, ...] = ()) -> list:
    """Walk the ensemble's steps for many requests; each network step (one model, or the vision and text
    stages) runs them as one ORT batch. Results hold the ensemble's outputs and the internal tensors ``keep``."""
    import onnxruntime as ort

    ensemble = parse_config(repo / name / "config.pbtxt")
    states = [dict(r) for r in requests]
    errors: list = [None] * len(requests)
    for step in ensemble.ensemble_scheduling.step:
        cfg = parse_config(repo / step.model_name / "config.pbtxt")
        live = [i for i, e in enumerate(errors) if e is None]
        feeds = [{k: states[i][v] for k, v in step.input_map.items() if v in states[i]} for i in live]
        if cfg.backend == "python":
            responses = PythonModel(repo, step.model_name, monkeypatch)(feeds)
            outs = []
            for i, r in zip(live, responses):
                errors[i] = r.error().message() if r.has_error() else None
                outs.append({t.name(): t.as_numpy() for t in r.output_tensors()})
        else:
            assert cfg.platform == "onnxruntime_onnx"
            shapes = {tuple((k, f[k].shape[1:]) for k in sorted(f)) for f in feeds}
            assert len(shapes) == 1, f"requests would not batch together: {shapes}"
            session = ort.InferenceSession(str(repo / step.model_name / "1" / cfg.default_model_filename),
                                           providers=["CPUExecutionProvider"])
            batch = {k: np.concatenate([f[k] for f in feeds]) for k in feeds[0]}
            rows = [len(next(iter(f.values()))) for f in feeds]
            assert sum(rows) <= cfg.max_batch_size
            result = dict(zip([o.name for o in cfg.output], session.run(None, batch)))
            sizes = np.cumsum([0] + rows)
            outs = [{k: v[a:b] for k, v in result.items()} for a, b in zip(sizes, sizes[1:])]
        for i, out in zip(live, outs):
            states[i].update({v: out[k] for k, v in step.output_map.items() if k in out})
    names = [o.name for o in ensemble.output] + list(keep)
    return [errors[i] or {n: states[i][n] for n in names} for i in range(len(requests))]


def mnre_samples() -> list[dict]:
    """A few MNRE samples (with synthetic images and crops), plus one longer than max_length."""
    path = REPO.parent / "shared" / "data" / "mnre" / "mnre_val.txt"
    if path.is_file():
        from dfma.mnre import read_mnre
        recs = [(list(s.words), s.head, s.tail) for s in read_mnre(path)[:4]]
    else:
        recs = [("Obama visits Paris today with Michelle".split(), (0, 1), (2, 3))] * 4
    long_words = [f"w{i}" for i in range(150)]
    recs.append((long_words, (3, 5), (140, 142)))
    images = [(jpeg_bytes(1), [jpeg_bytes(2, 50, 70), None, jpeg_bytes(3)]), (None, []),
              (jpeg_bytes(4, 300, 120), []), (jpeg_bytes(5), [jpeg_bytes(6)]), (None, [jpeg_bytes(7)])]
    return [{"words": w, "head": h, "tail": t, "image": img, "crops": crops}
            for (w, h, t), (img, crops) in zip(recs, images)]


def request_of(sample: dict) -> dict:
    """The ensemble request of one sample (batch of one)."""
    arrays = {"TOKENS": np.array([[w.encode() for w in sample["words"]]], dtype=np.object_),
              "HEAD": np.array([sample["head"]], dtype=np.int64), "TAIL": np.array([sample["tail"]], dtype=np.int64),
              "IMAGE": np.array([[sample["image"] or b""]], dtype=np.object_)}
    if sample["crops"]:
        arrays["CROPS"] = np.array([[c or b"" for c in sample["crops"]]], dtype=np.object_)
    return arrays
