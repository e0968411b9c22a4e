"""The extractor hosts embed: ``load(bundle)`` -> ``predict(sample)`` / ``predict_batch(samples)``.

One extractor holds one backend session and one stateless preprocessor; it can be shared by any number
of threads. A bad request raises a typed error (InputError / ImageError naming the field) and leaves the
extractor ready for the next one.
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dfma.contract.bundle import open_bundle
from dfma.contract.errors import BundleError, DataError, InputError
from dfma.contract.features import Features, Preprocessor
from dfma.contract.graphs import AUTO
from dfma.contract.labels import LabelMap
from dfma.contract.prediction import Prediction, to_predictions
from dfma.contract.tokenizer import load_tokenizer
from dfma.runtime.backend_choice import Choice, open_backend

DEFAULT_MAX_BATCH = 64


def _indexed(error: InputError, index: int) -> InputError:
    """The same error type, its field prefixed with ``samples[index]``."""
    field = error.field or "sample"
    message = str(error)
    if error.field and message.startswith(f"{error.field}: "):
        message = message[len(error.field) + 2:]
    new = type(error)(message, field=f"samples[{index}].{field}")
    new.index = index
    return new


class Extractor:
    """A loaded bundle: preprocessing + one backend. Build it with :func:`load`."""

    def __init__(self, folder: Path, manifest: Mapping, choice: Choice, preprocessor: Preprocessor,
                 labels: LabelMap, max_batch: int):
        self.folder = folder
        self.manifest = manifest
        self._choice = choice
        self._backend = choice.runner
        self.skipped = choice.skipped
        self.preprocessor = preprocessor
        self.labels = labels
        self.max_batch = max_batch
        self._names = labels.names

    @property
    def backend(self) -> str:
        """The backend that runs (a registry name: ``tensorrt``, ``onnxruntime-cpu``, ``openvino``, ...)."""
        return self._choice.backend

    @property
    def precision(self) -> str:
        """The precision of the graph or engine that runs (``fp32``, ``fp16``, ``int8``, ``int8-dynamic``)."""
        return self._choice.precision

    def describe(self) -> dict:
        """What was chosen (backend, graph, precision and why, providers) and why others were skipped."""
        return {**self._backend.describe(), "backend": self.backend, "graph_key": self._choice.graph,
                "precision_reason": self._choice.precision_reason, "bundle": str(self.folder),
                "skipped": list(self.skipped), "labels": len(self._names), "max_batch": self.max_batch}

    def prepare(self, sample: Any) -> Features:
        """Check and preprocess one request; raises InputError / ImageError naming the field."""
        return self.preprocessor.prepare(sample)

    def run(self, features: Sequence[Features]) -> list[Prediction]:
        """Predictions for prepared samples, in chunks of ``max_batch``, each padded to its longest row."""
        out: list[Prediction] = []
        for start in range(0, len(features), self.max_batch):
            chunk = features[start:start + self.max_batch]
            logits = np.asarray(self._backend.logits(self.preprocessor.collate(chunk)))
            if logits.shape != (len(chunk), len(self._names)):
                raise BundleError(f"the graph returned logits of shape {logits.shape}, expected "
                                  f"({len(chunk)}, {len(self._names)})")
            out += to_predictions(logits, self._names, [f.id for f in chunk])
        return out

    def predict(self, sample: Any) -> Prediction:
        """The relation of one request (any form :func:`dfma.runtime.as_sample` accepts)."""
        return self.run([self.prepare(sample)])[0]

    def predict_batch(self, samples: Iterable[Any]) -> list[Prediction]:
        """Relations of many requests, in order. A bad request raises its typed error, the field
        prefixed with ``samples[i]`` (and ``.index`` set); nothing is run in that case."""
        prepared = []
        for i, sample in enumerate(samples):
            try:
                prepared.append(self.prepare(sample))
            except InputError as e:
                raise _indexed(e, i) from e
        return self.run(prepared) if prepared else []

    def logits(self, samples: Iterable[Any]) -> np.ndarray:
        """Raw logits ``(n, num_labels)`` float32 of many requests (for parity checks)."""
        preds = self.predict_batch(samples)
        return np.asarray([p.logits for p in preds], dtype=np.float32).reshape(len(preds), len(self._names))

    def close(self) -> None:
        """Release the backend session."""
        self._backend.close()

    def __enter__(self) -> Extractor:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Extractor({str(self.folder)!r}, backend={self.backend!r}, precision={self.precision!r})"


def load(bundle: str | os.PathLike, backend: str = "auto", precision: str = AUTO,
         threads: int | None = None, *, device_id: int = 0, max_batch: int | None = None,
         self_check: str = "auto") -> Extractor:
    """Load a bundle folder and open a backend for it.

    ``backend``: ``auto`` (TensorRT engine > ONNX Runtime with TensorRT/CUDA provider > ONNX Runtime CPU;
    OpenVINO where the bundle measured it fastest on this CPU class), ``onnxruntime`` (best provider),
    ``onnxruntime-cpu`` / ``-cuda`` / ``-tensorrt``, ``tensorrt`` or ``openvino``.
    ``precision``: ``auto`` (the bundle's recorded default: the fastest graph that met the accuracy
    guard, else fp32; the reason is in ``describe()``), ``fp32``, ``fp16``, ``int8`` or ``int8-dynamic``.
    ``self_check`` (with ``precision="auto"``): ``auto`` runs the bundle's golden set on an INT8 graph
    before serving it when this CPU is of another class than the one its guard ran on, and falls back
    (finally to fp32) when it fails; ``always`` checks every non-fp32 choice; ``never`` trusts the record.
    ``threads``: ONNX Runtime intra-op threads (None: its default). ``max_batch``: rows per run
    (default: the manifest's ``limits.max_batch``). Every file hash is verified first; raises
    BundleError (missing file, hash mismatch, bad manifest) or BackendUnavailable.
    """
    t0 = time.perf_counter()
    opened = open_bundle(bundle)  # manifest checked, every listed file's size and sha256 verified
    folder, manifest = opened.folder, opened.manifest
    try:
        labels = LabelMap.from_list(manifest.get("labels") or [])
    except DataError as e:
        raise BundleError(f"{folder / 'manifest.json'}: invalid labels ({e})") from None
    if threads is not None and (isinstance(threads, bool) or not isinstance(threads, int) or threads < 0):
        raise InputError(f"must be None or an int >= 0, got {threads!r}", field="threads")
    opened.path("tokenizer.json")  # BundleError unless the manifest lists (and so verified) it
    try:
        tokenizer = load_tokenizer(folder)
    except DataError as e:
        raise BundleError(f"{folder}: cannot load the tokenizer ({e})") from None
    preprocessor = Preprocessor.from_manifest(manifest.get("preprocess") or {}, tokenizer)
    choice = open_backend(opened, backend=backend, precision=precision, threads=threads, device_id=device_id,
                          self_check=self_check)
    limit = int((manifest.get("limits") or {}).get("max_batch") or DEFAULT_MAX_BATCH)
    limit = min(limit, getattr(choice.runner, "max_batch", 0) or limit)
    if max_batch is not None:
        if isinstance(max_batch, bool) or not isinstance(max_batch, int) or max_batch < 1:
            raise InputError(f"must be a positive int, got {max_batch!r}", field="max_batch")
        limit = min(limit, max_batch)
    extractor = Extractor(folder, manifest, choice, preprocessor, labels, limit)
    extractor.load_seconds = time.perf_counter() - t0
    return extractor
