"""Image preprocessing of contract section 3 (torch-free).

decode (refusing, before the pixels are decoded, what :mod:`dfma.contract.limits` bounds: a file that is
not a regular file or is over ``max_image_bytes``, PNG text / ICC chunks that inflate past their limits,
a JPEG of more than ``max_jpeg_scans`` scans, and from the header a side, aspect ratio, pixel count or resized size over its limit) -> 8-bit RGB (alpha dropped, grey replicated, no EXIF rotation) -> resize so the shorter side is
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
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from dfma.contract.errors import ImageError, InputError, with_field
from dfma.contract.image_files import read_image_file
from dfma.contract.jpeg_scans import check_jpeg_scans
from dfma.contract.limits import (
    DEFAULT_LIMITS,
    Limits,
    check_image_bytes,
    check_image_size,
    check_resized_size,
)
from dfma.contract.png_chunks import check_ancillary

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
DEFAULT_MAX_IMAGE_PIXELS = 50_000_000
IMAGE_FORMATS = ("JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF")  # the Pillow plugins tried (never EPS & co)
CROP_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".JPG", ".JPEG", ".PNG")

ImageSource = str | os.PathLike | bytes | bytearray | memoryview | Image.Image | np.ndarray


def _formats() -> list[str]:
    """The IMAGE_FORMATS this Pillow build can open."""
    Image.init()
    return [f for f in IMAGE_FORMATS if f in Image.OPEN]


def _describe(source: Any) -> str:
    if isinstance(source, (str, os.PathLike)):
        name = str(source)
        return name if len(name) <= 200 else f"{name[:120]}...{name[-60:]} ({len(name)} characters)"
    if isinstance(source, (bytes, bytearray, memoryview)):
        return f"<{len(source)} bytes>"
    return f"<{type(source).__name__}>"


class ImagePreprocessor:
    """Turns one image (path, bytes, PIL image or RGB uint8 array) into a normalised ``(3, S, S)`` array."""

    def __init__(self, image_size: int, resize_size: int, mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD, max_image_pixels: int = DEFAULT_MAX_IMAGE_PIXELS,
                 limits: Limits | None = None):
        """``image_size`` = S (crop side), ``resize_size`` = shorter side after resizing (>= S).

        ``max_image_pixels`` (the manifest's) and ``limits`` (:class:`dfma.contract.limits.Limits`,
        default its defaults) bound the work per image; the smaller pixel limit applies.
        """
        for name, v in (("image_size", image_size), ("resize_size", resize_size),
                        ("max_image_pixels", max_image_pixels)):
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise InputError(f"must be a positive int, got {v!r}", field=name)
        if resize_size < image_size:
            raise InputError(f"must be >= image_size {image_size}, got {resize_size}", field="resize_size")
        if limits is not None and not isinstance(limits, Limits):
            raise InputError(f"expected a Limits, got {type(limits).__name__}", field="limits")
        if len(mean) != 3 or len(std) != 3 or any(s == 0 for s in std):
            raise InputError(f"mean and std need 3 values, std non-zero: {mean!r} {std!r}", field="std")
        self.image_size = image_size
        self.resize_size = resize_size
        self.mean = tuple(float(m) for m in mean)
        self.std = tuple(float(s) for s in std)
        self.limits = limits or DEFAULT_LIMITS
        self.max_image_pixels = min(max_image_pixels, self.limits.max_image_pixels)
        self._mean = np.asarray(self.mean, dtype=np.float32)
        self._std = np.asarray(self.std, dtype=np.float32)

    # ------------------------------------------------------------ decoding

    def _check_size(self, size: tuple[int, int], name: str) -> None:
        """Every header limit, and the size the resize step would make (ImageError before any decoding)."""
        w, h = size
        check_image_size(w, h, name, self.limits, self.max_image_pixels)
        check_resized_size(*self.resized_size(w, h), name, self.limits)

    def _from_array(self, arr: np.ndarray) -> Image.Image:
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            raise ImageError(f"expected a uint8 array of shape (H, W, 3) in RGB order, got shape "
                             f"{arr.shape} dtype {arr.dtype}", field="image")
        self._check_size((arr.shape[1], arr.shape[0]), "array")
        return Image.fromarray(np.ascontiguousarray(arr))

    def read(self, source: ImageSource) -> bytes:
        """The encoded bytes of a path or bytes-like source, within ``max_image_bytes`` (ImageError)."""
        name = _describe(source)
        if isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
            check_image_bytes(len(data), name, self.limits)
        elif isinstance(source, (str, os.PathLike)):
            data = read_image_file(source, self.limits)
        else:
            raise ImageError(f"unsupported image source {type(source).__name__} (expected a path, "
                             "bytes, a PIL image or a uint8 (H, W, 3) array)", field="image")
        check_ancillary(data, name, self.limits)
        check_jpeg_scans(data, name, self.limits)
        return data

    def decode(self, source: ImageSource) -> Image.Image:
        """Decode ``source`` to an 8-bit RGB PIL image; raises ImageError naming the source."""
        if isinstance(source, np.ndarray):
            return self._from_array(source)
        name = _describe(source)
        if isinstance(source, Image.Image):
            return self._decode_opened(source, name)
        data = self.read(source)
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(data), formats=_formats())  # lazy: reads the header only
        except UnidentifiedImageError:
            raise ImageError(f"{name}: not a recognised image file", field="image") from None
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageError(f"{name}: refused as a decompression bomb ({e})", field="image") from None
        except MemoryError:
            raise ImageError(f"{name}: out of memory reading the header", field="image") from None
        except Exception as e:  # noqa: BLE001  Pillow's plugins raise OSError, ValueError (text chunk limits), SyntaxError, ...
            raise ImageError(f"{name}: cannot open ({type(e).__name__}: {e})", field="image") from None
        with img:
            return self._decode_opened(img, name)

    def _decode_opened(self, img: Image.Image, name: str) -> Image.Image:
        self._check_size(img.size, name)  # from the header: nothing decoded yet
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img.load()
                return img.convert("RGB")
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
            raise ImageError(f"{name}: refused as a decompression bomb ({e})", field="image") from None
        except MemoryError:
            raise ImageError(f"{name}: out of memory decoding", field="image") from None
        except (OSError, SyntaxError, ValueError, EOFError) as e:
            raise ImageError(f"{name}: cannot decode, truncated or corrupt ({e})", field="image") from None
        except Exception as e:  # noqa: BLE001  a plugin's IndexError, struct.error, TypeError on a malformed file
            raise ImageError(f"{name}: cannot decode, truncated or corrupt ({type(e).__name__}: {e})",
                             field="image") from None

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

    def stack(self, main: ImageSource | None, crops: Sequence[ImageSource | None] = (), num_crops: int = 3,
              load: Callable[[ImageSource], np.ndarray] | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Main image + up to ``num_crops`` crops -> ``pixel_values`` float32 ``(1+num_crops, 3, S, S)``
        and ``image_mask`` int64 ``(1+num_crops,)``; ``None`` = absent (zeros, mask 0).

        Each present source goes through ``load`` (default :meth:`load`; e.g. a per-call
        :class:`dfma.runtime.decoded_images.DecodedImages` that decodes a repeated source once). A crop
        that cannot be used raises its ImageError with the field ``crops[i]`` (the main image's: ``image``).
        """
        crops = list(crops)
        if len(crops) > num_crops:
            raise InputError(f"got {len(crops)} crops, at most {num_crops} allowed", field="crops")
        load = self.load if load is None else load
        s = self.image_size
        pixels = np.zeros((1 + num_crops, 3, s, s), dtype=np.float32)
        mask = np.zeros((1 + num_crops,), dtype=np.int64)
        for slot, source in enumerate([main, *crops]):
            if source is None:
                continue
            try:
                pixels[slot] = load(source)
            except InputError as e:
                if slot == 0:
                    raise
                raise with_field(e, f"crops[{slot - 1}]") from None
            mask[slot] = 1
        return pixels, mask


# ---------------------------------------------------------------- files

def _plain_name(img_id: str) -> str:
    if (not isinstance(img_id, str) or not img_id or img_id in (".", "..") or "/" in img_id
            or "\\" in img_id or "\0" in img_id):
        raise InputError(f"must be a plain file name, got {img_id!r}", field="img_id")
    return img_id


def _is_file(path: Path) -> bool:
    """``path.is_file()``, False where the OS refuses the name (too long, invalid)."""
    try:
        return path.is_file()
    except (OSError, ValueError):
        return False


def find_image(images_dir: str | os.PathLike, img_id: str) -> Path | None:
    """``images_dir/img_id`` when it is a file, else None; ``img_id`` must be a plain file name."""
    path = Path(images_dir) / _plain_name(img_id)
    return path if _is_file(path) else None


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
            if _is_file(candidate):
                hit = candidate
                break
        found.append(hit)
    return found
