"""The extractor hosts embed: ``load(bundle)`` -> ``predict(sample)`` / ``predict_batch(samples)``.

One extractor holds one backend session and one stateless preprocessor; it can be shared by any number
of threads. A bad request raises a typed error (InputError / ImageError naming the field) and leaves the
extractor ready for the next one: every public call goes through :mod:`dfma.runtime.edge`, so nothing
but InputError, ImageError, BundleError or BackendUnavailable escapes it. The work of one request is
bounded by :class:`dfma.contract.limits.Limits` (``load(..., limits=)``).
"""
from __future__ import annotations

import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, Self

import numpy as np
from dfma.runtime.backend_choice import Choice, open_backend
from dfma.runtime.edge import (
    batch_list,
    check_bundle_folder,
    check_load_args,
    guarded_prepare,
    guarded_run,
    typed,
)

from dfma.contract.bundle import open_bundle
from dfma.contract.errors import BackendUnavailable, BundleError, DataError, InputError
from dfma.contract.features import Features, Preprocessor
from dfma.contract.graphs import AUTO
from dfma.contract.labels import LabelMap
from dfma.contract.limits import Limits, as_limits
from dfma.contract.prediction import Prediction, to_predictions
from dfma.contract.tokenizer import load_tokenizer

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
        self._closed = False
        self._description: dict | None = None

    @property
    def limits(self) -> Limits:
        """The limits every request is checked against (:mod:`dfma.contract.limits`)."""
        return self.preprocessor.limits

    def _check_open(self) -> None:
        if self._closed:
            raise BackendUnavailable(f"{self.backend}: this extractor was closed; load the bundle again")

    @property
    def backend(self) -> str:
        """The backend that runs (a registry name: ``tensorrt``, ``onnxruntime-cpu``, ``openvino``, ...)."""
        return self._choice.backend

    @property
    def precision(self) -> str:
        """The precision of the graph or engine that runs (``fp32``, ``fp16``, ``int8``, ``int8-dynamic``)."""
        return self._choice.precision

    def describe(self) -> dict:
        """What was chosen (backend, graph, precision and why, providers) and why others were skipped;
        after :meth:`close` the last description, with ``closed`` true."""
        if self._closed and self._description is not None:
            return {**self._description, "closed": True}
        with typed(BackendUnavailable, f"{self.backend}: describe"):
            info = self._backend.describe()
        return {**info, "backend": self.backend, "graph_key": self._choice.graph,
                "precision_reason": self._choice.precision_reason, "bundle": str(self.folder),
                "skipped": list(self.skipped), "labels": len(self._names), "max_batch": self.max_batch,
                "limits": vars(self.limits).copy(), "closed": self._closed}

    def prepare(self, sample: Any) -> Features:
        """Check and preprocess one request; raises InputError / ImageError naming the field."""
        return guarded_prepare(self.preprocessor.prepare, sample)

    def run(self, features: Sequence[Features]) -> list[Prediction]:
        """Predictions for prepared samples, in chunks of ``max_batch``, each padded to its longest row."""
        self._check_open()
        out: list[Prediction] = []
        for start in range(0, len(features), self.max_batch):
            chunk = features[start:start + self.max_batch]
            if not all(isinstance(f, Features) for f in chunk):
                raise InputError("expected the Features that prepare() returns", field="features")
            feeds = self.preprocessor.collate(chunk)
            logits = np.asarray(guarded_run(lambda feeds=feeds: self._backend.logits(feeds), self.backend, len(chunk)))
            if logits.shape != (len(chunk), len(self._names)):
                raise BundleError(f"the graph returned logits of shape {logits.shape}, expected "
                                  f"({len(chunk)}, {len(self._names)})")
            out += to_predictions(logits, self._names, [f.id for f in chunk])
        return out

    def predict(self, sample: Any) -> Prediction:
        """The relation of one request (any form :func:`dfma.runtime.as_sample` accepts)."""
        self._check_open()
        return self.run([self.prepare(sample)])[0]

    def predict_batch(self, samples: Iterable[Any]) -> list[Prediction]:
        """Relations of many requests (at most ``limits.max_batch_requests``), in order.

        A bad request raises its typed error, the field prefixed with ``samples[i]`` (and ``.index`` set).
        Every request's text is checked before anything runs; images are decoded one chunk of
        ``max_batch`` rows at a time (bounded memory), so a bad image raises after the chunks before it
        ran; nothing is returned either way.
        """
        self._check_open()
        requests = batch_list(samples, self.limits)
        texts = []
        for i, sample in enumerate(requests):
            try:
                texts.append(guarded_prepare(self.preprocessor.prepare_text, sample))
            except InputError as e:
                raise _indexed(e, i) from e
        out: list[Prediction] = []
        for start in range(0, len(texts), self.max_batch):
            chunk = []
            for i in range(start, min(start + self.max_batch, len(texts))):
                try:
                    chunk.append(guarded_prepare(self.preprocessor.add_images, texts[i]))
                except InputError as e:
                    raise _indexed(e, i) from e
            out += self.run(chunk)
        return out

    def logits(self, samples: Iterable[Any]) -> np.ndarray:
        """Raw logits ``(n, num_labels)`` float32 of many requests (for parity checks)."""
        preds = self.predict_batch(samples)
        return np.asarray([p.logits for p in preds], dtype=np.float32).reshape(len(preds), len(self._names))

    def close(self) -> None:
        """Release the backend session (a second call does nothing; describe() still answers)."""
        if self._closed:
            return
        try:
            self._description = self.describe()
        except BackendUnavailable:
            self._description = None
        self._closed = True
        with typed(BackendUnavailable, f"{self.backend}: close"):
            self._backend.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Extractor({str(self.folder)!r}, backend={self.backend!r}, precision={self.precision!r})"


def load(bundle: str | os.PathLike, backend: str = "auto", precision: str = AUTO,
         threads: int | None = None, *, device_id: int = 0, max_batch: int | None = None,
         self_check: str = "auto", limits: Limits | Mapping[str, Any] | None = None) -> Extractor:
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
    (default: the manifest's ``limits.max_batch``). ``limits``: the request limits
    (:class:`dfma.contract.limits.Limits`, or a mapping of the fields to change; default its defaults).
    Every file hash is verified first; raises InputError (an argument of the wrong type or range),
    BundleError (missing file, hash mismatch, bad manifest) or BackendUnavailable.
    """
    path, limits = check_load_args(bundle, backend, precision, threads, device_id, max_batch, self_check, limits)
    check_bundle_folder(path)
    with typed(BundleError, f"{path}: cannot load the bundle"):
        return _load(path, backend, precision, threads, device_id, max_batch, self_check, as_limits(limits))


def _load(bundle: Path, backend: str, precision: str, threads: int | None, device_id: int, max_batch: int | None,
          self_check: str, limits: Limits) -> Extractor:
    t0 = time.perf_counter()
    opened = open_bundle(bundle)  # manifest checked, every listed file's size and sha256 verified
    folder, manifest = opened.folder, opened.manifest
    try:
        labels = LabelMap.from_list(manifest.get("labels") or [])
    except DataError as e:
        raise BundleError(f"{folder / 'manifest.json'}: invalid labels ({e})") from None
    opened.path("tokenizer.json")  # BundleError unless the manifest lists (and so verified) it
    try:
        tokenizer = load_tokenizer(folder)
    except DataError as e:
        raise BundleError(f"{folder}: cannot load the tokenizer ({e})") from None
    preprocessor = Preprocessor.from_manifest(manifest.get("preprocess") or {}, tokenizer, limits)
    with typed(BackendUnavailable, f"{backend}: cannot open the backend for {folder}"):
        choice = open_backend(opened, backend=backend, precision=precision, threads=threads, device_id=device_id,
                              self_check=self_check)
    limit = int((manifest.get("limits") or {}).get("max_batch") or DEFAULT_MAX_BATCH)
    limit = min(limit, getattr(choice.runner, "max_batch", 0) or limit)
    if max_batch is not None:
        limit = min(limit, max_batch)
    extractor = Extractor(folder, manifest, choice, preprocessor, labels, limit)
    extractor.load_seconds = time.perf_counter() - t0
    return extractor
