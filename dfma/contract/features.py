"""Samples -> model inputs, with the one preprocessing implementation of the project (torch-free).

Text goes through :class:`dfma.contract.text.TextEncoder` and images through :class:`dfma.contract.images.ImagePreprocessor`,
the same code that training and export use, configured from the bundle's ``preprocess`` section. Nothing
here holds per-request state, so one :class:`Preprocessor` serves any number of threads.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from dfma.contract.errors import BundleError, InputError
from dfma.contract.images import DEFAULT_MAX_IMAGE_PIXELS, ImagePreprocessor
from dfma.contract.text import Encoded, TextEncoder

from dfma.contract.samples import Sample, as_sample


@dataclass(frozen=True)
class Features:
    """One preprocessed sample: the encoded row and its image slots (main image + crops)."""

    encoded: Encoded
    pixel_values: np.ndarray  # float32 (1 + num_crops, 3, S, S)
    image_mask: np.ndarray  # int64 (1 + num_crops,)
    id: Any = None


def _need(section: Mapping, key: str) -> Any:
    if key not in section:
        raise BundleError(f"manifest.json: preprocess has no {key!r}")
    return section[key]


class Preprocessor:
    """Turns requests into the contract's four input arrays, padded to the longest row of a batch."""

    def __init__(self, text: TextEncoder, images: ImagePreprocessor, num_crops: int):
        """Wrap a text encoder and an image preprocessor; ``num_crops`` crop slots follow the main image."""
        self.text = text
        self.images = images
        self.num_crops = num_crops

    @classmethod
    def from_manifest(cls, preprocess: Mapping, tokenizer: Tokenizer) -> Preprocessor:
        """Configure from a manifest ``preprocess`` section and the bundle's tokenizer."""
        try:
            text = TextEncoder(tokenizer, int(_need(preprocess, "max_length")))
            images = ImagePreprocessor(
                int(_need(preprocess, "image_size")), int(_need(preprocess, "resize_size")),
                tuple(_need(preprocess, "mean")), tuple(_need(preprocess, "std")),
                int(preprocess.get("max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS)))
            num_crops = int(_need(preprocess, "num_crops"))
            recorded = {k: v.get("id") for k, v in (preprocess.get("special_tokens") or {}).items()
                        if isinstance(v, Mapping)}
        except (InputError, TypeError, ValueError) as e:
            if isinstance(e, BundleError):
                raise
            raise BundleError(f"manifest.json: invalid preprocess section ({e})") from None
        wrong = {k: (i, text.special.get(k)) for k, i in recorded.items() if text.special.get(k) != i}
        if wrong:
            raise BundleError(f"manifest.json: special token ids differ from tokenizer.json's "
                              f"(key: (manifest, tokenizer)) {wrong}")
        return cls(text, images, num_crops)

    def encode_text(self, sample: Sample) -> Encoded:
        """The ``[CLS] ... [SEP]`` row of a sample (word spans or character spans)."""
        if sample.words is not None:
            return self.text.encode_words(sample.words, sample.head, sample.tail)
        return self.text.encode_text(sample.text, sample.head, sample.tail)

    def prepare(self, request: Any) -> Features:
        """Check and preprocess one request (any form :func:`as_sample` accepts).

        Raises InputError / ImageError naming the field; nothing is kept between calls.
        """
        sample = as_sample(request)
        encoded = self.encode_text(sample)
        pixels, mask = self.images.stack(sample.image, sample.crops, self.num_crops)
        return Features(encoded, pixels, mask, sample.id)

    def collate(self, batch: Sequence[Features]) -> dict[str, np.ndarray]:
        """Stack features into the four contract inputs, rows right-padded to the longest member."""
        input_ids, attention_mask = self.text.pad_batch([f.encoded for f in batch])
        return {
            "input_ids": input_ids,
            "attention_mask": attention_mask,
            "pixel_values": np.stack([f.pixel_values for f in batch]),
            "image_mask": np.stack([f.image_mask for f in batch]),
        }
