"""The paths the traffic benchmark compares, each a callable ``post's requests -> logits``.

- ``eager``: the eager PyTorch model behind the runtime's preprocessing (each distinct image of a call
  decoded once, like the runtime), every row through the whole network;
- ``whole-*``: ``dfma.runtime.load(..., stages="whole")``: every row runs the whole graph (the ResNet
  over its image slots included);
- ``two-stage-*``: ``load(..., stages="two-stage", image_cache_mb=...)``: the vision stage once per
  distinct image, the text stage per row; with requests arriving one at a time the feature cache
  carries a post's image features from its first pair to the next.

Each graph path at fp32 (ONNX Runtime, fused graph) and at INT8 (ONNX Runtime static QDQ, and OpenVINO
on the same graph where it is installed).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dfma.benchmarks.workload import eager_features
from dfma.contract.graphs import FP32, INT8
from dfma.contract.manifest import Manifest

# key: (label, stages, backend, precision)
PATHS: dict[str, tuple[str, str, str, str]] = {
    "eager": ("eager PyTorch fp32", "eager", "eager", FP32),
    f"whole-{FP32}": ("whole graph, ONNX Runtime fp32", "whole", "onnxruntime-cpu", FP32),
    f"whole-{INT8}": ("whole graph, ONNX Runtime INT8", "whole", "onnxruntime-cpu", INT8),
    f"whole-openvino-{INT8}": ("whole graph, OpenVINO INT8", "whole", "openvino", INT8),
    f"two-stage-{FP32}": ("two-stage, ONNX Runtime fp32", "two-stage", "onnxruntime-cpu", FP32),
    f"two-stage-{INT8}": ("two-stage, ONNX Runtime INT8", "two-stage", "onnxruntime-cpu", INT8),
    f"two-stage-openvino-{INT8}": ("two-stage, OpenVINO INT8", "two-stage", "openvino", INT8),
}
DEFAULT_PATHS = tuple(PATHS)


@dataclass
class TrafficPath:
    """One opened path: ``call(requests) -> logits (n, labels)``, with what the tables show."""

    key: str
    label: str
    stages: str
    backend: str
    precision: str
    call: Callable
    load_seconds: float
    info: dict = field(default_factory=dict)
    closer: Callable | None = None
    stats: Callable | None = None  # () -> dict (the runtime's describe()["image_cache"])

    def close(self) -> None:
        """Release the session or model."""
        if self.closer is not None:
            self.closer()


def _eager(folder: Path, manifest: Manifest, threads: int) -> TrafficPath:
    import torch

    from dfma.benchmarks.backends import Pipeline, build_eager
    from dfma.contract.prediction import to_predictions
    from dfma.model.runner import EagerRunner

    t0 = time.perf_counter()
    torch.set_num_threads(threads)
    model, note = build_eager(manifest)
    runner = EagerRunner(model).open()
    pipe = Pipeline(folder, manifest)
    pre = pipe.preprocessor

    def call(requests: list[dict]) -> np.ndarray:
        features = eager_features(pre, requests)
        logits = np.asarray(runner.logits(pre.collate(features)))
        to_predictions(logits, pipe.labels, [f.id for f in features])
        return logits

    label, stages, backend, precision = PATHS["eager"]
    return TrafficPath("eager", label, stages, backend, precision, call, time.perf_counter() - t0,
                 info={"weights": note}, closer=runner.close)


def open_path(key: str, folder: Path, manifest: Manifest, *, threads: int, cache_mb: float) -> TrafficPath:
    """Open one path of :data:`PATHS` (raises DFMAError / ImportError when it cannot run here)."""
    if key == "eager":
        return _eager(folder, manifest, threads)
    import dfma.runtime as rt

    label, stages, backend, precision = PATHS[key]
    t0 = time.perf_counter()
    options = {"image_cache_mb": cache_mb} if stages == "two-stage" else {}
    ex = rt.load(folder, backend=backend, precision=precision, threads=threads, stages=stages, **options)
    desc = ex.describe()

    def call(requests: list[dict]) -> np.ndarray:
        return np.asarray([p.logits for p in ex.predict_batch(requests)], dtype=np.float32)

    return TrafficPath(key, label, stages, ex.backend, ex.precision, call, time.perf_counter() - t0,
                 info={"graph": desc.get("graph"), "graph_key": desc.get("graph_key"), "runtime_stages": desc.get("stages")},
                 closer=ex.close, stats=lambda: ex.describe().get("image_cache"))
