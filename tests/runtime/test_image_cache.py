"""The bounded feature cache (runtime/image_cache.py) and the images decoded once per call (runtime/decoded_images.py):
hits give bit-identical logits, the size limit holds over many images, threads share one cache, each image
source is decoded once per call, describe() counts hits and misses."""
from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from fixtures_bundle import GOOD, jpeg_bytes, synthetic_image, tiny_bundle  # noqa: F401

import dfma.runtime as rt
from dfma.runtime.decoded_images import DecodedImages, source_key
from dfma.runtime.image_cache import MIB, ImageCache

WORDS = "rt @ap : obama meets merkel in berlin before the g20 summit in hamburg".split()


@pytest.fixture(scope="module")
def cached(tiny_bundle):
    with rt.load(tiny_bundle, threads=1, image_cache_mb=8) as ex:
        yield ex


def _requests(n: int, distinct: int = 6) -> list:
    """Requests over ``distinct`` posts (JPEG bytes, arrays, one with a crop), different entity pairs."""
    out = []
    for i in range(n):
        post = i % distinct
        h, t = i % 5, 5 + i % 7
        req = {"words": WORDS, "head": [h, h + 1], "tail": [t, t + 1]}
        if post % 3 == 0:
            req["image"] = jpeg_bytes(post, 50 + post, 60)
        elif post % 3 == 1:
            req["image"] = synthetic_image(post, 70, 40 + post)
            req["crops"] = [synthetic_image(100 + post, 30, 30)]
        out.append(req)  # post % 3 == 2: no image
    return out


# ---------------------------------------------------------------- the cache itself

def test_cache_never_holds_more_than_its_size():
    rng = np.random.default_rng(0)
    cache = ImageCache(100_000)
    for i in range(300):
        value = rng.standard_normal(int(rng.integers(1, 9000))).astype(np.float32)
        cache.put(i, value)
        assert cache.held_bytes() <= cache.capacity_bytes
        assert cache.stats()["bytes"] == cache.held_bytes()
    assert not cache.put("big", np.zeros(100_000 // 4 + 1, np.float32))  # larger than the cache: not stored
    assert cache.get("big") is None and cache.held_bytes() <= cache.capacity_bytes


def test_cache_is_lru_counts_and_copies():
    cache = ImageCache(3 * 400)
    arrays = {k: np.full(100, i, np.float32) for i, k in enumerate("abcd")}
    for k in "abc":
        assert cache.put(k, arrays[k])
    arrays["a"][:] = -1  # the cache holds its own copy
    assert cache.get("a")[0] == 0 and not cache.get("a").flags.writeable  # two hits
    cache.put("d", arrays["d"])  # evicts b, the least recently used
    assert cache.get("b") is None and cache.get("c") is not None and cache.get("d") is not None
    assert cache.stats() == {"capacity_bytes": 1200, "bytes": 1200, "entries": 3, "hits": 4, "misses": 1}
    assert ImageCache.of_megabytes(0.5).capacity_bytes == MIB // 2


def test_cache_under_threads_keeps_its_bound():
    cache = ImageCache(50_000)
    errors = []

    def work(seed: int):
        rng = np.random.default_rng(seed)
        for i in range(400):
            key = int(rng.integers(0, 60))
            got = cache.get(key)
            if got is None:
                cache.put(key, np.full(int(100 + key * 10), key, np.float32))
            elif got[0] != key:
                errors.append((key, got[0]))
            if cache.held_bytes() > cache.capacity_bytes:
                errors.append("over")

    threads = [threading.Thread(target=work, args=(s,)) for s in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors and cache.stats()["hits"] + cache.stats()["misses"] == 8 * 400


# ---------------------------------------------------------------- through the extractor

def test_a_hit_gives_bit_identical_logits(cached):
    before = cached.describe()["image_cache"]
    req = {"text": "Obama visits Paris with Merkel", "head": [0, 5], "tail": [13, 18], "image": jpeg_bytes(901)}
    miss = cached.predict(req)
    hit = cached.predict(req)
    after = cached.describe()["image_cache"]
    np.testing.assert_array_equal(hit.logits, miss.logits)
    assert after["misses"] == before["misses"] + 1 and after["hits"] == before["hits"] + 1
    batch = [{**req, "image": jpeg_bytes(902 + i % 3)} for i in range(7)]
    first, again = cached.logits(batch), cached.logits(batch)  # the same batch: misses, then hits
    np.testing.assert_array_equal(first, again)
    final = cached.describe()["image_cache"]
    assert final["misses"] == after["misses"] + 3 and final["hits"] == after["hits"] + 3


def test_cached_equals_uncached(tiny_bundle, cached):
    requests = _requests(18)
    with rt.load(tiny_bundle, threads=1) as plain:
        assert plain.describe()["image_cache"] is None
        want = plain.logits(requests)
    np.testing.assert_allclose(cached.logits(requests), want, atol=1e-5, rtol=0)
    np.testing.assert_allclose(cached.logits(requests), want, atol=1e-5, rtol=0)


def test_eight_threads_share_one_cached_extractor(tiny_bundle):
    requests = _requests(48, distinct=10)  # 7 posts with images + the no-image set: 8 distinct image sets
    with rt.load(tiny_bundle, threads=1, image_cache_mb=1) as ex:
        sequential = [ex.predict(r) for r in requests]
        with ThreadPoolExecutor(max_workers=8) as pool:
            for _ in range(2):
                parallel = list(pool.map(ex.predict, requests))
                for s, p in zip(sequential, parallel):
                    assert p.relation == s.relation
                    np.testing.assert_array_equal(p.logits, s.logits)
            batches = list(pool.map(lambda i: ex.predict_batch(requests[i:i + 5]), range(0, 40, 5)))
        for i, got in zip(range(0, 40, 5), batches):
            for g, s in zip(got, sequential[i:i + 5], strict=True):
                np.testing.assert_allclose(g.logits, s.logits, atol=1e-5, rtol=0)
        stats = ex.describe()["image_cache"]
        assert stats["entries"] == 8 and stats["hits"] > 0 and stats["bytes"] <= stats["capacity_bytes"]


def test_a_cache_of_n_mb_holds_at_most_n_mb_over_many_images(tiny_bundle):
    with rt.load(tiny_bundle, threads=1, image_cache_mb=0.25) as ex:
        cache = ex.image_cache
        per_image = int(np.prod(ex.manifest.stages.features.shape[1:])) * 4
        for i in range(40):
            ex.predict({**GOOD, "image": synthetic_image(2000 + i, 40 + i % 7, 50)})
            assert cache.held_bytes() <= 0.25 * MIB
        stats = ex.describe()["image_cache"]
        assert stats["entries"] == int(0.25 * MIB) // per_image and stats["misses"] == 40
        assert stats["bytes"] == cache.held_bytes() == stats["entries"] * per_image
    with rt.load(tiny_bundle, threads=1, image_cache_mb=per_image / MIB / 2) as ex:  # smaller than one entry
        for i in range(3):
            ex.predict({**GOOD, "image": synthetic_image(i)})
        assert ex.describe()["image_cache"]["entries"] == 0 and ex.image_cache.held_bytes() == 0


def test_the_whole_graph_has_no_cache(tiny_bundle):
    with rt.load(tiny_bundle, threads=1, stages="whole", image_cache_mb=4) as ex:
        assert ex.describe()["image_cache"] is None and ex.predict(GOOD).relation


# ---------------------------------------------------------------- decode once per call

def test_decoded_images_keys():
    assert source_key("a.jpg") == source_key(__import__("pathlib").Path("a.jpg"))
    assert source_key(b"xyz") == source_key(bytearray(b"xyz")) == source_key(memoryview(b"xyz"))
    assert source_key(b"xyz") != source_key(b"xy")
    assert source_key(np.zeros((2, 2, 3), np.uint8)) is None
    decoded = DecodedImages(lambda s: np.zeros(1, np.float32) + len(s))
    assert decoded.load(b"ab")[0] == 2 and decoded.load(bytes(b"ab"))[0] == 2 and decoded.decoded == 1


def test_a_source_repeated_in_a_batch_is_decoded_once(tiny_bundle, tmp_path):
    path = tmp_path / "post.jpg"
    path.write_bytes(jpeg_bytes(31))
    data = jpeg_bytes(32)
    requests = [{**GOOD, "image": str(path)}, {**GOOD, "image": bytes(data)}, {**GOOD, "image": str(path),
                                                                                   "crops": [bytearray(data)]},
                {**GOOD, "image": bytes(data), "crops": [str(path), str(path)]}]
    with rt.load(tiny_bundle, threads=1, max_batch=2) as ex:
        singles = [ex.predict(r) for r in requests]
        calls = []
        original = ex.preprocessor.images.load
        ex.preprocessor.images.load = lambda source: calls.append(source) or original(source)
        try:
            batch = ex.predict_batch(requests)
        finally:
            del ex.preprocessor.images.load
    assert len(calls) == 2  # one path, one content: decoded once each across chunks and slots
    for s, b in zip(singles, batch):
        np.testing.assert_allclose(b.logits, s.logits, atol=1e-5, rtol=0)
