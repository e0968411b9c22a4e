"""``Extractor.predict_pairs``: one sentence, its entities, every (or some) ordered pair; equal to one
``predict`` per pair; the image decoded and encoded once; every bad input a typed error naming the field,
raised before anything runs, and the extractor serving after it."""
from __future__ import annotations

import numpy as np
import pytest

from fixtures_bundle import GOOD, baseline, extractor, jpeg_bytes, synthetic_image, tiny_bundle  # noqa: F401

import dfma.runtime as rt
from dfma.contract.errors import ImageError, InputError

TEXT = "Obama met Merkel in Berlin at the G20 summit"
ENTITIES = [(0, 5), (10, 16), (20, 26), (34, 37)]  # Obama, Merkel, Berlin, G20
WORDS = TEXT.split()
WORD_ENTITIES = [(0, 1), (2, 3), (4, 5), (7, 8)]
ALL_PAIRS = [(h, t) for h in range(4) for t in range(4) if h != t]


def _same(extractor, baseline):
    again = extractor.predict({**GOOD, "image": synthetic_image(3)})
    np.testing.assert_array_equal(again.logits, baseline.logits)


def _check_equal(preds, singles):
    assert len(preds) == len(singles)
    for p, s in zip(preds, singles):
        assert p.relation == s.relation and p.label_id == s.label_id
        np.testing.assert_allclose(p.logits, s.logits, atol=1e-5, rtol=0)


@pytest.mark.parametrize("form", ["text", "words"])
def test_four_entities_give_twelve_predictions_equal_to_single_calls(extractor, form):
    image, crops = jpeg_bytes(41, 90, 70), [synthetic_image(42, 30, 40)]
    sentence, entities = (TEXT, ENTITIES) if form == "text" else (WORDS, WORD_ENTITIES)
    preds = extractor.predict_pairs(sentence, entities, image=image, crops=crops)
    assert [p.id for p in preds] == ALL_PAIRS
    key = "text" if form == "text" else "words"
    singles = [extractor.predict({key: sentence, "head": entities[h], "tail": entities[t], "image": image,
                                  "crops": crops}) for h, t in ALL_PAIRS]
    _check_equal(preds, singles)


def test_the_whole_graph_gives_the_same(tiny_bundle, extractor):
    with rt.load(tiny_bundle, threads=1, stages="whole") as whole:
        a = whole.predict_pairs(TEXT, ENTITIES, image=jpeg_bytes(43))
    _check_equal(extractor.predict_pairs(TEXT, ENTITIES, image=jpeg_bytes(43)), a)


def test_chosen_pairs_in_their_order_and_ids(extractor):
    pairs = [[2, 0], [0, 3], (1, 2), [2, 0]]
    preds = extractor.predict_pairs(TEXT, ENTITIES, pairs=pairs, id="post-7")
    assert [p.id for p in preds] == [("post-7", 2, 0), ("post-7", 0, 3), ("post-7", 1, 2), ("post-7", 2, 0)]
    singles = [extractor.predict({"text": TEXT, "head": ENTITIES[h], "tail": ENTITIES[t]}) for h, t in pairs]
    _check_equal(preds, singles)
    with pytest.raises(InputError, match="is empty") as info:  # a CLI line would otherwise vanish
        extractor.predict_pairs(TEXT, ENTITIES, pairs=[])
    assert info.value.field == "pairs"


def test_overlapping_entities_are_allowed(extractor):
    preds = extractor.predict_pairs(TEXT, [(0, 5), (0, 9), (4, 16)])  # overlap, nest: fine unless identical
    assert len(preds) == 6


def test_the_image_is_decoded_and_encoded_once(tiny_bundle):
    with rt.load(tiny_bundle, threads=1, image_cache_mb=4, max_batch=5) as ex:
        calls = []
        original = ex.preprocessor.images.load
        ex.preprocessor.images.load = lambda source: calls.append(source) or original(source)
        try:
            preds = ex.predict_pairs(TEXT, ENTITIES, image=jpeg_bytes(44), crops=[jpeg_bytes(45), None])
        finally:
            del ex.preprocessor.images.load
        assert len(preds) == 12 and len(calls) == 2  # the image and the one crop
        stats = ex.describe()["image_cache"]
        assert stats["misses"] == 1 and stats["hits"] == 0 and stats["entries"] == 1  # one vision run
        again = ex.predict_pairs(TEXT, ENTITIES, image=jpeg_bytes(44), crops=[jpeg_bytes(45), None])
        assert ex.describe()["image_cache"]["hits"] == 1
        for p, q in zip(preds, again):
            np.testing.assert_array_equal(p.logits, q.logits)


BAD = {
    "one entity": ({"entities": [(0, 5)]}, InputError, "entities"),
    "no entities": ({"entities": []}, InputError, "entities"),
    "entities a string": ({"entities": "0,5"}, InputError, "entities"),
    "entities a dict": ({"entities": {"a": (0, 5)}}, InputError, "entities"),
    "the same span twice": ({"entities": [(0, 5), (10, 16), [0, 5]]}, InputError, "entities[2]"),
    "span out of range": ({"entities": [(0, 5), (10, 99)]}, InputError, "entities[1]"),
    "span reversed": ({"entities": [(5, 0), (10, 16)]}, InputError, "entities[0]"),
    "span of one number": ({"entities": [(0, 5), 7]}, InputError, "entities[1]"),
    "span of floats": ({"entities": [(0.0, 5.0), (10, 16)]}, InputError, "entities[0]"),
    "span of bools": ({"entities": [(0, 5), (True, 3)]}, InputError, "entities[1]"),
    "whitespace span": ({"entities": [(0, 5), (5, 6)]}, InputError, "entities[1]"),
    "pair index out of range": ({"pairs": [[0, 1], [0, 4]]}, InputError, "pairs[1]"),
    "negative pair index": ({"pairs": [[-1, 0]]}, InputError, "pairs[0]"),
    "head equals tail": ({"pairs": [[2, 2]]}, InputError, "pairs[0]"),
    "pair of one index": ({"pairs": [[0, 1], [0]]}, InputError, "pairs[1]"),
    "pair of three": ({"pairs": [[0, 1, 2]]}, InputError, "pairs[0]"),
    "pair as a string": ({"pairs": ["01"]}, InputError, "pairs[0]"),
    "pair with a bool": ({"pairs": [[0, True]]}, InputError, "pairs[0]"),
    "pair with a float": ({"pairs": [[0, 1.5]]}, InputError, "pairs[0]"),
    "pairs some word": ({"pairs": "some"}, InputError, "pairs"),
    "pairs a number": ({"pairs": 3}, InputError, "pairs"),
    "pairs None": ({"pairs": None}, InputError, "pairs"),
    "pairs a generator": ({"pairs": ((0, 1) for _ in range(2))}, InputError, "pairs"),
    "sentence a number": ({"sentence": 12}, InputError, "sentence"),
    "sentence empty": ({"sentence": "   "}, InputError, "sentence"),
    "sentence with a surrogate": ({"sentence": "Obama \ud800 met Merkel in Berlin at the G20 summit"},
                                  InputError, "sentence"),
    "words not strings": ({"sentence": ["a", 3, "c"], "entities": [(0, 1), (2, 3)]}, InputError, "sentence"),
    "crops a string": ({"crops": "x.jpg"}, InputError, "crops"),
    "too many crops": ({"crops": [None, None, None, None]}, InputError, "crops"),
    "image not an image": ({"image": b"not an image"}, ImageError, "image"),
    "crop not an image": ({"crops": [b"nope"]}, ImageError, "crops[0]"),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_input_is_a_typed_error_naming_the_field(extractor, baseline, case):
    changes, kind, field = BAD[case]
    args = {"sentence": TEXT, "entities": ENTITIES, "image": None, "crops": None, "pairs": "all", **changes}
    with pytest.raises(kind) as info:
        extractor.predict_pairs(**args)
    assert info.value.field == field, str(info.value)
    _same(extractor, baseline)


def test_more_pairs_than_the_request_limit(tiny_bundle):
    with rt.load(tiny_bundle, threads=1, limits={"max_batch_requests": 5}) as ex:
        assert len(ex.predict_pairs(TEXT, ENTITIES[:2])) == 2
        with pytest.raises(InputError) as info:
            ex.predict_pairs(TEXT, ENTITIES[:3])  # 6 ordered pairs
        assert info.value.field == "pairs" and "max_batch_requests" in str(info.value)
        with pytest.raises(InputError) as info:
            ex.predict_pairs(TEXT, ENTITIES, pairs=[[0, 1]] * 6)
        assert info.value.field == "pairs"
        assert len(ex.predict_pairs(TEXT, ENTITIES, pairs=[[0, 1]] * 5)) == 5


def test_every_check_comes_before_any_decoding(tiny_bundle):
    with rt.load(tiny_bundle, threads=1) as ex:
        calls = []
        ex.preprocessor.images.load = lambda source: calls.append(source)
        for bad in ({"pairs": [[0, 9]]}, {"entities": [(0, 5), (0, 5)]}, {"crops": [b"x"] * 4}):
            args = {"sentence": TEXT, "entities": ENTITIES, "image": b"not an image", **bad}
            with pytest.raises(InputError) as info:
                ex.predict_pairs(**args)
            assert not isinstance(info.value, ImageError)
        assert calls == []
