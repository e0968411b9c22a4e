"""The extractor hosts embed: ``load(bundle)`` -> ``predict(sample)`` / ``predict_batch(samples)`` /
``predict_pairs(sentence, entities)``.

One extractor holds one backend session (the whole graph, or its stage graphs: each distinct image
encoded once per call, :mod:`dfma.runtime.staged_run`), one stateless preprocessor and an optional bounded
feature cache (:mod:`dfma.runtime.image_cache`); it can be shared by any number of threads. A bad request raises a typed error (InputError / ImageError naming the field) and leaves the
extractor ready for the next one: every public call goes through :mod:`dfma.runtime.api_guards`, so nothing
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
from dfma.runtime.api_guards import (
    batch_list,
    cache_megabytes,
    check_bundle_folder,
    check_load_args,
    guarded_prepare,
    guarded_run,
    untyped_errors_as,
)
from dfma.runtime.backend_choice import Choice, open_backend
from dfma.runtime.decoded_images import DecodedImages
from dfma.runtime.entity_pairs import ALL, PairRequest, check_pair_request, pair_field, pair_samples
from dfma.runtime.image_cache import ImageCache
from dfma.runtime.staged_run import check_logits, staged_logits

from dfma.contract.bundle import open_bundle
from dfma.contract.errors import BackendUnavailable, BundleError, DataError, InputError, with_field
from dfma.contract.features import Features, Preprocessor
from dfma.contract.graphs import AUTO
from dfma.contract.labels import LabelMap
from dfma.contract.limits import Limits, as_limits
from dfma.contract.manifest import Manifest
from dfma.contract.prediction import Prediction, to_predictions
from dfma.contract.tokenizer import load_tokenizer

DEFAULT_MAX_BATCH = 64


def _indexed(error: InputError, index: int) -> InputError:
    """The same error type, its field prefixed with ``samples[index]``."""
    new = with_field(error, f"samples[{index}].{error.field or 'sample'}")
    new.index = index
    return new


class Extractor:
    """A loaded bundle: preprocessing + one backend. Build it with :func:`load`."""

    def __init__(self, folder: Path, manifest: Manifest, choice: Choice, preprocessor: Preprocessor,
                 labels: LabelMap, max_batch: int, image_cache: ImageCache | None = None):
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
        self.image_cache = image_cache if choice.stage_files else None  # features exist only with the stage graphs
        features = manifest.stages.features if manifest.stages is not None else None
        shape = list(features.shape) if features is not None else []
        self._feature_shape = tuple(shape[1:]) if shape and all(isinstance(d, int) for d in shape[1:]) else None

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
    def stages(self) -> str:
        """``two-stage`` (the graph's vision + text stage graphs run, each distinct image encoded once) or ``whole``."""
        return self._choice.stages

    @property
    def precision(self) -> str:
        """The precision of the graph or engine that runs (``fp32``, ``fp16``, ``int8``, ``int8-dynamic``)."""
        return self._choice.precision

    def describe(self) -> dict:
        """What was chosen (backend, graph, precision and why, providers) and why others were skipped;
        after :meth:`close` the last description, with ``closed`` true."""
        if self._closed and self._description is not None:
            return {**self._description, "closed": True}
        with untyped_errors_as(BackendUnavailable, f"{self.backend}: describe"):
            info = self._backend.describe()
        stages = {"mode": self.stages, "files": dict(self._choice.stage_files or {}) or None,
                  "reason": self._choice.stages_reason}
        if self._choice.stage_files:  # the text stage's facts (providers, threads) at the top, as for a whole graph
            per_stage = info.pop("stages", {})
            info = {**per_stage.get("text", {}), **info, "graph": self._choice.file}
            stages["runners"] = per_stage
        return {**info, "backend": self.backend, "graph_key": self._choice.graph,
                "precision_reason": self._choice.precision_reason, "bundle": str(self.folder),
                "skipped": list(self.skipped), "labels": len(self._names), "max_batch": self.max_batch,
                "limits": vars(self.limits).copy(), "stages": stages,
                "image_cache": self.image_cache.stats() if self.image_cache is not None else None,
                "closed": self._closed}

    def prepare(self, sample: Any) -> Features:
        """Check and preprocess one request; raises InputError / ImageError naming the field."""
        decoded = DecodedImages(self.preprocessor.images.load)  # an image given again as a crop is decoded once
        return guarded_prepare(lambda s: self.preprocessor.add_images(self.preprocessor.prepare_text(s), decoded.load),
                               sample)

    def run(self, features: Sequence[Features]) -> list[Prediction]:
        """Predictions for prepared samples, in chunks of ``max_batch``, each padded to its longest row.

        With the stage graphs, each distinct image set (same pixels in the same slots) of ``features``
        runs the vision stage once (or comes from the image cache), then every row the text stage.
        """
        return self._run(features)

    def _run(self, features: Sequence[Features], memo: ImageCache | None = None) -> list[Prediction]:
        self._check_open()
        if isinstance(features, (str, bytes, Mapping)) or not isinstance(features, Sequence):
            raise InputError(f"expected a list of the Features that prepare() returns, got "
                             f"{type(features).__name__}", field="features")
        if not all(isinstance(f, Features) for f in features):
            raise InputError("expected the Features that prepare() returns", field="features")
        if not features:
            return []
        if self._choice.stage_files:
            with untyped_errors_as(InputError, "cannot batch the features", field="features"):
                logits = staged_logits(self._backend, self.preprocessor, features, max_batch=self.max_batch,
                                       backend=self.backend, num_labels=len(self._names),
                                       feature_shape=self._feature_shape, cache=self.image_cache, memo=memo)
            return to_predictions(logits, self._names, [f.id for f in features])
        out: list[Prediction] = []
        for start in range(0, len(features), self.max_batch):
            chunk = features[start:start + self.max_batch]
            with untyped_errors_as(InputError, "cannot batch the features", field="features"):
                feeds = self.preprocessor.collate(chunk)
            logits = guarded_run(lambda feeds=feeds: self._backend.logits(feeds), self.backend, len(chunk))
            out += to_predictions(check_logits(logits, len(chunk), len(self._names)), self._names,
                                  [f.id for f in chunk])
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
        decoded = DecodedImages(self.preprocessor.images.load)  # a source repeated in the call is decoded once
        seen = self._call_memo()  # and its features computed once, across chunks
        out: list[Prediction] = []
        for start in range(0, len(texts), self.max_batch):
            chunk = []
            for i in range(start, min(start + self.max_batch, len(texts))):
                try:
                    chunk.append(guarded_prepare(lambda t: self.preprocessor.add_images(t, decoded.load), texts[i]))
                except InputError as e:
                    raise _indexed(e, i) from e
            out += self._run(chunk, seen)
        return out

    def _call_memo(self) -> ImageCache | None:
        """A per-call feature store of one chunk's worth of features (None for the whole graph)."""
        if not self._choice.stage_files or self._feature_shape is None:
            return None
        return ImageCache(self.max_batch * int(np.prod(self._feature_shape)) * np.dtype(np.float32).itemsize)

    def prepare_pairs(self, sentence: Any, entities: Any, image: Any = None, crops: Any = None, pairs: Any = ALL,
                      id: Any = None) -> list[Features]:
        """The prepared rows of :meth:`predict_pairs` (every check first, then the images decoded once)."""
        self._check_open()
        request = PairRequest(sentence, entities, image=image, crops=crops, pairs=pairs, id=id)
        spans, index_pairs = guarded_prepare(lambda r: check_pair_request(r, self.limits), request)
        samples = guarded_prepare(lambda r: pair_samples(r, spans, index_pairs), request)
        texts = []
        for sample, (h, t) in zip(samples, index_pairs):
            try:
                texts.append(guarded_prepare(self.preprocessor.prepare_text, sample))
            except InputError as e:
                raise pair_field(e, h, t) from e
        if not texts:
            return []
        decoded = DecodedImages(self.preprocessor.images.load)
        first = guarded_prepare(lambda t: self.preprocessor.add_images(t, decoded.load), texts[0])
        return [first, *(Features(encoded, first.pixel_values, first.image_mask, sample.id)
                         for sample, encoded in texts[1:])]

    def predict_pairs(self, sentence: Any, entities: Any, image: Any = None, crops: Any = None,
                      pairs: Any = ALL, id: Any = None) -> list[Prediction]:
        """The relation of each ordered entity pair of one sentence, in the order of ``pairs``.

        ``sentence``: a str (``entities`` are character spans ``[start, end)``) or a list of words (word
        spans); ``entities``: at least two spans, none given twice (overlaps are fine); ``pairs``: ``"all"``
        (every ordered pair head != tail: (0, 1), (0, 2), ..., (1, 0), ...) or a list of ``[head_index,
        tail_index]``, at most ``limits.max_batch_requests``. Each Prediction's ``id`` is ``(head_index,
        tail_index)``, or ``(id, head_index, tail_index)`` when ``id`` is given. The image and crops are decoded
        once (and, with the stage graphs, encoded once); the pairs run batched. Every check comes first:
        InputError / ImageError naming ``sentence``, ``entities``, ``entities[i]``, ``pairs``, ``pairs[k]``,
        ``image`` or ``crops``.
        """
        return self.run(self.prepare_pairs(sentence, entities, image, crops, pairs, id))

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
        if self.image_cache is not None:
            self.image_cache.clear()  # the features go with the session
        with untyped_errors_as(BackendUnavailable, f"{self.backend}: close"):
            self._backend.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Extractor({str(self.folder)!r}, backend={self.backend!r}, precision={self.precision!r})"


def load(bundle: str | os.PathLike, backend: str = "auto", precision: str = AUTO,
         threads: int | None = None, *, device_id: int = 0, max_batch: int | None = None,
         self_check: str = "auto", limits: Limits | Mapping[str, Any] | None = None, stages: str = "auto",
         image_cache_mb: float | None = None, allow_batch_dependent: bool = False) -> Extractor:
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
    ``stages``: ``auto`` (default) serves the chosen graph's stage graphs (vision + text, cut from it node for
    node) when the bundle has them, else the whole graph (TensorRT engines: whole); ``two-stage`` requires the
    stage graphs (BundleError naming the graph); ``whole`` runs the whole graph. ``image_cache_mb``: with the
    stage graphs, an LRU of image features of at most that many MiB shared by every call (None: no cache).
    ``allow_batch_dependent``: whether ``precision="auto"`` may serve a graph the precision step marked
    batch-dependent (``graphs.<key>.batch_dependent``: dynamic INT8, whose answer to a request changes with
    the other requests in its batch); default False: auto passes over it (the reason is in ``describe()``).
    Every file hash is verified first; raises InputError (an argument of the wrong type or range),
    BundleError (missing file, hash mismatch, bad manifest) or BackendUnavailable.
    """
    path, limits = check_load_args(bundle, backend, precision, threads, device_id, max_batch, self_check, limits,
                                   stages, image_cache_mb)
    if not isinstance(allow_batch_dependent, bool):
        raise InputError(f"must be True or False, got {allow_batch_dependent!r}", field="allow_batch_dependent")
    check_bundle_folder(path)
    cache_mb = cache_megabytes(image_cache_mb)
    with untyped_errors_as(BundleError, f"{path}: cannot load the bundle"):
        return _load(path, backend, precision, threads, device_id, max_batch, self_check, as_limits(limits),
                     stages, cache_mb, allow_batch_dependent)


def _load(bundle: Path, backend: str, precision: str, threads: int | None, device_id: int, max_batch: int | None,
          self_check: str, limits: Limits, stages: str = "auto", cache_mb: float | None = None,
          allow_batch_dependent: bool = False) -> Extractor:
    t0 = time.perf_counter()
    opened = open_bundle(bundle)  # manifest checked, every listed file's size and sha256 verified
    folder, manifest = opened.folder, opened.manifest
    try:
        labels = LabelMap.from_list(list(manifest.labels))
    except DataError as e:
        raise BundleError(f"{folder / 'manifest.json'}: invalid labels ({e})") from None
    opened.path("tokenizer.json")  # BundleError unless the manifest lists (and so verified) it
    try:
        tokenizer = load_tokenizer(folder)
    except DataError as e:
        raise BundleError(f"{folder}: cannot load the tokenizer ({e})") from None
    preprocessor = Preprocessor.from_manifest(manifest.preprocess, tokenizer, limits)
    with untyped_errors_as(BackendUnavailable, f"{backend}: cannot open the backend for {folder}"):
        choice = open_backend(opened, backend=backend, precision=precision, threads=threads, device_id=device_id,
                              self_check=self_check, stages=stages, allow_batch_dependent=allow_batch_dependent)
    limit = int(manifest.limits.max_batch or DEFAULT_MAX_BATCH)
    limit = min(limit, getattr(choice.runner, "max_batch", 0) or limit)
    if max_batch is not None:
        limit = min(limit, max_batch)
    cache = ImageCache.of_megabytes(cache_mb) if cache_mb is not None else None
    extractor = Extractor(folder, manifest, choice, preprocessor, labels, limit, cache)
    extractor.load_seconds = time.perf_counter() - t0
    return extractor
