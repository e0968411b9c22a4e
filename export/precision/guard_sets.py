"""The guard's sentence sets: one per serving condition, each split into a tune part and a confirm part.

- Serving conditions (:data:`TEXT_ONLY`, :data:`WITH_IMAGES`): what a bundle serves. ``text-only``: every image
  slot absent (mask 0), how the checkpoint was trained and how most requests arrive; ``with-images``: the
  slots filled from ``--images`` or, without it, scikit-image's photographs. A graph meets the guard only if
  each condition does (``accuracy_guard.meets_guard``).
- Split (:func:`split`): each condition's sentences are cut, by a seeded permutation, into a ``tune`` part
  (what the fp32-node search looks at) and a ``confirm`` part (held out from it: the figure a graph is
  accepted on). Both figures are recorded.
- :func:`regroup` re-batches single rows (each cut to its own length) into padded batches, as the runtime's
  collate does.
"""
from __future__ import annotations

from collections.abc import Sequence

import numpy as np

TEXT_ONLY, WITH_IMAGES = "text-only", "with-images"
TUNE, CONFIRM = "tune", "confirm"
PARTS = (TUNE, CONFIRM)
TEXT_INPUTS = ("input_ids", "attention_mask")


def rows(feeds) -> list[dict]:
    """Every sample of a FeedSet as a batch-1 feed dict cut to its own length, in order."""
    out = []
    for batch in feeds.batches:
        for r in range(batch["input_ids"].shape[0]):
            length = int(batch["attention_mask"][r].sum())
            out.append({k: (v[r:r + 1, :length] if k in TEXT_INPUTS else v[r:r + 1]) for k, v in batch.items()})
    return out


def regroup(singles: Sequence[dict], batch_size: int, pad_id: int) -> list[dict]:
    """Batch-1 feeds stacked ``batch_size`` at a time, text right-padded with ``pad_id`` (mask 0) to the
    longest of each batch: exactly what the runtime's collate gives those sentences together."""
    out = []
    for start in range(0, len(singles), batch_size):
        group = singles[start:start + batch_size]
        width = max(g["input_ids"].shape[1] for g in group)
        batch = {}
        for key in group[0]:
            if key in TEXT_INPUTS:
                fill = pad_id if key == "input_ids" else 0
                batch[key] = np.stack([np.pad(g[key][0], (0, width - g[key].shape[1]), constant_values=fill)
                                       for g in group])
            else:
                batch[key] = np.concatenate([g[key] for g in group])
        out.append(batch)
    return out


def split_indices(n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``(tune, confirm)`` sample indices: a seeded permutation's first half (rounded up) and the rest, each
    in the original order."""
    perm = np.random.default_rng([seed, 22]).permutation(n)
    cut = (n + 1) // 2
    return np.sort(perm[:cut]), np.sort(perm[cut:])


def split(feeds, seed: int, pad_id: int, batch_size: int = 32) -> dict:
    """``{"tune": FeedSet, "confirm": FeedSet}`` of a FeedSet (:func:`split_indices`)."""
    from dfma.export.precision.calibration import FeedSet

    singles = rows(feeds)
    out = {}
    for part, idx in zip(PARTS, split_indices(len(singles), seed)):
        out[part] = FeedSet(regroup([singles[i] for i in idx], batch_size, pad_id), feeds.labels[idx],
                            {**feeds.source, "part": part, "samples": int(idx.size)})
    return out
