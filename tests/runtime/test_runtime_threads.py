"""One extractor shared by 8 threads gives exactly the sequential outputs."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from fixtures_bundle import extractor, jpeg_bytes, synthetic_image, tiny_bundle  # noqa: F401

from dfma.contract.errors import InputError

WORDS = "rt @ap : obama meets merkel in berlin before the g20 summit in hamburg".split()


def _requests(n: int) -> list:
    out = []
    for i in range(n):
        h = i % 5
        t = 5 + i % 7
        req = {"words": WORDS[: 8 + i % 6] if t + 1 <= 8 + i % 6 else WORDS, "head": [h, h + 1], "tail": [t, t + 1]}
        if i % 3 == 0:
            req["image"] = jpeg_bytes(i, 50 + i, 60)
        elif i % 3 == 1:
            req["image"] = synthetic_image(i, 70, 40 + i)
            req["crops"] = [synthetic_image(100 + i, 30, 30)]
        out.append(req)
    return out


def test_eight_threads_match_sequential(extractor):
    requests = _requests(48)
    sequential = [extractor.predict(r) for r in requests]
    with ThreadPoolExecutor(max_workers=8) as pool:
        for _ in range(2):
            parallel = list(pool.map(extractor.predict, requests))
            for s, p in zip(sequential, parallel):
                assert p.relation == s.relation
                np.testing.assert_array_equal(p.logits, s.logits)


def test_threads_mixing_batches_singles_and_bad_requests(extractor):
    requests = _requests(24)
    expected = [extractor.predict(r) for r in requests]
    bad = {"words": WORDS, "head": [0, 1], "tail": [3, 99]}

    def job(i: int):
        if i % 4 == 3:
            with pytest.raises(InputError):
                extractor.predict(bad)
            return None
        if i % 2:
            return extractor.predict_batch(requests[i % 8: i % 8 + 4])
        return [extractor.predict(requests[i % 24])]

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(job, range(64)))
    for i, res in enumerate(results):
        if res is None:
            continue
        want = expected[i % 8: i % 8 + 4] if i % 2 else [expected[i % 24]]
        for got, exp in zip(res, want, strict=True):
            assert got.relation == exp.relation
            # a batch pads rows to its longest member: padding may move the float sums by an ulp or so
            np.testing.assert_allclose(got.logits, exp.logits, atol=1e-5, rtol=0)
