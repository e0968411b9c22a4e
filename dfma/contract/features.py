"""Samples -> model inputs, with the one preprocessing implementation of the project (torch-free).

Text goes through :class:`dfma.contract.text.TextEncoder` and images through :class:`dfma.contract.images.ImagePreprocessor`,
the same code that training and export use, configured from the bundle's ``preprocess`` section. Nothing
here holds per-request state, so one :class:`Preprocessor` serves any number of threads.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from tokenizers import Tokenizer

from dfma.contract.errors import BundleError, InputError
from dfma.contract.images import DEFAULT_MAX_IMAGE_PIXELS, ImagePreprocessor
from dfma.contract.limits import Limits, check_text, check_words
from dfma.contract.manifest import Preprocess
from dfma.contract.samples import Sample, as_sample
from dfma.contract.text import Encoded, TextEncoder, text_to_words


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
        """Wrap a text encoder and an image preprocessor; ``num_crops`` crop slots follow the main image.

        The request limits (text length, word count) are the image preprocessor's ``limits``.
        """
        self.text = text
        self.images = images
        self.num_crops = num_crops

    @property
    def limits(self) -> Limits:
        """The limits every request is checked against (:mod:`dfma.contract.limits`)."""
        return self.images.limits

    @classmethod
    def from_manifest(cls, preprocess: Preprocess | Mapping, tokenizer: Tokenizer,
                      limits: Limits | None = None) -> Preprocessor:
        """Configure from a manifest ``preprocess`` section (typed, ``Manifest.preprocess``, or its JSON), the
        bundle's tokenizer and request limits."""
        if isinstance(preprocess, Preprocess):
            preprocess = preprocess.to_json()
        try:
            text = TextEncoder(tokenizer, int(_need(preprocess, "max_length")))
            images = ImagePreprocessor(
                int(_need(preprocess, "image_size")), int(_need(preprocess, "resize_size")),
                tuple(_need(preprocess, "mean")), tuple(_need(preprocess, "std")),
                int(preprocess.get("max_image_pixels", DEFAULT_MAX_IMAGE_PIXELS)), limits)
            num_crops = int(_need(preprocess, "num_crops"))
            recorded = {k: v.get("id") for k, v in (preprocess.get("special_tokens") or {}).items()
                        if isinstance(v, Mapping)}
        except (InputError, TypeError, ValueError, OverflowError) as e:
            if isinstance(e, BundleError) or getattr(e, "field", None) == "limits":
                raise
            raise BundleError(f"manifest.json: invalid preprocess section ({e})") from None
        wrong = {k: (i, text.special.get(k)) for k, i in recorded.items() if text.special.get(k) != i}
        if wrong:
            raise BundleError(f"manifest.json: special token ids differ from tokenizer.json's "
                              f"(key: (manifest, tokenizer)) {wrong}")
        return cls(text, images, num_crops)

    def encode_text(self, sample: Sample) -> Encoded:
        """The ``[CLS] ... [SEP]`` row of a sample (word spans or character spans), within the limits."""
        if sample.words is not None:
            check_words(sample.words, self.limits)
            return self.text.encode_words(sample.words, sample.head, sample.tail)
        check_text(sample.text, self.limits)
        words, head, tail = text_to_words(sample.text, sample.head, sample.tail)
        check_words(words, self.limits, field="text")
        return self.text.encode_words(words, head, tail)

    def prepare(self, request: Any) -> Features:
        """Check and preprocess one request (any form :func:`as_sample` accepts).

        Raises InputError / ImageError naming the field; nothing is kept between calls.
        """
        return self.add_images(self.prepare_text(request))

    def prepare_text(self, request: Any) -> tuple[Sample, Encoded]:
        """The cheap half of :meth:`prepare`: the request read, its text encoded and its crops counted."""
        sample = as_sample(request)
        encoded = self.encode_text(sample)
        if len(sample.crops) > self.num_crops:
            raise InputError(f"got {len(sample.crops)} crops, at most {self.num_crops} allowed", field="crops")
        return sample, encoded

    def add_images(self, text: tuple[Sample, Encoded], load: Callable[[Any], np.ndarray] | None = None) -> Features:
        """The other half: decode the images of a :meth:`prepare_text` result into :class:`Features`.

        ``load`` (source -> float32 ``(3, S, S)``) replaces the image preprocessor's ``load``, e.g. a
        per-call :class:`dfma.runtime.decoded_images.DecodedImages` that decodes a repeated source once.
        A bad crop's ImageError names ``crops[i]`` (:meth:`ImagePreprocessor.stack`).
        """
        sample, encoded = text
        pixels, mask = self.images.stack(sample.image, sample.crops, self.num_crops, load)
        return Features(encoded, pixels, mask, sample.id)

    def collate(self, batch: Sequence[Features]) -> dict[str, np.ndarray]:
        """Stack features into the four contract inputs, rows right-padded to the longest member."""
        text, images = self.collate_text(batch), self.collate_images(batch)
        return {"input_ids": text["input_ids"], "attention_mask": text["attention_mask"], **images}

    def collate_text(self, batch: Sequence[Features]) -> dict[str, np.ndarray]:
        """The text stage's inputs besides the features: ``input_ids``, ``attention_mask`` (padded to the
        longest row) and ``image_mask``."""
        input_ids, attention_mask = self.text.pad_batch([f.encoded for f in batch])
        return {"input_ids": input_ids, "attention_mask": attention_mask,
                "image_mask": np.stack([f.image_mask for f in batch])}

    def collate_images(self, batch: Sequence[Features]) -> dict[str, np.ndarray]:
        """The vision stage's inputs: ``pixel_values`` and ``image_mask``."""
        return {"pixel_values": np.stack([f.pixel_values for f in batch]),
                "image_mask": np.stack([f.image_mask for f in batch])}
