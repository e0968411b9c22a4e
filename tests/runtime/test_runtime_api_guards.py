"""The argument checks and typed errors at the public API (runtime/api_guards.py) and the request limits
(dfma/contract/limits.py).

Wrong Python types for every public call, a closed extractor, limits given to ``load``: each a typed error
naming the field, raised fast, and the extractor then gives the same answer as before.
"""
from __future__ import annotations

import dataclasses
import time

import dfma.runtime as rt
import numpy as np
import pytest
from fixtures_bundle import GOOD, baseline, extractor, synthetic_image  # noqa: F401  (shared fixtures)
from hostile_cases import png_header_only

from dfma.contract.errors import (
    BackendUnavailable,
    BundleError,
    DFMAError,
    ImageError,
    InputError,
)
from dfma.contract.images import ImagePreprocessor
from dfma.contract.limits import Limits, json_depth
from dfma.contract.samples import Sample



def _same(extractor, baseline):
    again = extractor.predict({**GOOD, "image": synthetic_image(3)})
    np.testing.assert_array_equal(again.logits, baseline.logits)


class Weird:
    """An object whose repr fails, for messages that must not."""

    def __repr__(self):
        raise RuntimeError("no repr")


def nested(depth: int) -> list:
    """[[[...]]] ``depth`` deep (its repr raises RecursionError)."""
    value: list = []
    for _ in range(depth):
        value = [value]
    return value


REQUESTS = {
    "unpaired surrogate in text": ({"text": "Obama \ud800 Paris", "head": [0, 5], "tail": [8, 13]}, InputError, "text"),
    "unpaired surrogate in a word": ({"words": ["Obama", "\udfff", "Paris"], "head": [0, 1], "tail": [2, 3]},
                                     InputError, "words"),
    "text and words": ({**GOOD, "words": ["a"]}, InputError, "text"),
    "crops as a string": ({**GOOD, "crops": "x.jpg"}, InputError, "crops"),
    "crops as a generator": ({**GOOD, "crops": (x for x in [None])}, InputError, "crops"),
    "crops of ints": ({**GOOD, "crops": [1, 2]}, ImageError, "crops[0]"),
    "span nested 100000 deep": ({**GOOD, "head": nested(100_000)}, InputError, "head"),
    "span with a failing repr": ({**GOOD, "head": Weird()}, InputError, "head"),
    "image path with a NUL": ({**GOOD, "image": "a\0b.png"}, ImageError, "image"),
    "image path too long": ({**GOOD, "image": "x" * 5000}, ImageError, "image"),
    "image path of bytes": ({**GOOD, "image": bytearray(b"\x89PNG\r\n\x1a\n")}, ImageError, "image"),
    "a set as the request": ({1, 2}, InputError, "sample"),
    "None as the request": (None, InputError, "sample"),
}


@pytest.mark.parametrize("case", list(REQUESTS))
def test_request_types(extractor, baseline, case):
    request, kind, field = REQUESTS[case]
    start = time.perf_counter()
    with pytest.raises(kind) as info:
        extractor.predict(request)
    assert type(info.value) is kind and info.value.field == field, str(info.value)
    assert time.perf_counter() - start < 1.0
    _same(extractor, baseline)


def test_sample_built_directly_is_checked():
    with pytest.raises(InputError) as info:
        Sample.from_text("Obama visits", (0, 5), (6, 12), crops="a.jpg")
    assert info.value.field == "crops"
    with pytest.raises(InputError) as info:
        Sample(head=(0, 1), tail=(1, 2), words=["a", "b"], text="a b")
    assert info.value.field == "text" and "'text'" in str(info.value) and "'words'" in str(info.value)


@pytest.mark.parametrize("samples, field", [(5, "samples"), ("abc", "samples"), ({"text": "x"}, "samples"),
                                            (b"xy", "samples"), ([GOOD, 3], "samples[1].sample")])
def test_predict_batch_argument(extractor, baseline, samples, field):
    with pytest.raises(InputError) as info:
        extractor.predict_batch(samples)
    assert info.value.field == field
    _same(extractor, baseline)


def test_predict_batch_generator_that_raises(extractor, baseline):
    def gen():
        yield GOOD
        raise KeyError("boom")

    with pytest.raises(InputError) as info:
        extractor.predict_batch(gen())
    assert info.value.field == "samples" and "KeyError" in str(info.value)
    _same(extractor, baseline)


def test_batch_size_limit(tiny_bundle):
    with rt.load(tiny_bundle, threads=1, limits={"max_batch_requests": 3}) as ex:
        assert len(ex.predict_batch([GOOD] * 3)) == 3
        with pytest.raises(InputError) as info:
            ex.predict_batch(iter([GOOD] * 1000))
        assert info.value.field == "samples" and "max_batch_requests" in str(info.value)
        assert ex.describe()["limits"]["max_batch_requests"] == 3


def test_batch_images_are_decoded_per_chunk(tiny_bundle):
    """Every text is checked before anything runs; a bad image raises with its index."""
    with rt.load(tiny_bundle, threads=1, max_batch=2) as ex:
        bad_text = [GOOD] * 5 + [{**GOOD, "head": [0, 99]}]
        with pytest.raises(InputError) as info:
            ex.predict_batch(bad_text)
        assert info.value.field == "samples[5].head"
        with pytest.raises(ImageError) as info:
            ex.predict_batch([GOOD] * 4 + [{**GOOD, "image": png_header_only(100000, 1)}])
        assert info.value.field == "samples[4].image"


@pytest.mark.parametrize("kwargs, field", [
    ({"bundle": 5}, "bundle"), ({"bundle": None}, "bundle"), ({"bundle": ["x"]}, "bundle"),
    ({"bundle": "a\0b"}, "bundle"), ({"backend": 3}, "backend"), ({"precision": None}, "precision"),
    ({"threads": "4"}, "threads"), ({"threads": -1}, "threads"), ({"device_id": 1.5}, "device_id"),
    ({"max_batch": 0}, "max_batch"), ({"self_check": True}, "self_check"), ({"limits": 7}, "limits"),
    ({"limits": {"max_image_sides": 3}}, "limits"), ({"limits": {"max_image_side": -3}}, "limits.max_image_side"),
    ({"limits": {"max_words": 2.5}}, "limits.max_words"),
])
def test_load_arguments(tiny_bundle, kwargs, field):
    args = {"bundle": tiny_bundle, **kwargs}
    with pytest.raises(InputError) as info:
        rt.load(args.pop("bundle"), **args)
    assert info.value.field == field


def test_load_paths_the_os_refuses(tmp_path):
    for path in ("x" * 5000, tmp_path / ("y" * 300)):
        with pytest.raises(BundleError) as info:
            rt.load(path)
        assert "cannot use this path" in str(info.value) or "not a bundle folder" in str(info.value)


def test_closed_extractor(tiny_bundle):
    ex = rt.load(tiny_bundle, threads=1)
    before = ex.describe()
    ex.close()
    ex.close()  # twice is fine
    after = ex.describe()
    assert after["closed"] is True and after["backend"] == before["backend"]
    for call in (lambda: ex.predict(GOOD), lambda: ex.predict_batch([GOOD]), lambda: ex.run([])):
        with pytest.raises(BackendUnavailable, match="closed"):
            call()


def test_run_refuses_what_prepare_did_not_make(extractor, baseline):
    with pytest.raises(InputError) as info:
        extractor.run([GOOD])
    assert info.value.field == "features"
    _same(extractor, baseline)


def test_an_onnxruntime_failure_is_typed(extractor, baseline):
    """Inputs ONNX Runtime refuses (pixels of the wrong shape) give BackendUnavailable, not its own exception."""
    features = extractor.prepare(GOOD)
    wrong = dataclasses.replace(features, pixel_values=np.zeros((1, 3, 5, 5), np.float32),
                                image_mask=np.zeros((1,), np.int64))
    with pytest.raises(BackendUnavailable, match="onnxruntime"):
        extractor.run([wrong])
    _same(extractor, baseline)


# ---------------------------------------------------------------- limits, unit level

def test_limits_refuse_before_decoding():
    pre = ImagePreprocessor(8, 10, limits=Limits(max_image_side=100, max_aspect_ratio=4, max_resized_pixels=150))
    for w, h, what in [(101, 50, "max_image_side"), (90, 20, "max_aspect_ratio"), (40, 20, "max_resized_pixels")]:
        with pytest.raises(ImageError, match=what) as info:
            pre.load(png_header_only(w, h))
        assert info.value.field == "image"
    assert pre.load(np.zeros((10, 12, 3), np.uint8)).shape == (3, 8, 8)  # 12x10 -> 12x10: 120 pixels


def test_manifest_pixel_limit_and_runtime_limit_take_the_smaller():
    assert ImagePreprocessor(8, 8, max_image_pixels=1000, limits=Limits(max_image_pixels=500)).max_image_pixels == 500
    assert ImagePreprocessor(8, 8, max_image_pixels=400, limits=Limits(max_image_pixels=500)).max_image_pixels == 400


def test_image_bytes_limit(tmp_path):
    pre = ImagePreprocessor(8, 8, limits=Limits(max_image_bytes=100))
    (tmp_path / "big.png").write_bytes(png_header_only(20, 20) + b"\0" * 200)
    for source in (tmp_path / "big.png", (tmp_path / "big.png").read_bytes()):
        with pytest.raises(ImageError, match="max_image_bytes"):
            pre.load(source)


def test_json_depth_skips_strings():
    assert json_depth('{"a": [1, {"b": "[[[[{{{"}]}') == 3
    assert json_depth('"[[[" [ \\" [') == 1
    assert json_depth("]]][[") == 0


def test_every_error_is_a_dfma_error():
    assert issubclass(ImageError, InputError) and issubclass(InputError, DFMAError)
