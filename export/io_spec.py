"""Declarative model inputs/outputs (contract section 1), shared by export, validation and the manifest.

One :class:`TensorSpec` per graph input/output: name, dtype, shape with symbolic names for the dynamic
axes (``batch``, ``sequence``) and a one-line doc. :func:`random_inputs` makes contract-valid feeds of any
shape: ``[CLS] ... [SEP]`` rows right-padded with ``[PAD]``, every row holding both entities
(``<s> .. </s>`` and ``<o> .. </o>``), optional NaN pixels in absent image slots.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dfma.config import DFMAConfig

BATCH, SEQUENCE = "batch", "sequence"
MIN_LENGTH = 8  # [CLS] <s> w </s> <o> w </o> [SEP]


@dataclass(frozen=True)
class TensorSpec:
    """One named graph input or output."""

    name: str
    dtype: str
    shape: tuple[str | int, ...]
    doc: str

    def dynamic_axes(self) -> dict[int, str]:
        """Axis index -> symbolic name, for the axes that are not fixed."""
        return {i: d for i, d in enumerate(self.shape) if isinstance(d, str)}

    def concrete(self, batch: int, length: int) -> tuple[int, ...]:
        """The shape with ``batch`` and ``sequence`` filled in."""
        sizes = {BATCH: batch, SEQUENCE: length}
        return tuple(sizes[d] if isinstance(d, str) else d for d in self.shape)

    def to_manifest(self) -> dict:
        """The manifest's ``io`` entry."""
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape), "doc": self.doc}


def input_specs(cfg: DFMAConfig) -> list[TensorSpec]:
    """The four graph inputs, in graph order."""
    s, n = cfg.image_size, cfg.num_images
    return [
        TensorSpec("input_ids", "int64", (BATCH, SEQUENCE),
                   "word-piece ids: [CLS] ... [SEP], right-padded with [PAD] (id 0); each row holds the "
                   "markers <s> and <o> (their first occurrence marks head and tail)"),
        TensorSpec("attention_mask", "int64", (BATCH, SEQUENCE), "1 for real pieces, 0 for padding"),
        TensorSpec("pixel_values", "float32", (BATCH, n, 3, s, s),
                   f"slot 0 the post's image, slots 1..{n - 1} object crops; {s}x{s}, ImageNet-normalised"),
        TensorSpec("image_mask", "int64", (BATCH, n),
                   "1 = image slot present, 0 = absent (its pixels are ignored, even NaN)"),
    ]


def output_specs(cfg: DFMAConfig) -> list[TensorSpec]:
    """The graph output."""
    return [TensorSpec("logits", "float32", (BATCH, cfg.num_labels),
                       "unnormalised scores over the label map (manifest 'labels', index = class id)")]


def io_manifest(cfg: DFMAConfig) -> dict:
    """The manifest's ``io`` section."""
    return {"inputs": [t.to_manifest() for t in input_specs(cfg)],
            "outputs": [t.to_manifest() for t in output_specs(cfg)]}


def random_inputs(cfg: DFMAConfig, special: dict[str, int], batch: int, length: int, *,
                  crops: bool = True, rng: np.random.Generator, nan_absent: bool = True) -> dict[str, np.ndarray]:
    """Contract-valid random feeds of shape (batch, length).

    Rows get random real lengths in ``[MIN_LENGTH, length]`` (one row always full length), so padding is
    exercised; each row holds ``<s> w+ </s>`` and ``<o> w+ </o>`` at random non-overlapping places.
    ``crops=False`` marks every crop slot absent (main image present); absent slots hold NaN pixels when
    ``nan_absent`` (the graph must ignore them).
    """
    if length < MIN_LENGTH:
        raise ValueError(f"length {length} < {MIN_LENGTH}: too short for both entities")
    first_word = max(special.values()) + 1
    if first_word >= cfg.vocab_size:
        raise ValueError(f"vocab_size {cfg.vocab_size} leaves no ordinary word ids after {first_word}")
    ids = np.full((batch, length), special["pad"], dtype=np.int64)
    mask = np.zeros((batch, length), dtype=np.int64)
    full_row = int(rng.integers(batch))
    for row in range(batch):
        real = length if row == full_row else int(rng.integers(MIN_LENGTH, length + 1))
        body = rng.integers(first_word, cfg.vocab_size, size=real - 2)
        # two entities of 1-3 words each, wrapped in their markers, at random places in the body
        spans = []
        for opener, closer in (("head_open", "head_close"), ("tail_open", "tail_close")):
            width = int(rng.integers(1, 4))
            spans.append([special[opener]] + [int(w) for w in rng.integers(first_word, cfg.vocab_size, width)]
                         + [special[closer]])
        if rng.random() < 0.5:
            spans.reverse()
        pieces = [int(w) for w in body]
        budget = (real - 2) - sum(len(s) for s in spans)
        if budget < 0:  # short rows: keep the entities with 1 word each, no filler
            spans = [[s[0], s[1], s[-1]] for s in spans]
            budget = (real - 2) - 6
        filler = pieces[:budget]
        cut = sorted(int(c) for c in rng.integers(0, budget + 1, size=2))
        row_ids = filler[:cut[0]] + spans[0] + filler[cut[0]:cut[1]] + spans[1] + filler[cut[1]:]
        ids[row, :real] = [special["cls"]] + row_ids + [special["sep"]]
        mask[row, :real] = 1
    n, s = cfg.num_images, cfg.image_size
    pixels = rng.standard_normal((batch, n, 3, s, s), dtype=np.float32)
    image_mask = np.ones((batch, n), dtype=np.int64)
    if not crops:
        image_mask[:, 1:] = 0
    elif batch > 1:
        image_mask[0, 2:] = 0  # a ragged row: some crops present, some absent
    if nan_absent:
        pixels[image_mask == 0] = np.nan
    return {"input_ids": ids, "attention_mask": mask, "pixel_values": pixels, "image_mask": image_mask}
