"""Property-based tests (Hypothesis): random and mutated inputs to the request parser, the span logic and
the image decoder raise only the project's typed errors, in bounded time, and valid outputs keep their
invariants. A few hundred examples per target, derandomized so that a run is repeatable.
"""
from __future__ import annotations

import io
import json
import string
import time
import zlib

import numpy as np
import pytest
from dfma.runtime.api_guards import guarded_prepare
from dfma.runtime.request_file import _parse
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from dfma.contract.errors import DFMAError, ImageError, InputError
from dfma.contract.features import Preprocessor
from dfma.contract.images import ImagePreprocessor
from dfma.contract.jpeg_scans import count_scans
from dfma.contract.limits import Limits, json_depth
from dfma.contract.png_chunks import check_ancillary
from dfma.contract.samples import as_sample
from dfma.contract.text import TextEncoder, text_to_words, validate_words
from dfma.contract.tokenizer import train_wordpiece

FAST = settings(max_examples=300, deadline=2000, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
BOUND_S = 1.0  # per example, on a busy 2-core machine

ints = st.one_of(st.integers(-3, 40), st.integers(-2**70, 2**70), st.booleans(), st.floats(allow_nan=True),
                 st.none(), st.text(max_size=3))
spans = st.one_of(st.lists(ints, min_size=0, max_size=3), st.tuples(ints, ints), ints,
                  st.dictionaries(st.sampled_from(["pos", "name"]), st.lists(ints, max_size=3), max_size=2))
words = st.lists(st.one_of(st.text(max_size=8), st.integers(), st.none()), max_size=12)
json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False),
                                     st.text(max_size=10)),
                           lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner, max_size=4),
                           max_leaves=20)
requests = st.fixed_dictionaries({}, optional={
    "text": st.one_of(st.text(max_size=40), json_values), "words": st.one_of(words, json_values),
    "token": words, "head": spans, "tail": spans, "h": spans, "t": spans,
    "image": st.one_of(st.none(), st.integers(), st.text(max_size=10), st.binary(max_size=40)),
    "crops": st.one_of(st.none(), st.lists(st.one_of(st.none(), st.integers(), st.binary(max_size=20)), max_size=5),
                       st.text(max_size=5), json_values),
    "id": json_values})


@pytest.fixture(scope="module")
def preprocessor():
    corpus = [["obama", "visits", "paris", "with", "merkel", "the", "of"]] * 20
    tok = train_wordpiece(corpus, vocab_size=60, min_frequency=1)
    return Preprocessor(TextEncoder(tok, 16), ImagePreprocessor(8, 10, limits=Limits(max_text_chars=500)), 3)


def _timed(fn, *args):
    start = time.perf_counter()
    try:
        return fn(*args)
    finally:
        assert time.perf_counter() - start < BOUND_S


# ---------------------------------------------------------------- request parser

@FAST
@given(request=requests)
def test_requests_raise_only_typed_errors(preprocessor, request):
    try:
        features = _timed(guarded_prepare, preprocessor.prepare, request)
    except DFMAError as e:
        assert isinstance(e, InputError) and e.field, repr(e)
        return
    ids = features.encoded.input_ids
    assert ids[0] == preprocessor.text.special["cls"] and ids[-1] == preprocessor.text.special["sep"]
    assert features.pixel_values.shape == (4, 3, 8, 8)


good_line = json.dumps({"words": ["Obama", "visits", "Paris"], "head": [0, 1], "tail": [2, 3], "image": None})


@st.composite
def mutated_lines(draw):
    """A good JSON request line with characters replaced, inserted or deleted."""
    line = list(good_line)
    for _ in range(draw(st.integers(1, 6))):
        at = draw(st.integers(0, len(line)))
        op = draw(st.sampled_from(["replace", "insert", "delete"]))
        char = draw(st.sampled_from(list('[]{}",:0123456789-.eE \\ux') + ["\ud800", "\x00", "é"]))
        if op == "insert" or at == len(line):
            line.insert(at, char)
        elif op == "replace":
            line[at] = char
        else:
            del line[at]
    return "".join(line)


@FAST
@given(line=st.one_of(mutated_lines(), st.text(max_size=80), json_values.map(json.dumps)))
def test_request_lines_raise_only_typed_errors(line):
    try:
        sample, _, _ = _timed(_parse, line, "jsonl", "stdin", 1, None, Limits())
    except DFMAError as e:
        assert isinstance(e, (InputError, ValueError)) and e.field, repr(e)
        return
    assert (sample.words is None) != (sample.text is None)


def _nesting(value) -> int:
    if isinstance(value, list):
        return 1 + max((_nesting(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((_nesting(v) for v in value.values()), default=0)
    return 0


@FAST
@given(value=json_values)
def test_json_depth_is_the_nesting_of_valid_json(value):
    assert json_depth(json.dumps(value)) == _nesting(value)


# ---------------------------------------------------------------- spans

@FAST
@given(text=st.text(alphabet=string.ascii_letters + " \t\n\u00a0é\u3000", max_size=30), head=spans, tail=spans)
def test_character_spans(text, head, tail):
    try:
        words_, (hs, he), (ts, te) = _timed(text_to_words, text, head, tail)
    except InputError as e:
        assert e.field in ("text", "head", "tail"), repr(e)
        return
    assert "".join(words_) == "".join(text.split())  # the words are the text's, cut at the span ends
    assert 0 <= hs < he <= len(words_) and 0 <= ts < te <= len(words_)
    assert "".join(words_[hs:he]) == "".join(text[head[0]:head[1]].split())


@FAST
@given(words_=words, head=spans, tail=spans)
def test_word_spans(words_, head, tail):
    try:
        checked, (hs, he), (ts, te) = _timed(validate_words, words_, head, tail)
    except InputError as e:
        assert e.field in ("words", "head", "tail"), repr(e)
        return
    assert checked == list(words_) and 0 <= hs < he <= len(words_) and 0 <= ts < te <= len(words_)


@FAST
@given(mapping=st.dictionaries(st.sampled_from(["text", "words", "token", "head", "tail", "h", "t", "crops"]),
                               json_values, max_size=6))
def test_as_sample_only_input_errors(mapping):
    try:
        _timed(as_sample, mapping)
    except InputError as e:
        assert e.field
    except DFMAError as e:  # pragma: no cover - a failure message
        pytest.fail(f"{type(e).__name__} {e}")


# ---------------------------------------------------------------- image decoder

def _encoded(fmt: str, w: int, h: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(buf, format=fmt)
    return buf.getvalue()


def _seeds() -> dict[str, bytes]:
    out = {}
    for i, fmt in enumerate(["PNG", "JPEG", "GIF", "BMP", "WEBP"]):
        try:
            out[fmt] = _encoded(fmt, 23, 17, i)
        except (KeyError, OSError):  # a Pillow built without this codec
            pass
    buf = io.BytesIO()
    Image.open(io.BytesIO(out["JPEG"])).save(buf, format="JPEG", progressive=True)
    out["JPEG progressive"] = buf.getvalue()
    return out


SEEDS = _seeds()


@st.composite
def mutated_images(draw):
    """A small valid image with bytes flipped, cut, duplicated or a chunk inserted."""
    data = bytearray(SEEDS[draw(st.sampled_from(sorted(SEEDS)))])
    for _ in range(draw(st.integers(1, 5))):
        op = draw(st.sampled_from(["flip", "truncate", "insert", "header"]))
        at = draw(st.integers(0, len(data) - 1))
        if op == "flip":
            data[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "truncate":
            del data[at:]
            if not data:
                break
        elif op == "insert":
            data[at:at] = draw(st.binary(min_size=1, max_size=16))
        else:  # a header field (width, height, length) set to an extreme value
            data[at:at + 4] = draw(st.sampled_from([b"\xff\xff\xff\xff", b"\x00\x00\x00\x00", b"\x7f\xff\xff\xff"]))
    return bytes(data)


def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return len(body).to_bytes(4, "big") + kind + body + zlib.crc32(kind + body).to_bytes(4, "big")


@st.composite
def png_with_chunks(draw):
    """A valid PNG with random text / ICC chunks of random (compressed) sizes."""
    png = SEEDS["PNG"]
    at = png.index(b"IDAT") - 4
    chunks = b""
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from([b"tEXt", b"zTXt", b"iTXt", b"iCCP"]))
        payload = zlib.compress(b"x" * draw(st.integers(0, 3_000_000)))
        body = {b"tEXt": b"k\0" + payload[:100], b"zTXt": b"k\0\0" + payload,
                b"iTXt": b"k\0\x01\x00\0\0" + payload, b"iCCP": b"p\0\0" + payload}[kind]
        chunks += _png_chunk(kind, body)
    return png[:at] + chunks + png[at:]


@pytest.fixture(scope="module")
def images():
    return ImagePreprocessor(8, 10)


@FAST
@given(data=st.one_of(mutated_images(), st.binary(max_size=200), png_with_chunks()))
def test_image_decoder_raises_only_image_errors(images, data):
    try:
        x = _timed(images.load, data)
    except ImageError as e:
        assert e.field == "image", repr(e)
        return
    assert x.shape == (3, 8, 8) and x.dtype == np.float32 and np.isfinite(x).all()


@FAST
@given(data=png_with_chunks())
def test_ancillary_check_agrees_with_pillow(data):
    """What passes the chunk check never hits Pillow's own text limits (which would be a bare ValueError)."""
    limits = Limits()
    try:
        check_ancillary(data, "png", limits)
    except ImageError:
        return
    with Image.open(io.BytesIO(data)) as img:
        img.load()


def _grey_progressive() -> bytes:
    buf = io.BytesIO()
    Image.new("L", (24, 16), 77).save(buf, format="JPEG", progressive=True)
    return buf.getvalue()  # libjpeg's grey script: 6 scans


GREY_PROGRESSIVE = _grey_progressive()


@FAST
@given(repeats=st.integers(0, 300), thumbnail=st.booleans(), junk=st.binary(max_size=12), fill=st.integers(0, 3))
def test_jpeg_scans_counted_as_libjpeg_reads_them(images, repeats, thumbnail, junk, fill):
    """A progressive JPEG's last scan repeated: counted exactly, whatever an APP1 segment holds (a whole
    JPEG, as an EXIF thumbnail does), junk without 0xFF before a marker or fill 0xFF bytes; refused past
    max_jpeg_scans before decoding, decoded (or refused for another reason) up to it, in bounded time."""
    data = GREY_PROGRESSIVE
    last, eoi = data.rindex(b"\xff\xda"), len(data) - 2
    body = data[2:last] + junk.replace(b"\xff", b"") + b"\xff" * fill + data[last:eoi] * (1 + repeats) + data[eoi:]
    app1 = b"\xff\xe1" + (len(data) + 2).to_bytes(2, "big") + data if thumbnail else b""
    jpeg = b"\xff\xd8" + app1 + body
    scans = 6 + repeats
    assert count_scans(jpeg, 10**6) == scans
    assert count_scans(jpeg, 50) == min(scans, 50)
    try:
        x = _timed(images.load, jpeg)
    except ImageError as e:
        assert ("max_jpeg_scans" in str(e)) == (scans > Limits().max_jpeg_scans), str(e)
        return
    assert scans <= Limits().max_jpeg_scans and x.shape == (3, 8, 8)
