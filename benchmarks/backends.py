"""One runner per backend and mode, built from a bundle (memory probes: benchmarks/memory.py).

Backends (``KEYS``): eager PyTorch fp32 and bf16 autocast, ONNX Runtime (CPU provider) on the portable
graph, the fused graph, fp16, static INT8 and dynamic INT8, and TensorRT engines when the bundle has them
and this machine can run them. Two modes:

- ``model``: the graph alone on prepared input arrays (ORT sessions opened directly on the bundle's files,
  with the runtime's session settings; the eager model on the same arrays as tensors);
- ``e2e``: requests (words + spans + JPEG bytes) through preprocessing to predictions. ONNX Runtime and
  TensorRT rows call ``dfma.runtime.load(...).predict_batch``; eager rows and the portable graph (which
  ``load`` does not select on a CPU) run the runtime's own ``Preprocessor`` and ``to_predictions`` around
  their forward pass, the same steps ``predict_batch`` takes.

"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent

EAGER = "eager-fp32"
KEYS = ("eager-fp32", "eager-bf16", "ort-portable", "ort-fused", "ort-fp16", "ort-int8", "ort-int8-dynamic")
LABELS = {
    "eager-fp32": "eager PyTorch fp32",
    "eager-bf16": "eager PyTorch bf16 autocast",
    "ort-portable": "ONNX Runtime fp32, portable graph",
    "ort-fused": "ONNX Runtime fp32, fused graph",
    "ort-fp16": "ONNX Runtime fp16",
    "ort-int8": "ONNX Runtime INT8 static (QDQ)",
    "ort-int8-dynamic": "ONNX Runtime INT8 dynamic",
}
# backend key -> (graph file, runtime precision or None when dfma.runtime.load cannot select that graph)
ORT_GRAPHS = {
    "ort-portable": ("model.onnx", None),
    "ort-fused": ("model.ort.onnx", "fp32"),
    "ort-fp16": ("model.fp16.onnx", "fp16"),
    "ort-int8": ("model.int8.onnx", "int8"),
    "ort-int8-dynamic": ("model.int8-dynamic.onnx", "int8-dynamic"),
}
MODES = ("model", "e2e")


@dataclass
class Runner:
    """A loaded backend in one mode: ``run(workload) -> logits (batch, labels)``."""

    key: str
    mode: str
    label: str
    family: str  # eager | onnxruntime | tensorrt
    precision: str
    graph: str | None
    size_bytes: int
    load_seconds: float
    call: Callable
    closer: Callable | None = None
    info: dict = field(default_factory=dict)

    def run(self, workload):
        """One timed call's work."""
        return self.call(workload)

    def close(self) -> None:
        """Release the session or model."""
        if self.closer is not None:
            self.closer()
        self.call = None

    def describe(self) -> dict:
        """JSON-ready description (no callables)."""
        return {"key": self.key, "mode": self.mode, "label": self.label, "family": self.family,
                "precision": self.precision, "graph": self.graph, "size_bytes": self.size_bytes,
                "load_seconds": round(self.load_seconds, 4), **self.info}


# ---------------------------------------------------------------------------- bundle helpers

def read_bundle(folder: Path) -> dict:
    """The manifest (validated by the project's reader when it is there)."""
    try:
        from dfma.runtime.bundle import read_manifest
    except ImportError:
        return json.loads((folder / "manifest.json").read_text())
    return read_manifest(folder)


def model_config(manifest: Mapping):
    """The bundle's DFMAConfig."""
    from dfma.config import DFMAConfig

    return DFMAConfig.from_dict(dict(manifest["model"]["config"]), source="manifest.json model.config")


def trt_engines(manifest: Mapping) -> dict[str, Mapping]:
    """``{"trt-<precision>": graph entry}`` for every TensorRT engine the manifest lists."""
    try:
        from dfma.runtime.trt_backend import engine_entries
    except ImportError:
        return {}
    out = {}
    for entry in engine_entries(manifest.get("graphs", {})).values():
        if entry.get("file") in manifest.get("files", {}):
            out[f"trt-{entry.get('precision', 'fp32')}"] = entry
    return out


def available(folder: Path, manifest: Mapping, wanted: list[str] | None = None) -> tuple[list[str], dict[str, str]]:
    """Backend keys this bundle and machine can try, and ``{key: reason}`` for those left out."""
    files = manifest.get("files", {})
    keys, skipped = [], {}
    for key in KEYS:
        graph = ORT_GRAPHS.get(key, (None,))[0]
        if graph is not None and graph not in files:
            skipped[key] = f"the bundle has no {graph}"
        else:
            keys.append(key)
    engines = trt_engines(manifest)
    if not engines:
        skipped["tensorrt"] = "the bundle has no TensorRT engine (engines/*.plan are built on a GPU host)"
    keys += sorted(engines)
    if wanted:
        unknown = [w for w in wanted if w not in keys and w not in skipped and w != "tensorrt"]
        if unknown:
            raise SystemExit(f"error: unknown backend(s) {unknown}; known: {list(KEYS) + sorted(engines)}")
        if EAGER not in wanted:
            wanted = [EAGER, *wanted]  # speed-ups need the eager baseline
        keys = [k for k in keys if k in wanted]
    return keys, skipped


def file_bytes(folder: Path, name: str | None) -> int:
    """Size of a bundle file (0 when absent)."""
    return (folder / name).stat().st_size if name and (folder / name).is_file() else 0


# ---------------------------------------------------------------------------- eager

def build_eager(manifest: Mapping):
    """The eager DFMAModel of the bundle's config, with the bundle's weights when they can be rebuilt.

    A preset bundle (``model.source == "random"``) is rebuilt bit-for-bit from its seed, as the exporter
    built it; a checkpoint bundle loads ``checkpoints/<name>`` when that folder is here. Otherwise the
    weights are random (the latency does not depend on them). Returns ``(model, weights note)``.
    """
    import torch

    from dfma.model import DFMAModel

    cfg = model_config(manifest)
    info = manifest.get("model", {})
    if info.get("source") == "checkpoint":
        ckpt = REPO / "checkpoints" / str(info.get("checkpoint", ""))
        if info.get("checkpoint") and (ckpt / "model.safetensors").is_file():
            try:
                from dfma.checkpoint import load_checkpoint

                loaded = load_checkpoint(ckpt)
                if loaded.config.to_dict() == cfg.to_dict():
                    return loaded.model.eval(), f"checkpoint {ckpt.name}"
            except Exception:  # a checkpoint that does not load is not the benchmark's concern
                pass
    seed = int(info.get("seed", 0)) if info.get("source") == "random" else 0
    torch.manual_seed(seed)
    model = DFMAModel(cfg).eval()
    note = (f"rebuilt from preset seed {seed} (same weights as the bundle)" if info.get("source") == "random"
            else "random (latency only: the bundle's weights are not available to the eager model)")
    return model, note


def _eager_forward(model, bf16: bool) -> Callable:
    import torch

    def forward(feeds: Mapping) -> np.ndarray:
        with torch.inference_mode():
            if bf16:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    out = model(**feeds)
            else:
                out = model(**feeds)
        return out.float().numpy()

    return forward


# ---------------------------------------------------------------------------- ONNX Runtime

def session_options(threads: int):
    """The runtime's CPU session settings (``dfma.runtime.ort_backend``): intra-op threads, sequential."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.log_severity_level = 3
    return opts


def open_session(path: Path, threads: int, opts=None):
    """An ONNX Runtime CPU session on one graph file; returns ``(session, seconds)``."""
    import onnxruntime as ort

    t0 = time.perf_counter()
    sess = ort.InferenceSession(str(path), opts or session_options(threads), providers=["CPUExecutionProvider"])
    return sess, time.perf_counter() - t0


def _session_forward(sess) -> Callable:
    names = [i.name for i in sess.get_inputs()]

    def forward(feeds: Mapping) -> np.ndarray:
        return sess.run(["logits"], {k: feeds[k] for k in names})[0]

    return forward


# ---------------------------------------------------------------------------- end to end

class Pipeline:
    """The runtime's preprocessing around any forward function (what ``Extractor.predict_batch`` does)."""

    def __init__(self, folder: Path, manifest: Mapping):
        from dfma.runtime.features import Preprocessor
        from dfma.tokenizer import load_tokenizer

        self.preprocessor = Preprocessor.from_manifest(manifest["preprocess"], load_tokenizer(folder))
        self.labels = list(manifest["labels"])

    def __call__(self, forward: Callable, samples: list) -> list:
        from dfma.runtime.prediction import to_predictions

        features = [self.preprocessor.prepare(s) for s in samples]
        logits = np.asarray(forward(self.preprocessor.collate(features)))
        return to_predictions(logits, self.labels, [f.id for f in features])


def _logits(predictions: list) -> np.ndarray:
    return np.asarray([p.logits for p in predictions], dtype=np.float32)


# ---------------------------------------------------------------------------- factory

class Loader:
    """Builds runners for one bundle; the eager model and the preprocessing are built once and shared."""

    def __init__(self, folder: Path, manifest: Mapping, threads: int):
        self.folder, self.manifest, self.threads = Path(folder), manifest, threads
        self._eager = None
        self._pipeline = None
        self.eager_note = ""
        self.eager_load_seconds = 0.0

    def eager(self):
        """The shared eager model (built on first use)."""
        if self._eager is None:
            t0 = time.perf_counter()
            self._eager, self.eager_note = build_eager(self.manifest)
            self.eager_load_seconds = time.perf_counter() - t0
        return self._eager

    def pipeline(self) -> Pipeline:
        """The shared preprocessing of the end-to-end rows."""
        if self._pipeline is None:
            self._pipeline = Pipeline(self.folder, self.manifest)
        return self._pipeline

    def load(self, key: str, mode: str) -> Runner:
        """Open backend ``key`` in ``mode``; raises on failure (the caller records the reason)."""
        if key.startswith("eager-"):
            return self._load_eager(key, mode)
        if key.startswith("trt-"):
            return self._load_trt(key, mode)
        return self._load_ort(key, mode)

    def _load_eager(self, key: str, mode: str) -> Runner:
        model = self.eager()
        forward = _eager_forward(model, bf16=key.endswith("bf16"))
        params = sum(t.numel() * t.element_size() for t in list(model.parameters()) + list(model.buffers()))
        if mode == "model":
            call = lambda w: forward(w.torch_feeds())  # noqa: E731
        else:
            import torch

            pipe = self.pipeline()
            tensor_forward = lambda feeds: forward({k: torch.from_numpy(v) for k, v in feeds.items()})  # noqa: E731
            call = lambda w: _logits(pipe(tensor_forward, w.samples))  # noqa: E731
        return Runner(key, mode, LABELS[key], "eager", "bf16" if key.endswith("bf16") else "fp32", None, params,
                      self.eager_load_seconds, call,
                      info={"weights": self.eager_note, "load_what": "build the eager model from the config"})

    def _load_ort(self, key: str, mode: str) -> Runner:
        graph, precision = ORT_GRAPHS[key]
        size = file_bytes(self.folder, graph)
        prec = "fp32" if precision is None else precision
        if mode == "model" or precision is None:
            sess, seconds = open_session(self.folder / graph, self.threads)
            forward = _session_forward(sess)
            if mode == "model":
                call = lambda w: forward(w.feeds)  # noqa: E731
                what = "InferenceSession creation"
            else:
                pipe = self.pipeline()
                call = lambda w: _logits(pipe(forward, w.samples))  # noqa: E731
                what = "InferenceSession creation (runtime preprocessing around it; load() cannot pick this graph)"
            return Runner(key, mode, LABELS[key], "onnxruntime", prec, graph, size, seconds, call,
                          closer=lambda: None, info={"load_what": what})
        import dfma.runtime as rt

        t0 = time.perf_counter()
        extractor = rt.load(self.folder, backend="onnxruntime-cpu", precision=precision, threads=self.threads)
        seconds = time.perf_counter() - t0
        chosen = extractor.describe().get("graph")
        if chosen != graph:
            extractor.close()
            raise RuntimeError(f"dfma.runtime.load(precision={precision!r}) ran {chosen}, not {graph}")
        call = lambda w: _logits(extractor.predict_batch(w.samples))  # noqa: E731
        return Runner(key, mode, LABELS[key], "onnxruntime", prec, graph, size, seconds, call,
                      closer=extractor.close,
                      info={"load_what": "dfma.runtime.load() incl. sha256 of every bundle file"})

    def _load_trt(self, key: str, mode: str) -> Runner:
        entry = trt_engines(self.manifest)[key]
        precision = str(entry.get("precision", "fp32"))
        size = file_bytes(self.folder, entry.get("file"))
        t0 = time.perf_counter()
        if mode == "model":
            from dfma.runtime.trt_backend import TensorRTBackend

            graphs = {k: g for k, g in self.manifest.get("graphs", {}).items()
                      if isinstance(g, Mapping) and g.get("file") in self.manifest.get("files", {})}
            backend = TensorRTBackend(self.folder, graphs, precision)
            call = lambda w: np.asarray(backend.run(w.feeds))  # noqa: E731
            closer, what = backend.close, "engine deserialization"
        else:
            import dfma.runtime as rt

            extractor = rt.load(self.folder, backend="tensorrt", precision=precision)
            call = lambda w: _logits(extractor.predict_batch(w.samples))  # noqa: E731
            closer, what = extractor.close, "dfma.runtime.load() incl. sha256 of every bundle file"
        seconds = time.perf_counter() - t0
        return Runner(key, mode, f"TensorRT {precision} engine", "tensorrt", precision, entry.get("file"), size,
                      seconds, call, closer=closer, info={"load_what": what})
