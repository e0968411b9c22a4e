"""The inputs of one benchmark cell (batch, length): model feeds and end-to-end requests.

Model-only runners get the contract's four arrays (``dfma.export.random_feeds.random_inputs``: padded to exactly
``length`` pieces, every image slot filled but one ragged row). End-to-end runners get requests as a user
sends them: a word list with head/tail spans that encodes to exactly ``length`` word pieces, and JPEG
bytes for each row's own post image and its 3 crops (no image repeats across rows), so that decoding, resizing, tokenizing and collating are
timed too.
"""
from __future__ import annotations

import io
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np

from dfma.config import special_token_ids
from dfma.contract.manifest import Manifest

HEAD, TAIL = (1, 2), (4, 6)  # word spans of every synthetic request: 4 markers around 3 words


def synthetic_jpeg(seed: int, width: int, height: int) -> bytes:
    """A deterministic photo-like JPEG (gradients + noise, quality 90)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1),
                     (x + y) * 127 // max(width + height - 2, 1)], axis=-1)
    pixels = ((base + rng.integers(0, 64, size=(height, width, 3))) % 256).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


@lru_cache(maxsize=64)
def _images(width: int, height: int, crop_width: int, crop_height: int, num_crops: int,
            row: int = 0) -> tuple[bytes, tuple]:
    """Row ``row``'s post image and crops: every row of a batch its own (distinct bytes and pixels), as in
    a batch of different posts, so that no path gains from one image repeated across rows."""
    main = synthetic_jpeg(100 * row, width, height)
    crops = tuple(synthetic_jpeg(100 * row + 1 + k, crop_width, crop_height) for k in range(num_crops))
    return main, crops


def single_piece_words(tokenizer, count: int = 512) -> list[str]:
    """Lower-case ASCII words of the vocabulary that encode to exactly one piece each."""
    vocab = tokenizer.get_vocab(with_added_tokens=False)
    words = sorted(w for w in vocab if w.isascii() and w.isalpha() and w.islower() and len(w) > 2)
    return words[:count] if len(words) > count else words


@dataclass
class Workload:
    """One cell's inputs; ``feeds`` for model-only runners, ``samples`` for end-to-end runners."""

    batch: int
    length: int
    feeds: dict[str, np.ndarray]
    samples: list[dict] = field(default_factory=list)
    _torch: dict | None = None

    def torch_feeds(self) -> dict:
        """``feeds`` as torch tensors (shared memory, made once)."""
        if self._torch is None:
            import torch

            self._torch = {k: torch.from_numpy(v) for k, v in self.feeds.items()}
        return self._torch

    @property
    def key(self) -> str:
        """``b{batch}-l{length}``."""
        return f"b{self.batch}-l{self.length}"


def make_feeds(cfg, manifest: Manifest, batch: int, length: int, seed: int = 0) -> dict[str, np.ndarray]:
    """Contract-valid random model inputs padded to exactly ``length``."""
    from dfma.export.random_feeds import random_inputs

    rng = np.random.default_rng(seed + 1000 * batch + length)
    return random_inputs(cfg, special_token_ids(manifest), batch, length, crops=True, rng=rng, nan_absent=False)


def make_samples(text_encoder, words: list[str], batch: int, length: int, num_crops: int,
                 image_wh: tuple[int, int], crop_wh: tuple[int, int]) -> list[dict]:
    """``batch`` requests whose text encodes to exactly ``length`` pieces ([CLS] and [SEP] included)."""
    n_words = length - 2 - 4  # [CLS] [SEP] and the 4 entity markers
    if n_words < 6:
        raise ValueError(f"length {length} too short for the synthetic requests (needs >= 12)")
    if not words:
        raise ValueError("the tokenizer has no plain single-piece words to build requests from")
    out = []
    for row in range(batch):
        main, crops = _images(*image_wh, *crop_wh, num_crops, row)
        sentence = [words[(row * 31 + i * 7) % len(words)] for i in range(n_words)]
        enc = text_encoder.encode_words(sentence, HEAD, TAIL)
        # words the tokenizer splits after all: pad or trim until the row has exactly `length` pieces
        while len(enc.input_ids) != length:
            if len(enc.input_ids) > length and len(sentence) > 7:
                sentence.pop()
            else:
                sentence.append(words[0])
            enc = text_encoder.encode_words(sentence, HEAD, TAIL)
            if len(sentence) > 4 * length:
                raise ValueError(f"cannot build a request of exactly {length} pieces")
        out.append({"words": sentence, "head": list(HEAD), "tail": list(TAIL), "image": main,
                    "crops": list(crops), "id": row})
    return out


def eager_features(pre, requests: list[dict]) -> list:
    """The features of one call's ``requests`` as ``dfma.runtime`` prepares them for the eager rows: an image
    given twice in one call is decoded once (the runtime's per-call memo)."""
    decoded: dict[int, object] = {}
    features = []
    for r in requests:
        text = pre.prepare_text(r)
        key = id(r.get("image"))
        if key not in decoded:
            decoded[key] = pre.add_images(text)
        f = decoded[key]
        features.append(type(f)(text[1], f.pixel_values, f.image_mask, r.get("id")))
    return features
