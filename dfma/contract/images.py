"""Image preprocessing of contract section 3 (torch-free).

decode (refusing images over ``max_image_pixels`` from the header, before the pixels are decoded)
-> 8-bit RGB (alpha dropped, grey replicated, no EXIF rotation) -> resize so the shorter side is
``resize_size`` (Pillow bilinear) -> center crop ``S x S`` -> ``(pixel / 255 - mean) / std`` in float32,
layout ``3 x S x S``. Absent images and crops are zeros with mask 0.

Files on disk: the post's image is ``images_dir/<img_id>``; its object crops live in ``crops_dir`` and
are named after the image's stem: crops of ``X.jpg`` are ``X-0.<ext>``, ``X-1.<ext>``, ``X-2.<ext>``
(the HVPNeT "aux image" layout), see :func:`find_crops`.
"""
from __future__ import annotations

import io
import os
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Union

import numpy as np
from PIL import Image, UnidentifiedImageError

from dfma.contract.errors import ImageError, InputError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000
CROP_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".JPG", ".JPEG", ".PNG")

ImageSource = Union[str, os.PathLike, bytes, bytearray, memoryview, Image.Image, np.ndarray]


def _describe(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        return str(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    return f"<{type(source).__name__}>"


class ImagePreprocessor:
    """Turns one image (path, bytes, PIL image or RGB uint8 array) into a normalised ``(3, S, S)`` array."""

    def __init__(self, image_size: int, resize_size: int, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS):
        """``image_size`` = S (crop side), ``resize_size`` = shorter side after resizing (>= S)."""
        for name, v in (("image_size", image_size), ("resize_size", resize_size),
                        ("max_image_pixels", max_image_pixels)):
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise InputError(f"must be a positive int, got {v!r}", field=name)
        if resize_size < image_size:
            raise InputError(f"must be >= image_size {image_size}, got {resize_size}", field="resize_size")
        if len(mean) != 3 or len(std) != 3 or any(s == 0 for s in std):
            raise InputError(f"mean and std need 3 values, std non-zero: {mean!r} {std!r}", field="std")
        self.image_size = image_size
        self.resize_size = resize_size
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.max_image_pixels = max_image_pixels
        self._mean = np.asarray(self.mean, dtype=np.float32)
        self._std = np.asarray(self.std, dtype=np.float32)

    # ------------------------------------------------------------ decoding

    def _check_pixels(self, size: tuple[int, int], name: str) -> None:
        w, h = size
        if w <= 0 or h <= 0:
            raise ImageError(f"{name}: empty image ({w}x{h})", field="image")
        if w * h > self.max_image_pixels:
            raise ImageError(f"{name}: {w}x{h} = {w * h} pixels exceeds the limit of "
                             f"{self.max_image_pixels}", field="image")

    def _from_array(self, arr: np.ndarray) -> Image.Image:
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            raise ImageError(f"expected a uint8 array of shape (H, W, 3) in RGB order, got shape "
                             f"{arr.shape} dtype {arr.dtype}", field="image")
        self._check_pixels((arr.shape[1], arr.shape[0]), "array")
        return Image.fromarray(np.ascontiguousarray(arr))

    def decode(self, source: ImageSource) -> Image.Image:
        """Decode ``source`` to an 8-bit RGB PIL image; raises ImageError naming the source."""
        if isinstance(source, np.ndarray):
            return self._from_array(source)
        name = _describe(source)
        if isinstance(source, Image.Image):
            return self._decode_opened(source, name)
        if isinstance(source, (bytes, bytearray, memoryview)):
            fp: Any = io.BytesIO(bytes(source))
        elif isinstance(source, (str, os.PathLike)):
            path = Path(source)
            if not path.is_file():
                raise ImageError(f"{name}: no such image file", field="image")
            fp = path
        else:
            raise ImageError(f"unsupported image source {type(source).__name__} (expected a path, "
                             "bytes, a PIL image or a uint8 (H, W, 3) array)", field="image")
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(fp)  # lazy: reads the header only
        except UnidentifiedImageError:
            raise ImageError(f"{name}: not a recognised image file", field="image") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageError(f"{name}: refused as a decompression bomb ({e})", field="image") from None
        except OSError as e:
            raise ImageError(f"{name}: cannot open ({e})", field="image") from None
        with img:
            return self._decode_opened(img, name)

    def _decode_opened(self, img: Image.Image, name: str) -> Image.Image:
        self._check_pixels(img.size, name)  # from the header: nothing decoded yet
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img.load()
                return img.convert("RGB")
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageError(f"{name}: refused as a decompression bomb ({e})", field="image") from None
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise ImageError(f"{name}: cannot decode, truncated or corrupt ({e})", field="image") from None

    # ------------------------------------------------------------ transform

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """(w, h) after resizing the shorter side to ``resize_size`` (longer side truncated)."""
        r = self.resize_size
        if width <= height:
            return r, int(r * height / width)
        return int(r * width / height), r

    def transform(self, img: Image.Image) -> np.ndarray:
        """Resize, center-crop and normalise an RGB image: float32 ``(3, S, S)``."""
        w, h = self.resized_size(*img.size)
        img = img.resize((w, h), Image.BILINEAR)
        s = self.image_size
        top, left = (h - s) // 2, (w - s) // 2
        pixels = np.asarray(img, dtype=np.uint8)[top:top + s, left:left + s]
        x = pixels.astype(np.float32) / np.float32(255.0)
        x = (x - self._mean) / self._std
        return np.ascontiguousarray(x.transpose(2, 0, 1))

    def load(self, source: ImageSource) -> np.ndarray:
        """Decode and transform one image: float32 ``(3, S, S)``; raises ImageError when unusable."""
        return self.transform(self.decode(source))

    def stack(self, main: ImageSource | None, crops: Sequence[ImageSource | None] = (),
              num_crops: int = 3) -> tuple[np.ndarray, np.ndarray]:
        """Main image + up to ``num_crops`` crops -> ``pixel_values`` float32 ``(1+num_crops, 3, S, S)``
        and ``image_mask`` int64 ``(1+num_crops,)``; ``None`` = absent (zeros, mask 0)."""
        crops = list(crops)
        if len(crops) > num_crops:
            raise InputError(f"got {len(crops)} crops, at most {num_crops} allowed", field="crops")
        s = self.image_size
        pixels = np.zeros((1 + num_crops, 3, s, s), dtype=np.float32)
        mask = np.zeros((1 + num_crops,), dtype=np.int64)
        for slot, source in enumerate([main, *crops]):
            if source is not None:
                pixels[slot] = self.load(source)
                mask[slot] = 1
        return pixels, mask


# ---------------------------------------------------------------- files

def _plain_name(img_id: str) -> str:
    if (not isinstance(img_id, str) or not img_id or img_id in (".", "..") or "/" in img_id
            or "\\" in img_id or "\0" in img_id):
        raise InputError(f"must be a plain file name, got {img_id!r}", field="img_id")
    return img_id


def find_image(images_dir: str | os.PathLike, img_id: str) -> Path | None:
    """``images_dir/img_id`` when it is a file, else None; ``img_id`` must be a plain file name."""
    path = Path(images_dir) / _plain_name(img_id)
    return path if path.is_file() else None


def find_crops(crops_dir: str | os.PathLike, img_id: str, num_crops: int = 3) -> list[Path | None]:
    """Crop files of ``img_id``, one entry per slot ``k = 0..num_crops-1`` (None where absent).

    Convention: the crops of ``X.jpg`` are ``crops_dir/X-k.<ext>`` with ``<ext>`` tried in the order
    of ``CROP_EXTENSIONS`` (``.jpg`` first); the stem is ``img_id`` without its last extension.
    """
    stem = Path(_plain_name(img_id)).stem
    folder = Path(crops_dir)
    found: list[Path | None] = []
    for k in range(num_crops):
        hit = None
        for ext in CROP_EXTENSIONS:
            candidate = folder / f"{stem}-{k}{ext}"
            if candidate.is_file():
                hit = candidate
                break
        found.append(hit)
    return found
