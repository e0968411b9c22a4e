"""Real photographs for calibrating and checking the image path when a dataset's own images are absent.

scikit-image's wheel ships a dozen colour photographs (``skimage/data``: astronaut, chelsea, coffee,
rocket, motorcycle pair, ...). :func:`photo_slots` draws seeded random crops and flips of them: a "post
image" and up to ``num_crops`` smaller "object crops" of the same photo, as many as asked. Without
scikit-image (``pip install 'dfma[export]'`` brings it) :func:`available` is False and callers say so.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import numpy as np

PHOTOS = ("astronaut.png", "chelsea.png", "coffee.png", "rocket.jpg", "motorcycle_left.png",
          "motorcycle_right.png", "hubble_deep_field.jpg", "retina.jpg", "ihc.png")  # photographs, not drawings


def _data_dir() -> Path | None:
    try:
        import importlib.util

        spec = importlib.util.find_spec("skimage")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "data"
    return folder if folder.is_dir() else None


@lru_cache(maxsize=1)
def photos() -> tuple[tuple[str, np.ndarray], ...]:
    """``(name, HxWx3 uint8)`` of every colour photo found (empty without scikit-image)."""
    from PIL import Image

    folder = _data_dir()
    out = []
    for name in PHOTOS if folder is not None else ():
        path = folder / name
        if path.is_file():
            with Image.open(path) as im:
                rgb = np.asarray(im.convert("RGB"))
            if min(rgb.shape[:2]) >= 64:
                out.append((name, rgb))
    return tuple(out)


def available() -> bool:
    """Whether any photo is there."""
    return bool(photos())


def source() -> str:
    """What the image ranges and golden images came from, for the manifest."""
    names = [n for n, _ in photos()]
    return (f"scikit-image sample photos ({len(names)}: {', '.join(names)}), seeded random crops and flips"
            if names else "none (scikit-image not installed)")


def _crop(rng: np.random.Generator, image: np.ndarray, low: float, high: float) -> np.ndarray:
    h, w = image.shape[:2]
    side = int(min(h, w) * rng.uniform(low, high))
    ch, cw = max(16, int(side * rng.uniform(0.75, 1.0))), max(16, side)
    top, left = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
    out = image[top:top + ch, left:left + cw]
    return np.ascontiguousarray(out[:, ::-1] if rng.random() < 0.5 else out)


def photo_slots(n: int, num_crops: int, *, seed: int = 0) -> list[tuple[np.ndarray, list[np.ndarray]]]:
    """``n`` draws of ``(post image, [object crops])``: a random crop (60-100 % of the short side) of a
    photo, and 0..``num_crops`` smaller crops (25-50 %) of the same photo; empty without photos."""
    pool = photos()
    if not pool:
        return []
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        _, image = pool[int(rng.integers(len(pool)))]
        crops = [_crop(rng, image, 0.25, 0.5) for _ in range(int(rng.integers(0, num_crops + 1)))]
        out.append((_crop(rng, image, 0.6, 1.0), crops))
    return out
