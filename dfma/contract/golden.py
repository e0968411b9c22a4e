"""The bundle's golden set: a few inputs with the eager model's fp32 logits, so that a serving host can
check every graph on itself (``python -m dfma.runtime verify``, ``load(precision="auto")``).

File ``golden.safetensors`` (:mod:`dfma.contract.tensor_file`, hashed like every bundle file):
``input_ids`` / ``attention_mask`` int64 ``[R, L]``, ``image_mask`` int64 ``[R, slots]``,
``pixel_values`` float32 ``[R_img, slots, 3, S, S]`` for the first ``R_img`` rows (the other rows have no
image: zeros, mask 0), ``logits`` float32 ``[R, labels]`` (eager fp32). Manifest section ``golden``:
``{file, samples, rows_with_images, inputs, reference, tolerance, expected}``; ``expected[graph key]`` is
what the graph gave on the host that built it (``top1_agreement``, ``max_abs_error``, ``host``).

A graph passes on a host when its top-1 agreement with the golden logits is at least the expected one
minus ``tolerance.agreement_drop`` (one row) and its max abs error at most ``tolerance.error_factor`` x
the expected one + ``tolerance.error_floor``: a different CPU may round differently, not worse.
"""
from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dfma.contract.errors import BundleError
from dfma.contract.manifest import GoldenExpected, Manifest
from dfma.contract.tensor_file import read_tensors

GOLDEN_FILE = "golden.safetensors"
FORMAT = "dfma-golden"
CHUNK = 8  # rows per run: a few seconds on base, a few hundred milliseconds on tiny
ERROR_FACTOR, ERROR_FLOOR = 1.5, 1e-4


@dataclass(frozen=True)
class Golden:
    """The golden inputs and reference logits of a bundle."""

    input_ids: np.ndarray
    attention_mask: np.ndarray
    pixel_values: np.ndarray  # rows 0..rows_with_images-1
    image_mask: np.ndarray
    logits: np.ndarray

    @property
    def rows(self) -> int:
        """Number of golden samples."""
        return int(self.input_ids.shape[0])

    def batches(self, chunk: int = CHUNK) -> Iterator[dict[str, np.ndarray]]:
        """The contract's four input arrays, ``chunk`` rows at a time (rows without an image get zeros)."""
        slots_shape = self.pixel_values.shape[1:]
        for start in range(0, self.rows, chunk):
            stop = min(start + chunk, self.rows)
            pixels = np.zeros((stop - start, *slots_shape), dtype=np.float32)
            have = max(0, min(stop, self.pixel_values.shape[0]) - start)
            pixels[:have] = self.pixel_values[start:start + have]
            yield {"input_ids": self.input_ids[start:stop], "attention_mask": self.attention_mask[start:stop],
                   "pixel_values": pixels, "image_mask": self.image_mask[start:stop]}


def load_golden(folder: str | os.PathLike, manifest: Manifest | Mapping) -> Golden | None:
    """The bundle's golden set (None when the manifest, typed or JSON, has none); BundleError when it is malformed."""
    section = Manifest.from_json(manifest).golden
    if section is None:
        return None
    rel = section.file
    if rel not in Manifest.from_json(manifest).files:
        raise BundleError(f"{Path(folder) / 'manifest.json'}: golden.file {rel!r} is not listed in files")
    return read_golden(Path(folder) / rel)


def read_golden(path: str | os.PathLike) -> Golden:
    """A golden file on its own (BundleError naming the file when it is malformed)."""
    arrays, meta = read_tensors(path)
    if meta.get("format") != FORMAT:
        raise BundleError(f"{path}: not a {FORMAT} file (metadata format {meta.get('format')!r})")
    need = ("input_ids", "attention_mask", "pixel_values", "image_mask", "logits")
    missing = [k for k in need if k not in arrays]
    if missing:
        raise BundleError(f"{path}: tensors {missing} missing")
    golden = Golden(*(arrays[k] for k in need))
    rows = golden.rows
    if (golden.attention_mask.shape != golden.input_ids.shape or golden.image_mask.shape[0] != rows
            or golden.logits.shape[0] != rows or golden.pixel_values.shape[0] > rows):
        raise BundleError(f"{path}: tensor shapes disagree on the number of rows ({rows})")
    return golden


def judge(result: Mapping, expected: GoldenExpected | Mapping | None, tolerance: Mapping) -> tuple[bool, str]:
    """Whether a golden run (``top1_agreement``, ``max_abs_error``) passes against the recorded ``expected``
    one (``golden.expected[key]``, typed or JSON); returns ``(passed, one-line reason)``."""
    if expected is None:
        return False, "no expected result recorded for this graph"
    if isinstance(expected, GoldenExpected):
        expected = {"top1_agreement": expected.top1_agreement, "max_abs_error": expected.max_abs_error}
    drop = float(tolerance.get("agreement_drop", 0.0))
    need_agree = float(expected["top1_agreement"]) - drop - 1e-9
    bound = float(expected["max_abs_error"]) * float(tolerance.get("error_factor", ERROR_FACTOR)) + float(
        tolerance.get("error_floor", ERROR_FLOOR))
    agree, err = float(result["top1_agreement"]), float(result["max_abs_error"])
    if not np.isfinite(err):
        return False, "non-finite logits"
    if agree < need_agree:
        return False, f"agreement {agree:.3f} < {need_agree:.3f} (expected {expected['top1_agreement']:.3f})"
    if err > bound:
        return False, f"max error {err:.3g} > {bound:.3g} (expected {expected['max_abs_error']:.3g})"
    return True, f"agreement {agree:.3f}, max error {err:.3g} (bound {bound:.3g})"
