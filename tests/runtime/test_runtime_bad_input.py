"""Every kind of bad request raises a typed error naming the field, and the next good request succeeds."""
from __future__ import annotations

import json

import numpy as np
import pytest

from fixtures_bundle import GOOD, baseline, copy_bundle, extractor, jpeg_bytes, synthetic_image, tiny_bundle  # noqa: F401
from hostile_cases import png_header_only

import dfma.runtime as rt
from dfma.contract.errors import BundleError, ImageError, InputError
from dfma.contract.manifest_digest import write_digest


def _serves_next(extractor, baseline):
    again = extractor.predict({**GOOD, "image": synthetic_image(3)})
    assert again.relation == baseline.relation
    np.testing.assert_array_equal(again.logits, baseline.logits)


TEXT_CASES = {
    "empty text": ({"text": "", "head": [0, 1], "tail": [0, 1]}, "text"),
    "whitespace text": ({"text": "   \n", "head": [0, 1], "tail": [1, 2]}, "text"),
    "head past the end": ({**GOOD, "head": [25, 40]}, "head"),
    "tail negative": ({**GOOD, "tail": [-1, 3]}, "tail"),
    "reversed span": ({**GOOD, "head": [5, 0]}, "head"),
    "empty span": ({**GOOD, "tail": [13, 13]}, "tail"),
    "whitespace-only span": ({**GOOD, "head": [5, 6]}, "head"),
    "span not a pair": ({**GOOD, "head": [0, 1, 2]}, "head"),
    "span of floats": ({**GOOD, "head": [0.0, 5.0]}, "head"),
    "words span out of range": ({"words": ["a", "b"], "head": [0, 1], "tail": [1, 3]}, "tail"),
    "empty word list": ({"words": [], "head": [0, 1], "tail": [0, 1]}, "words"),
    "non-string word": ({"words": ["a", 3], "head": [0, 1], "tail": [1, 2]}, "words"),
    "mnre span out of range": ({"token": ["a", "b"], "h": {"pos": [0, 1]}, "t": {"pos": [2, 3]}}, "tail"),
    "no text at all": ({"head": [0, 1], "tail": [0, 1]}, "text"),
    "not a request": (42, "sample"),
    "too many crops": ({**GOOD, "crops": [synthetic_image(i) for i in range(4)]}, "crops"),
}


@pytest.mark.parametrize("case", list(TEXT_CASES))
def test_bad_text_and_spans(extractor, baseline, case):
    request, field = TEXT_CASES[case]
    with pytest.raises(InputError) as info:
        extractor.predict(request)
    assert info.value.field == field and not isinstance(info.value, ImageError)
    assert field in str(info.value)
    _serves_next(extractor, baseline)


def _image_cases(tmp_path):
    jpeg = jpeg_bytes(0, 200, 150)
    (tmp_path / "notes.txt").write_text("this is not an image\n")
    (tmp_path / "cut.jpg").write_bytes(jpeg[: len(jpeg) // 2])
    return {
        "file that is not an image": tmp_path / "notes.txt",
        "bytes that are not an image": b"GIF89a-but-not-really" * 10,
        "missing file": tmp_path / "nowhere.jpg",
        "truncated JPEG file": tmp_path / "cut.jpg",
        "truncated JPEG bytes": jpeg[: len(jpeg) // 3],
        "decompression bomb": png_header_only(20_000, 20_000),
        "just over the pixel limit": png_header_only(10_000, 5_001),
        "grey array (H, W)": np.zeros((40, 40), np.uint8),
        "RGBA array": np.zeros((40, 40, 4), np.uint8),
        "float array": np.zeros((40, 40, 3), np.float32),
        "empty array": np.zeros((0, 40, 3), np.uint8),
        "unsupported type": 3.5,
    }


@pytest.mark.parametrize("slot", ["image", "crop"])
def test_bad_images(extractor, baseline, tmp_path, slot):
    for name, bad in _image_cases(tmp_path).items():
        request = {**GOOD, "image": bad} if slot == "image" else {**GOOD, "crops": [synthetic_image(1), bad]}
        with pytest.raises(ImageError) as info:
            extractor.predict(request)
        assert info.value.field == ("image" if slot == "image" else "crops[1]"), name
        assert str(info.value).startswith(f"{info.value.field}: "), name
        _serves_next(extractor, baseline)


def test_crossing_and_coinciding_spans_are_allowed(extractor):
    """The contract allows overlapping spans (MNRE has some): partial overlap and identical spans work."""
    crossing = extractor.predict({"text": "New York City Hall", "head": [0, 8], "tail": [4, 13]})
    same = extractor.predict({"words": ["Paris", "Hilton"], "head": [0, 2], "tail": [0, 2]})
    assert crossing.relation in extractor.labels.names and same.relation in extractor.labels.names


def test_bad_member_of_a_batch_names_its_index(extractor, baseline):
    good = {**GOOD, "image": synthetic_image(3)}
    with pytest.raises(InputError) as info:
        extractor.predict_batch([good, {**GOOD, "tail": [3, 99]}, good])
    assert info.value.field == "samples[1].tail" and info.value.index == 1
    with pytest.raises(ImageError) as info:
        extractor.predict_batch([good, good, {**GOOD, "image": b"nope"}])
    assert info.value.field == "samples[2].image"
    with pytest.raises(ImageError) as info:
        extractor.predict_batch([good, {**good, "crops": [None, synthetic_image(4), b"nope"]}, good])
    assert info.value.field == "samples[1].crops[2]" and info.value.index == 1
    assert str(info.value).startswith("samples[1].crops[2]: ")
    preds = extractor.predict_batch([good, good])
    assert [p.relation for p in preds] == [baseline.relation] * 2
    _serves_next(extractor, baseline)


@pytest.mark.parametrize("damage", ["missing graph", "missing tokenizer", "altered graph", "altered vocab",
                                    "manifest missing", "manifest not json", "file outside the bundle"])
def test_damaged_bundle(tiny_bundle, tmp_path, extractor, baseline, damage):
    b = copy_bundle(tiny_bundle, tmp_path / "bundle")
    manifest = json.loads((b / "manifest.json").read_text())
    if damage == "missing graph":
        (b / "model.onnx").unlink()
    elif damage == "missing tokenizer":
        (b / "tokenizer.json").unlink()
    elif damage == "altered graph":
        with (b / "model.ort.onnx").open("r+b") as f:
            f.seek(-10, 2)
            f.write(b"\x00" * 10)
    elif damage == "altered vocab":
        (b / "vocab.txt").write_text((b / "vocab.txt").read_text().replace("the", "teh", 1))
    elif damage == "manifest missing":
        (b / "manifest.json").unlink()
    elif damage == "manifest not json":
        (b / "manifest.json").write_text("{ not json")
        write_digest(b)
    elif damage == "file outside the bundle":
        (tmp_path / "evil.onnx").write_bytes(b"x")
        manifest["files"]["../evil.onnx"] = {"sha256": "0" * 64, "bytes": 1}
        (b / "manifest.json").write_text(json.dumps(manifest))
        write_digest(b)
    with pytest.raises(BundleError) as info:
        rt.load(b)
    names = {"missing graph": "model.onnx", "missing tokenizer": "tokenizer.json",
             "altered graph": "model.ort.onnx", "altered vocab": "vocab.txt",
             "manifest missing": "manifest.json", "manifest not json": "manifest.json",
             "file outside the bundle": "evil.onnx"}
    assert names[damage] in str(info.value)
    _serves_next(extractor, baseline)  # an extractor already loaded is unaffected
    with rt.load(tiny_bundle, threads=1) as fresh:  # and the intact bundle still loads
        assert fresh.predict(GOOD).relation


def test_precision_the_bundle_lacks_lists_what_it_has(tiny_bundle):
    with pytest.raises(BundleError) as info:
        rt.load(tiny_bundle, precision="fp16" if "model.fp16.onnx" not in
                json.loads((tiny_bundle / "manifest.json").read_text())["files"] else "bf16")
    assert "fp32" in str(info.value)
