"""PyTorch dataset and collate function for MNRE training and evaluation.

Texts are encoded once, up front (``encode_batch``); images are read lazily per item. Image policy:

- a missing main image or crop (no file) -> that slot is zeros with ``image_mask`` 0; counted at
  construction in ``missing_images`` / ``missing_crops`` (``image_report()`` prints them);
- an unreadable image or crop (corrupt, truncated, not an image, too large) -> the sample is **kept**
  with that slot masked (zeros, mask 0); the path and reason are recorded in ``image_errors`` and logged
  once per path. With DataLoader workers the record lives in each worker process; call
  :meth:`MNREDataset.scan_images` first for a complete, deterministic report in the main process.

Without ``images_dir`` no per-item pixel arrays exist; :func:`collate` allocates the zeros per batch.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from dfma.contract.errors import ImageError
from dfma.contract.images import ImagePreprocessor, find_crops, find_image
from dfma.contract.labels import LabelMap
from dfma.mnre import MNRESample
from dfma.contract.text import TextEncoder

log = logging.getLogger(__name__)


class MNREDataset(Dataset):
    """MNRE samples -> items ``{input_ids, label, pixel_values | None, image_mask, image_size, index}``."""

    def __init__(self, samples: Sequence[MNRESample], text_encoder: TextEncoder, label_map: LabelMap,
                 image_preprocessor: ImagePreprocessor, images_dir: str | os.PathLike | None = None,
                 crops_dir: str | os.PathLike | None = None, num_crops: int = 3):
        """Encode every sample's text and locate its image files (nothing is decoded here)."""
        self.samples = list(samples)
        self.label_map = label_map
        self.image_preprocessor = image_preprocessor
        self.num_crops = num_crops
        self.images_dir = Path(images_dir) if images_dir is not None else None
        self.crops_dir = Path(crops_dir) if crops_dir is not None else None
        for name, folder in (("images_dir", self.images_dir), ("crops_dir", self.crops_dir)):
            if folder is not None and not folder.is_dir():
                raise FileNotFoundError(f"{name} {folder} is not a folder")
        self.labels = [label_map.id(s.relation) for s in self.samples]
        encoded = text_encoder.encode_words_batch([(s.words, s.head, s.tail) for s in self.samples])
        self.input_ids = [np.asarray(e.input_ids, dtype=np.int64) for e in encoded]
        self.pad_id = text_encoder.pad_id
        # image files per sample: slot 0 = main image, slots 1.. = crops; None = absent
        self.image_paths: list[list[Path | None]] = []
        self.missing_images = 0
        self.missing_crops = 0
        self.missing_image_ids: list[str] = []
        for s in self.samples:
            slots: list[Path | None] = [None] * (1 + num_crops)
            if self.images_dir is not None:
                slots[0] = find_image(self.images_dir, s.img_id)
                if slots[0] is None:
                    self.missing_images += 1
                    self.missing_image_ids.append(s.img_id)
            if self.crops_dir is not None:
                crops = find_crops(self.crops_dir, s.img_id, num_crops)
                slots[1:] = crops
                self.missing_crops += sum(c is None for c in crops)
            self.image_paths.append(slots)
        self.image_errors: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, path: Path) -> np.ndarray | None:
        try:
            return self.image_preprocessor.load(path)
        except ImageError as e:
            key = str(path)
            if key not in self.image_errors:
                self.image_errors[key] = str(e)
                log.warning("image slot masked: %s", e)
            return None

    def __getitem__(self, index: int) -> dict[str, Any]:
        """One item; ``pixel_values`` is None when no slot has an image (collate fills zeros)."""
        slots = self.image_paths[index]
        mask = np.zeros((1 + self.num_crops,), dtype=np.int64)
        pixels = None
        for k, path in enumerate(slots):
            if path is None:
                continue
            x = self._load(path)
            if x is None:
                continue
            if pixels is None:
                s = self.image_preprocessor.image_size
                pixels = np.zeros((1 + self.num_crops, 3, s, s), dtype=np.float32)
            pixels[k] = x
            mask[k] = 1
        return {"input_ids": self.input_ids[index], "label": self.labels[index],
                "pixel_values": pixels, "image_mask": mask,
                "image_size": self.image_preprocessor.image_size, "pad_id": self.pad_id,
                "index": index}

    def scan_images(self) -> dict[str, str]:
        """Decode every referenced image once; returns (and records) path -> reason for unusable ones."""
        seen: set[Path] = set()
        for slots in self.image_paths:
            for path in slots:
                if path is not None and path not in seen:
                    seen.add(path)
                    self._load(path)
        return dict(self.image_errors)

    def image_report(self) -> str:
        """A short human-readable account of missing and unreadable images."""
        n = len(self.samples)
        lines = []
        if self.images_dir is None:
            lines.append(f"no images_dir: all {n} main images absent (mask 0)")
        else:
            lines.append(f"main images missing: {self.missing_images}/{n}")
            if self.missing_image_ids:
                lines.append(f"  e.g. {', '.join(self.missing_image_ids[:3])}")
        if self.crops_dir is None:
            lines.append("no crops_dir: all crops absent (mask 0)")
        else:
            lines.append(f"crops missing: {self.missing_crops}/{n * self.num_crops}")
        lines.append(f"unreadable images (slot masked): {len(self.image_errors)}")
        for path, reason in list(self.image_errors.items())[:3]:
            lines.append(f"  {reason}")
        return "\n".join(lines)


def collate(items: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
    """Items -> ``input_ids`` / ``attention_mask`` int64 [B, L] (right-padded), ``pixel_values``
    float32 [B, 1+A, 3, S, S], ``image_mask`` int64 [B, 1+A], ``labels`` int64 [B]."""
    if not items:
        raise ValueError("cannot collate an empty batch")
    b = len(items)
    width = max(len(it["input_ids"]) for it in items)
    pad_id = int(items[0].get("pad_id", 0))
    input_ids = torch.full((b, width), pad_id, dtype=torch.int64)
    attention_mask = torch.zeros((b, width), dtype=torch.int64)
    for r, it in enumerate(items):
        n = len(it["input_ids"])
        input_ids[r, :n] = torch.as_tensor(it["input_ids"], dtype=torch.int64)
        attention_mask[r, :n] = 1
    slots = len(items[0]["image_mask"])
    s = int(items[0]["image_size"])
    pixel_values = torch.zeros((b, slots, 3, s, s), dtype=torch.float32)
    image_mask = torch.zeros((b, slots), dtype=torch.int64)
    for r, it in enumerate(items):
        image_mask[r] = torch.as_tensor(it["image_mask"], dtype=torch.int64)
        if it["pixel_values"] is not None:
            pixel_values[r] = torch.from_numpy(it["pixel_values"])
    labels = torch.tensor([int(it["label"]) for it in items], dtype=torch.int64)
    return {"input_ids": input_ids, "attention_mask": attention_mask, "pixel_values": pixel_values,
            "image_mask": image_mask, "labels": labels}
