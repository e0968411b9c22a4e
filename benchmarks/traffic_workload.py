"""MNRE-like traffic: relation requests grouped by post, with as many entity pairs per post as the data has.

Relation extraction asks the same post one question per entity pair. :func:`mnre_posts` reads the MNRE
validation split and keeps its grouping (the pairs of one ``img_id`` stay together, in file order: 1.74
pairs per image there, up to 21); :func:`sample_posts` draws a seeded subset of posts; every post gets its
own photo-like JPEG and crops (:func:`dfma.benchmarks.workload.synthetic_jpeg`: MNRE's images are not
here), so no image repeats across posts, only within one. :func:`synthetic_posts` stands in when the data
is absent, with the same mean pairs per post (and says so).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from dfma.benchmarks.workload import synthetic_jpeg

MNRE_VAL_PAIRS_PER_IMAGE = 1.74  # DFMA.md: 1.74 pairs per image in the validation split


@dataclass(frozen=True)
class Post:
    """One post: its image, its crops, and the relation requests asked of it."""

    img_id: str
    requests: tuple[dict, ...]


def mnre_posts(path: Path) -> list[list]:
    """MNRE records grouped by ``img_id``, groups in order of first appearance, records in file order."""
    from dfma.mnre import read_mnre

    groups: dict[str, list] = {}
    for rec in read_mnre(path):
        groups.setdefault(rec.img_id, []).append(rec)
    return list(groups.values())


def synthetic_groups(n: int, seed: int) -> list[list[dict]]:
    """``n`` groups of plain word requests with 1 + Poisson(0.74) pairs each (when MNRE is absent)."""
    rng = np.random.default_rng(seed)
    words = ["the", "team", "met", "the", "mayor", "in", "paris", "on", "monday", "and", "they", "talked"]
    groups = []
    for g in range(n):
        pairs = 1 + int(rng.poisson(MNRE_VAL_PAIRS_PER_IMAGE - 1))
        spans = [(1, 2), (4, 5), (6, 7), (8, 9), (10, 11)]
        groups.append([{"words": list(words), "head": list(spans[i % 5]), "tail": list(spans[(i + 1) % 5])}
                       for i in range(pairs)])
    return groups


def _request(rec, post: int, k: int, image: bytes, crops: Sequence[bytes]) -> dict:
    if isinstance(rec, dict):
        base = dict(rec)
    else:
        base = {"words": list(rec.words), "head": list(rec.head), "tail": list(rec.tail)}
    return {**base, "image": image, "crops": list(crops), "id": f"p{post}-{k}"}


def sample_posts(groups: list[list], count: int, *, seed: int, num_crops: int,
                 image_wh: tuple[int, int] = (500, 375)) -> list[Post]:
    """``count`` posts drawn without replacement (seeded), each with its own JPEG and ``num_crops`` crops."""
    rng = np.random.default_rng(seed)
    picks = rng.choice(len(groups), size=min(count, len(groups)), replace=False)
    crop_wh = (image_wh[0] // 3, image_wh[1] // 3)
    posts = []
    for i, g in enumerate(sorted(int(p) for p in picks)):
        image = synthetic_jpeg(10_000 + g, *image_wh)
        crops = [synthetic_jpeg(20_000 + 8 * g + c, *crop_wh) for c in range(num_crops)]
        recs = groups[g]
        img_id = getattr(recs[0], "img_id", f"synthetic-{g}")
        posts.append(Post(img_id, tuple(_request(r, i, k, image, crops) for k, r in enumerate(recs))))
    return posts


def pairs_per_post(posts: Sequence[Post]) -> dict:
    """Mean, max and total of the requests per post of a sample."""
    counts = [len(p.requests) for p in posts]
    return {"posts": len(counts), "requests": int(sum(counts)), "mean": round(float(np.mean(counts)), 3),
            "max": int(max(counts)), "histogram": {str(k): counts.count(k) for k in sorted(set(counts))}}
