"""Limits that bound the work of one request before it is done (contract section 3.1, torch-free).

Every limit is checked from what is cheap to know (a file's size, an image header, a string's length)
before the expensive step it guards: reading, inflating, decoding, resizing, tokenizing. The same names,
defaults and checks are in the C++ runtime (``runtime/cpp/include/dfma/limits.hpp``, ``dfma_cli --name``);
a refusal is a typed error whose ``field`` names the request field and whose message names the limit.

``max_image_pixels`` is also a manifest field (``preprocess.max_image_pixels``): the smaller of the two
applies.
"""
from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from dfma.contract.errors import DataError, ImageError, InputError


@dataclass(frozen=True)
class Limits:
    """The bounds of one request; every field is a positive number (see docs/contract.md section 3.1)."""

    max_image_bytes: int = 64 * 1024 * 1024   #: size of one encoded image (file or bytes)
    max_image_pixels: int = 50_000_000        #: width x height from the header
    max_image_side: int = 20_000              #: width and height, each
    max_aspect_ratio: float = 20.0            #: long side / short side
    max_resized_pixels: int = 4_194_304       #: width x height after the resize to ``resize_size``
    max_chunk_bytes: int = 1024 * 1024        #: one PNG text / ICC chunk, inflated (Pillow's MAX_TEXT_CHUNK)
    max_ancillary_bytes: int = 8 * 1024 * 1024  #: all PNG text / ICC chunks of one image, inflated
    max_jpeg_scans: int = 100                 #: scans (SOS markers) of one JPEG, counted before decoding
    max_text_chars: int = 100_000             #: code points of ``text``, or of all ``words`` together
    max_words: int = 10_000                   #: entries of ``words`` / ``token``
    max_batch_requests: int = 4096            #: requests in one ``predict_batch`` call
    max_line_bytes: int = 1_000_000           #: one request line of the command line (bytes, newline excluded)
    max_json_depth: int = 32                  #: nesting of ``[`` / ``{`` in one JSON request line

    def __post_init__(self):
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0 or math.isnan(v):
                raise InputError(f"must be a positive number, got {v!r}", field=f"limits.{f.name}")
            if f.type == "int" and not isinstance(v, int):
                raise InputError(f"must be a positive int, got {v!r}", field=f"limits.{f.name}")

    def replace(self, **changes: Any) -> Limits:
        """A copy with some fields changed (unknown names raise InputError)."""
        return self.merged(changes)

    def merged(self, changes: Mapping[str, Any]) -> Limits:
        """A copy with the fields of ``changes`` (a mapping of field name -> value) replaced."""
        if not isinstance(changes, Mapping):
            raise InputError(f"expected Limits or a mapping of limit names, got {type(changes).__name__}",
                             field="limits")
        unknown = sorted(str(k) for k in changes if k not in LIMIT_NAMES)
        if unknown:
            raise InputError(f"unknown limit(s) {unknown}; known: {list(LIMIT_NAMES)}", field="limits")
        return dataclasses.replace(self, **dict(changes))


DEFAULT_LIMITS = Limits()
LIMIT_NAMES = tuple(f.name for f in dataclasses.fields(Limits))


def as_limits(value: Limits | Mapping[str, Any] | None, base: Limits = DEFAULT_LIMITS) -> Limits:
    """``None`` -> ``base``; a :class:`Limits` as is; a mapping -> ``base`` with those fields replaced."""
    if value is None:
        return base
    if isinstance(value, Limits):
        return value
    return base.merged(value)


# ---------------------------------------------------------------- images

def check_image_size(width: int, height: int, name: str, limits: Limits, max_pixels: int | None = None) -> None:
    """Refuse an image from its header: empty, a side, the aspect ratio or the pixel count over its limit.

    ``max_pixels`` (the manifest's ``max_image_pixels``) applies when smaller than ``limits``'s.
    Raises ImageError (field ``image``) naming the limit.
    """
    w, h = int(width), int(height)
    if w <= 0 or h <= 0:
        raise ImageError(f"{name}: empty image ({w}x{h})", field="image")
    side = max(w, h)
    if side > limits.max_image_side:
        raise ImageError(f"{name}: {w}x{h}: a side of {side} pixels exceeds max_image_side "
                         f"{limits.max_image_side}", field="image")
    if side > limits.max_aspect_ratio * min(w, h):
        raise ImageError(f"{name}: {w}x{h}: aspect ratio {side / min(w, h):.1f} exceeds max_aspect_ratio "
                         f"{limits.max_aspect_ratio:g}", field="image")
    cap = limits.max_image_pixels if max_pixels is None else min(max_pixels, limits.max_image_pixels)
    if w * h > cap:
        raise ImageError(f"{name}: {w}x{h} = {w * h} pixels exceeds the limit of {cap}", field="image")


def check_resized_size(width: int, height: int, name: str, limits: Limits) -> None:
    """Refuse an image whose size after the resize step exceeds ``max_resized_pixels`` (ImageError)."""
    if width * height > limits.max_resized_pixels:
        raise ImageError(f"{name}: resized to {width}x{height} = {width * height} pixels, over "
                         f"max_resized_pixels {limits.max_resized_pixels}", field="image")


def check_image_bytes(size: int, name: str, limits: Limits) -> None:
    """Refuse an encoded image larger than ``max_image_bytes`` (ImageError, field ``image``)."""
    if size > limits.max_image_bytes:
        raise ImageError(f"{name}: {size} bytes exceeds max_image_bytes {limits.max_image_bytes}",
                         field="image")


# ---------------------------------------------------------------- text and batches

def check_text(text: Any, limits: Limits) -> None:
    """Refuse a ``text`` string longer than ``max_text_chars`` code points (other types pass: checked later)."""
    if isinstance(text, str) and len(text) > limits.max_text_chars:
        raise InputError(f"{len(text)} characters exceeds max_text_chars {limits.max_text_chars}",
                         field="text")


def check_words(words: Any, limits: Limits, field: str = "words") -> None:
    """Refuse a word list with more than ``max_words`` entries or ``max_text_chars`` code points in all."""
    if not isinstance(words, (list, tuple)):
        return
    if len(words) > limits.max_words:
        raise InputError(f"{len(words)} words exceeds max_words {limits.max_words}", field=field)
    chars = sum(len(w) for w in words if isinstance(w, str))
    if chars > limits.max_text_chars:
        raise InputError(f"{chars} characters in all exceeds max_text_chars {limits.max_text_chars}",
                         field=field)


def check_batch(count: int, limits: Limits) -> None:
    """Refuse a batch of more than ``max_batch_requests`` requests (InputError, field ``samples``)."""
    if count > limits.max_batch_requests:
        raise InputError(f"more than {limits.max_batch_requests} requests (max_batch_requests); split "
                         "the batch", field="samples")


# ---------------------------------------------------------------- request lines

_JSON_STRING = re.compile(r'"(?:[^"\\]|\\.)*"?', re.DOTALL)
_STEP = np.zeros(256, np.int64)  # +1 for an opener, -1 for a closer, 0 for any other byte
_STEP[[ord("["), ord("{")]] = 1
_STEP[[ord("]"), ord("}")]] = -1


def json_depth(line: str) -> int:
    """Deepest nesting of ``[`` / ``{`` in a JSON text, strings skipped (what ``max_json_depth`` bounds).

    Counts openers minus closers left to right and keeps the maximum, as the C++ runtime does, so that
    both refuse a line before parsing it; well-formedness is the parser's business.
    """
    data = np.frombuffer(_JSON_STRING.sub("", line).encode("utf-8", "surrogatepass"), np.uint8)
    if not data.size:
        return 0
    return max(0, int(np.cumsum(_STEP[data], dtype=np.int64).max()))  # brackets are ASCII: bytes keep them


def check_json_depth(line: str, limits: Limits) -> None:
    """Refuse a JSON line nested deeper than ``max_json_depth`` (DataError, field ``record``)."""
    if line.count("[") + line.count("{") <= limits.max_json_depth:
        return  # cannot be deeper than its number of openers
    depth = json_depth(line)
    if depth > limits.max_json_depth:
        raise DataError(f"nested {depth} deep, over max_json_depth {limits.max_json_depth}", field="record")
