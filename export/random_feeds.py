"""Random contract-valid feeds of any shape, for validation (eager vs graph parity) and benchmarks.

:func:`random_inputs` makes ``[CLS] ... [SEP]`` rows right-padded with ``[PAD]``, every row holding both
entities (``<s> .. </s>`` and ``<o> .. </o>``), optional NaN pixels in absent image slots; the shapes
follow the IO spec of :mod:`dfma.contract.io_spec`.
"""
from __future__ import annotations

import numpy as np

from dfma.config import DFMAConfig

MIN_LENGTH = 8  # [CLS] <s> w </s> <o> w </o> [SEP]


def ordinary_ids(vocab_size: int, special: dict[str, int]) -> np.ndarray:
    """Every id below `vocab_size` that is not a special token, ascending.

    A vocabulary trained here puts the specials first (ordinary ids are then ``9..V-1``); a BERT one keeps
    ``[PAD]=0 [UNK]=100 [CLS]=101 ...`` and appends the 4 markers at its end, so no single range works.
    """
    words = np.setdiff1d(np.arange(vocab_size, dtype=np.int64), np.fromiter(special.values(), dtype=np.int64))
    if words.size == 0:
        raise ValueError(f"vocab_size {vocab_size} holds only special tokens: no ordinary word ids")
    return words


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
    words = ordinary_ids(cfg.vocab_size, special)
    draw = lambda n: words[rng.integers(0, words.size, size=n)]
    ids = np.full((batch, length), special["pad"], dtype=np.int64)
    mask = np.zeros((batch, length), dtype=np.int64)
    full_row = int(rng.integers(batch))
    for row in range(batch):
        real = length if row == full_row else int(rng.integers(MIN_LENGTH, length + 1))
        body = draw(real - 2)
        # two entities of 1-3 words each, wrapped in their markers, at random places in the body
        spans = []
        for opener, closer in (("head_open", "head_close"), ("tail_open", "tail_close")):
            width = int(rng.integers(1, 4))
            spans.append([special[opener]] + [int(w) for w in draw(width)]
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
