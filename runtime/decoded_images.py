"""The images decoded in one call: the same path string or equal bytes are decoded once, and give the
same pixels.

One :class:`DecodedImages` lives for one ``predict`` / ``predict_batch`` / ``predict_pairs`` call (never
shared between threads or calls), so a post's image given for several entity pairs, or a file named by
several rows, is read and decoded once. Keys: a path (``str`` or ``os.PathLike``) by its string, bytes-like
sources by the blake2b digest of their content; PIL images and arrays are not kept (they are already
decoded). It holds at most ``capacity`` slots of pixels (least recently used dropped first). Not the
feature cache (:mod:`dfma.runtime.image_cache`), which keeps the vision stage's outputs across calls.
"""
from __future__ import annotations

import hashlib
import os
from collections import OrderedDict
from collections.abc import Callable, Hashable
from typing import Any

import numpy as np

DEFAULT_CAPACITY = 64  # decoded (3, S, S) images kept per call


def source_key(source: Any) -> Hashable | None:
    """The key of an image source, None when it is not kept (PIL images, arrays, others)."""
    if isinstance(source, (str, os.PathLike)):
        try:
            return ("path", os.fsdecode(os.fspath(source)))
        except (TypeError, UnicodeError, ValueError):
            return None  # the decoder reports what is wrong with it
    if isinstance(source, (bytes, bytearray, memoryview)):
        try:
            view = memoryview(source).cast("B")
        except (TypeError, ValueError):
            return None
        return ("bytes", view.nbytes, hashlib.blake2b(view, digest_size=32).digest())
    return None


class DecodedImages:
    """The pixels of the image sources of one call: ``load(source)`` through ``loader`` once per key
    (module doc)."""

    def __init__(self, loader: Callable[[Any], np.ndarray], capacity: int = DEFAULT_CAPACITY):
        """``loader``: source -> float32 ``(3, S, S)`` (the image preprocessor's ``load``)."""
        self.loader = loader
        self.capacity = capacity
        self.decoded = 0  # sources actually decoded (for tests and describe)
        self._pixels: OrderedDict[Hashable, np.ndarray] = OrderedDict()

    def load(self, source: Any) -> np.ndarray:
        """The pixels of ``source``: decoded now, or the pixels of an equal source seen in this call."""
        key = source_key(source)
        if key is not None and key in self._pixels:
            self._pixels.move_to_end(key)
            return self._pixels[key]
        pixels = self.loader(source)
        self.decoded += 1
        if key is not None and self.capacity > 0:
            self._pixels[key] = pixels
            while len(self._pixels) > self.capacity:
                self._pixels.popitem(last=False)
        return pixels
