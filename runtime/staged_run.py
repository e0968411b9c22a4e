"""Rows through the stage graphs (vision, then text), each distinct image set encoded once.

Rows are grouped by :func:`image_digest` (blake2b of the pixels of the present image slots and the
``image_mask``; absent slots do not count). The vision stage runs once per distinct image set, batched in
chunks of ``max_batch``, unless the per-call ``memo`` or the extractor's optional
:class:`~dfma.runtime.image_cache.ImageCache` already holds its features; then the text stage runs over
every row, in chunks of ``max_batch``, with each row's features gathered. The features depend on the pixels
alone, so the logits equal the whole graph's (to the rounding of a different batch composition), and a
cache hit gives bit for bit the logits of the miss that filled it.
"""
from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

from dfma.contract.errors import BundleError
from dfma.contract.features import Features, Preprocessor
from dfma.runtime.api_guards import guarded_run
from dfma.runtime.image_cache import ImageCache


def image_digest(pixel_values: np.ndarray, image_mask: np.ndarray) -> bytes:
    """The content key of one row's image slots: the mask, then each present slot's index and pixels."""
    mask = np.ascontiguousarray(image_mask, dtype=np.int64).reshape(-1)
    h = hashlib.blake2b(digest_size=32)
    h.update(repr(tuple(np.shape(pixel_values))).encode())
    h.update(mask.tobytes())
    for slot in np.flatnonzero(mask):
        pixels = np.ascontiguousarray(pixel_values[slot], dtype=np.float32)
        h.update(int(slot).to_bytes(4, "little"))
        h.update(memoryview(pixels).cast("B"))
    return h.digest()


def row_digests(features: Sequence[Features]) -> list[bytes]:
    """:func:`image_digest` of every row; rows sharing the same arrays (one post, many entity pairs) hash once."""
    seen: dict[tuple[int, int], bytes] = {}
    out = []
    for f in features:
        ident = (id(f.pixel_values), id(f.image_mask))
        if ident not in seen:
            seen[ident] = image_digest(f.pixel_values, f.image_mask)
        out.append(seen[ident])
    return out


def check_logits(logits: np.ndarray, rows: int, num_labels: int) -> np.ndarray:
    """``logits`` as returned by a graph, refused (BundleError) unless ``(rows, num_labels)``."""
    logits = np.asarray(logits)
    if logits.shape != (rows, num_labels):
        raise BundleError(f"the graph returned logits of shape {logits.shape}, expected ({rows}, {num_labels})")
    return logits


def _check_features(out: np.ndarray, rows: int, trailing: tuple[int, ...] | None) -> np.ndarray:
    out = np.asarray(out)
    if out.ndim < 1 or out.shape[0] != rows or (trailing is not None and tuple(out.shape[1:]) != trailing):
        want = f"({rows}, {', '.join(map(str, trailing))})" if trailing is not None else f"({rows}, ...)"
        raise BundleError(f"the vision stage returned image_features of shape {out.shape}, expected {want}")
    return out


def staged_logits(runner, preprocessor: Preprocessor, features: Sequence[Features], *, max_batch: int,
                  backend: str, num_labels: int, feature_shape: tuple[int, ...] | None = None,
                  cache: ImageCache | None = None, memo: ImageCache | None = None) -> np.ndarray:
    """Logits ``(len(features), num_labels)`` of prepared rows on a :class:`~dfma.backends.two_stage.TwoStage`.

    ``feature_shape``: the features' shape after the batch axis (the manifest's, checked); ``cache``: the
    extractor's cache (looked up once per distinct image set, hits and misses counted); ``memo``: a
    per-call store consulted first (features computed earlier in the same ``predict_batch`` call).
    """
    keys = row_digests(features)
    first: dict[bytes, int] = {}
    for i, key in enumerate(keys):
        first.setdefault(key, i)
    found: dict[bytes, np.ndarray] = {}
    missing = []
    for key in first:
        value = memo.get(key) if memo is not None else None
        if value is None and cache is not None:
            value = cache.get(key)
        if value is None:
            missing.append(key)
        else:
            found[key] = value
    for start in range(0, len(missing), max_batch):
        chunk = missing[start:start + max_batch]
        feeds = preprocessor.collate_images([features[first[k]] for k in chunk])
        out = guarded_run(lambda feeds=feeds: runner.features(feeds), backend, len(chunk))
        out = _check_features(out, len(chunk), feature_shape)
        for j, key in enumerate(chunk):
            found[key] = out[j]
            for store in (memo, cache):
                if store is not None:
                    store.put(key, out[j])
    logits = []
    for start in range(0, len(features), max_batch):
        rows = features[start:start + max_batch]
        feeds = preprocessor.collate_text(rows)
        gathered = np.stack([found[k] for k in keys[start:start + max_batch]])
        out = guarded_run(lambda feeds=feeds, gathered=gathered: runner.logits_with(feeds, gathered), backend,
                          len(rows))
        logits.append(check_logits(out, len(rows), num_labels))
    return np.concatenate(logits) if logits else np.zeros((0, num_labels), np.float32)
