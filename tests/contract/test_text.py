"""Text preprocessing (contract section 2) and the tokenizer folder format."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from dfma.contract.errors import DataError, InputError
from dfma.contract.tokenizer import (HEAD_CLOSE, HEAD_OPEN, MARKERS, TAIL_CLOSE, TAIL_OPEN, load_tokenizer,
                            save_tokenizer, special_ids, tokenizer_from_bert_vocab, train_wordpiece)
from dfma.contract.text import (Encoded, TextEncoder, check_encoding, insert_markers, text_to_words, truncate,
                       truncation_segments)

S, ES, O, EO = HEAD_OPEN, HEAD_CLOSE, TAIL_OPEN, TAIL_CLOSE
BASE = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
WORDS = [f"w{i}" for i in range(40)] + ["hello", "world", "barack", "obama", "'", "s", ",", "##s",
                                       "michelle", "cafe"]


@pytest.fixture(scope="module")
def vocab_dir(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("bert")
    (folder / "vocab.txt").write_text("\n".join(BASE + WORDS) + "\n", encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def enc(vocab_dir) -> TextEncoder:
    return TextEncoder(tokenizer_from_bert_vocab(vocab_dir), max_length=8)


@pytest.fixture(scope="module")
def enc16(vocab_dir) -> TextEncoder:
    return TextEncoder.from_folder(vocab_dir, 16)


def W(n: int) -> list[str]:
    return [f"w{i}" for i in range(n)]


# ---------------------------------------------------------------- markers (2.1)

@pytest.mark.parametrize("head, tail, expected", [
    ((1, 2), (3, 4), ["w0", S, "w1", ES, "w2", O, "w3", EO]),                 # tail ends the sentence
    ((3, 4), (0, 1), [O, "w0", EO, "w1", "w2", S, "w3", ES]),                 # head ends the sentence
    ((1, 3), (1, 3), ["w0", S, O, "w1", "w2", EO, ES, "w3"]),                 # identical
    ((0, 4), (0, 4), [S, O, "w0", "w1", "w2", "w3", EO, ES]),                 # identical, whole sentence
    ((0, 4), (1, 2), [S, "w0", O, "w1", EO, "w2", "w3", ES]),                 # tail nested in head
    ((1, 3), (1, 4), ["w0", O, S, "w1", "w2", ES, "w3", EO]),                 # same start: longer opens first
    ((0, 3), (2, 3), [S, "w0", "w1", O, "w2", EO, ES, "w3"]),                 # same end: later start closes first
    ((0, 2), (1, 4), [S, "w0", O, "w1", ES, "w2", "w3", EO]),                 # crossing
    ((2, 4), (0, 3), [O, "w0", "w1", S, "w2", EO, "w3", ES]),                 # crossing, tail first
    ((0, 2), (2, 4), [S, "w0", "w1", ES, O, "w2", "w3", EO]),                 # adjacent: closer before opener
])
def test_insert_markers(head, tail, expected):
    assert insert_markers(W(4), head, tail) == expected


# ---------------------------------------------------------------- truncation (2.3)

def _seq(n: int, marks: dict[int, str]) -> list[str]:
    return [marks.get(i, f"p{i}") for i in range(n)]


def test_truncate_keeps_all_when_short():
    pieces = _seq(6, {0: S, 2: ES, 3: O, 5: EO})
    assert truncate(pieces, 8, 0, 3, 2, 5) == pieces


def test_truncate_centered_window():
    pieces = _seq(14, {4: S, 6: ES, 7: O, 9: EO})       # lo=4 hi=10; m=8: a = clamp(4 - 1, 0, 6) = 3
    assert truncation_segments(14, 10, 4, 7, 6, 9) == [(3, 11)]
    assert truncate(pieces, 10, 4, 7, 6, 9) == ["p3", S, "p5", ES, O, "p8", EO, "p10"]
    # m = 7: a = 4 - (7 - 6) // 2 = 4
    assert truncate(pieces, 9, 4, 7, 6, 9) == [S, "p5", ES, O, "p8", EO, "p10"]


def test_truncate_centered_clamps_at_both_ends():
    start = _seq(14, {0: S, 2: ES, 3: O, 5: EO})        # a = clamp(0 - 1, 0, 6) = 0
    assert truncation_segments(14, 10, 0, 3, 2, 5) == [(0, 8)]
    end = _seq(14, {8: O, 10: EO, 11: S, 13: ES})       # lo=8 hi=14: a = clamp(8 - 1, 0, 6) = 6
    assert truncation_segments(14, 10, 11, 8, 13, 10) == [(6, 14)]
    assert truncate(end, 10, 11, 8, 13, 10) == ["p6", "p7", O, "p9", EO, S, "p12", ES]


def test_truncate_two_segments():
    pieces = _seq(20, {1: S, 3: ES, 15: O, 17: EO})     # hi - lo = 17 > 6; h1 = h2 = 3; s2 = 15
    assert truncate(pieces, 8, 1, 15, 3, 17) == [S, "p2", ES, O, "p16", EO]
    # m = 7: h1 = 4, h2 = 3
    assert truncation_segments(20, 9, 1, 15, 3, 17) == [(1, 5), (15, 18)]


def test_truncate_two_segments_tail_first_and_clamped_to_end():
    pieces = _seq(22, {2: O, 4: EO, 19: S, 21: ES})     # m=8: h1=h2=4; s2 = min(max(19, 6), 18) = 18
    assert truncation_segments(22, 10, 19, 2, 21, 4) == [(2, 6), (18, 22)]
    kept = truncate(pieces, 10, 19, 2, 21, 4)
    assert kept == [O, "p3", EO, "p5", "p18", S, "p20", ES]


def test_truncate_two_segments_second_opener_inside_first_segment():
    pieces = _seq(16, {0: S, 2: O, 4: EO, 15: ES})      # nested long head: s2 = max(2, 0 + 3) = 3
    assert truncation_segments(16, 8, 0, 2, 15, 4) == [(0, 3), (3, 6)]
    assert truncate(pieces, 8, 0, 2, 15, 4) == [S, "p1", O, "p3", EO, "p5"]


def test_truncate_rejects_tiny_max_length():
    with pytest.raises(InputError) as e:
        truncation_segments(10, 3, 0, 5, 2, 7)
    assert e.value.field == "max_length" and "3" in str(e.value)


# ---------------------------------------------------------------- encoder

def test_encode_words_short(enc):
    e = enc.encode_words(["hello", "world"], (0, 1), (1, 2))
    assert enc.tokens(e) == ["[CLS]", S, "hello", ES, O, "world", EO, "[SEP]"]
    assert (e.head_pos, e.tail_pos) == (1, 4)
    check_encoding(e, enc.special, 8)


def test_encode_words_two_segment_branch(enc):
    e = enc.encode_words(W(20), (1, 2), (15, 16))       # pieces: w0 <s> w1 </s> w2..w14 <o> w15 </o> ...
    assert enc.tokens(e) == ["[CLS]", S, "w1", ES, O, "w15", EO, "[SEP]"]
    assert (e.head_pos, e.tail_pos) == (1, 4)


def test_encode_words_centered_branch(vocab_dir):
    enc10 = TextEncoder.from_folder(vocab_dir, 10)      # 13 pieces, lo=4 hi=10, m=8: a = 4 - 1 = 3
    e = enc10.encode_words(W(9), (4, 5), (5, 6))
    assert enc10.tokens(e) == ["[CLS]", "w3", S, "w4", ES, O, "w5", EO, "w6", "[SEP]"]
    assert (e.head_pos, e.tail_pos) == (2, 5)


def test_encode_words_wordpieces_and_unknown(enc16):
    e = enc16.encode_words(["Obamas", "xyz"], (0, 1), (1, 2))
    assert enc16.tokens(e) == ["[CLS]", S, "obama", "##s", ES, O, "[UNK]", EO, "[SEP]"]


def test_word_with_no_piece_still_marked(enc):
    e = enc.encode_words(["hello", "\u200b"], (0, 1), (1, 2))   # zero-width space: no piece
    assert enc.tokens(e) == ["[CLS]", S, "hello", ES, O, EO, "[SEP]"]


def test_literal_marker_text_cannot_forge_markers(enc16):
    enc = enc16
    e = enc.encode_words(["<s>", "[SEP]", "hello"], (2, 3), (2, 3))
    ids = e.input_ids
    for key in ("head_open", "head_close", "tail_open", "tail_close", "sep", "cls"):
        assert ids.count(enc.special[key]) == 1, key
    assert e.head_pos == ids.index(enc.special["head_open"]) > 2


def test_encode_batch_equals_single(enc):
    items = [(W(20), (1, 2), (15, 16)), (["hello", "world"], (0, 2), (1, 2)), (W(3), (0, 1), (0, 1))]
    assert enc.encode_words_batch(items) == [enc.encode_words(*it) for it in items]
    assert enc.encode_words_batch([]) == []


def test_pad_batch(enc):
    rows = enc.encode_words_batch([(["hello"], (0, 1), (0, 1)), (["hello", "world"], (0, 1), (1, 2))])
    ids, mask = enc.pad_batch(rows)
    assert ids.dtype == np.int64 and mask.dtype == np.int64 and ids.shape == mask.shape == (2, 8)
    assert ids[0].tolist() == rows[0].input_ids + [0]
    assert mask.tolist() == [[1] * 7 + [0], [1] * 8]


def test_text_to_words_and_encode_text(enc):
    text = "Barack Obama's wife Michelle"
    words, head, tail = text_to_words(text, (0, 12), (20, 28))
    assert words == ["Barack", "Obama", "'s", "wife", "Michelle"] and head == (0, 2) and tail == (4, 5)
    assert text_to_words("  a  bc d ", (2, 3), (5, 7)) == (["a", "bc", "d"], (0, 1), (1, 2))
    assert text_to_words("x y", (0, 3), (0, 3)) == (["x", "y"], (0, 2), (0, 2))
    assert text_to_words("abc", (0, 2), (1, 3)) == (["a", "b", "c"], (0, 2), (1, 3))
    e = enc.encode_text("Hello world", (0, 5), (6, 11))
    assert enc.tokens(e) == ["[CLS]", S, "hello", ES, O, "world", EO, "[SEP]"]
    assert enc.encode_text_batch([("Hello world", (0, 5), (6, 11))]) == [e]


def test_check_encoding_detects_broken_rows(enc):
    sp = enc.special
    good = Encoded([sp["cls"], sp["head_open"], sp["tail_open"], sp["sep"]], 1, 2)
    check_encoding(good, sp)
    with pytest.raises(InputError, match="tail"):
        check_encoding(Encoded([sp["cls"], sp["head_open"], 9, sp["sep"]], 1, 2), sp)
    with pytest.raises(InputError, match="input_ids"):
        check_encoding(good, sp, max_length=3)


BAD_WORDS = [
    ("hello world", (0, 1), (1, 2), "words", "str"),
    ([], (0, 1), (1, 2), "words", "empty"),
    (["a", 3], (0, 1), (1, 2), "words", "int"),
    (["a", "b"], (0,), (1, 2), "head", "(0,)"),
    (["a", "b"], (0, 1.0), (1, 2), "head", "1.0"),
    (["a", "b"], (True, 1), (1, 2), "head", "True"),
    (["a", "b"], (1, 1), (0, 1), "head", "(1, 1)"),
    (["a", "b"], (0, 1), (1, 3), "tail", "(1, 3)"),
    (["a", "b"], (0, 1), (-1, 1), "tail", "(-1, 1)"),
    (["a", " "], (0, 1), (1, 2), "tail", "whitespace"),
    (["a", "b"], None, (1, 2), "head", "None"),
]


@pytest.mark.parametrize("words, head, tail, field, value", BAD_WORDS)
def test_encode_words_errors(enc, words, head, tail, field, value):
    with pytest.raises(InputError) as e:
        enc.encode_words(words, head, tail)
    assert e.value.field == field and str(e.value).startswith(f"{field}:") and value in str(e.value)


BAD_TEXT = [
    (b"hello", (0, 1), (1, 2), "text", "bytes"),
    ("", (0, 1), (1, 2), "text", "empty"),
    ("   ", (0, 1), (1, 2), "text", "whitespace"),
    ("ab cd", (0, 6), (3, 5), "head", "(0, 6)"),
    ("ab cd", (2, 2), (3, 5), "head", "(2, 2)"),
    ("ab cd", (0, 2), (2, 3), "tail", "whitespace"),
    ("ab cd", (0, 2), ("3", 5), "tail", "'3'"),
]


@pytest.mark.parametrize("text, head, tail, field, value", BAD_TEXT)
def test_encode_text_errors(enc, text, head, tail, field, value):
    with pytest.raises(InputError) as e:
        enc.encode_text(text, head, tail)
    assert e.value.field == field and str(e.value).startswith(f"{field}:") and value in str(e.value)


def test_bad_max_length(vocab_dir):
    with pytest.raises(InputError) as e:
        TextEncoder.from_folder(vocab_dir, 3)
    assert e.value.field == "max_length"


# ---------------------------------------------------------------- tokenizer folders

def test_bert_vocab_appends_markers(vocab_dir):
    tok = tokenizer_from_bert_vocab(vocab_dir / "vocab.txt")
    n = len(BASE) + len(WORDS)
    ids = special_ids(tok)
    assert [ids[k] for k in ("pad", "unk", "cls", "sep", "mask")] == [0, 1, 2, 3, 4]
    assert [ids[k] for k in ("head_open", "head_close", "tail_open", "tail_close")] == list(range(n, n + 4))


def test_bert_vocab_errors(tmp_path):
    (tmp_path / "vocab.txt").write_text("[UNK]\n[PAD]\n[CLS]\n[SEP]\n[MASK]\n", encoding="utf-8")
    with pytest.raises(DataError, match="id 0"):
        tokenizer_from_bert_vocab(tmp_path)
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n", encoding="utf-8")
    with pytest.raises(DataError, match=r"\[MASK\]"):
        tokenizer_from_bert_vocab(tmp_path)
    (tmp_path / "vocab.txt").write_text("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n[UNK]\n", encoding="utf-8")
    with pytest.raises(DataError) as e:
        tokenizer_from_bert_vocab(tmp_path)
    assert e.value.line == 6
    with pytest.raises(DataError, match="no tokenizer.json or vocab.txt"):
        load_tokenizer(tmp_path / "nowhere")


def test_save_and_load_round_trip(tmp_path):
    sentences = [["Hello", "world", "café"], ["hello", "there", ",", "world"]] * 3
    tok = train_wordpiece(sentences, vocab_size=200, min_frequency=1)
    assert special_ids(tok) == dict(zip(("pad", "unk", "cls", "sep", "mask", "head_open", "head_close",
                                         "tail_open", "tail_close"), range(9)))
    save_tokenizer(tok, tmp_path / "tk")
    assert sorted(os.listdir(tmp_path / "tk")) == ["tokenizer.json", "vocab.txt"]   # no temp files left
    lines = (tmp_path / "tk" / "vocab.txt").read_text(encoding="utf-8").split("\n")[:-1]
    assert len(lines) == tok.get_vocab_size(with_added_tokens=True)
    assert all(tok.token_to_id(p) == k for k, p in enumerate(lines))
    assert lines[5:9] == list(MARKERS)
    from_json = load_tokenizer(tmp_path / "tk")
    (tmp_path / "v").mkdir()
    (tmp_path / "v" / "vocab.txt").write_bytes((tmp_path / "tk" / "vocab.txt").read_bytes())
    from_vocab = load_tokenizer(tmp_path / "v")
    words = ["Café", "there", "hello", "worlds", "zzz"]
    a = TextEncoder(from_json, 16).encode_words(words, (0, 1), (3, 4))
    b = TextEncoder(from_vocab, 16).encode_words(words, (0, 1), (3, 4))
    assert a == b and TextEncoder(tok, 16).encode_words(words, (0, 1), (3, 4)) == a


# ---------------------------------------------------------------- real MNRE

@pytest.fixture(scope="module")
def mnre(mnre_dir):
    from dfma.contract.labels import LabelMap
    from dfma.mnre import read_mnre
    labels = LabelMap.from_json(mnre_dir / "rel2id.json")
    train = read_mnre(mnre_dir / "mnre_train.txt", labels)
    val = read_mnre(mnre_dir / "mnre_val.txt", labels)
    return labels, train, val


def test_mnre_all_lines_parse(mnre, mnre_dir):
    labels, train, val = mnre
    assert len(labels) == 23 and labels.none_id == 0
    for name, samples in (("mnre_train.txt", train), ("mnre_val.txt", val)):
        n_lines = sum(1 for line in (mnre_dir / name).open(encoding="utf-8") if line.strip())
        assert len(samples) == n_lines
    assert len(train) == 12247 and len(val) == 1624


def test_mnre_encoding_invariants(mnre):
    _, train, val = mnre
    samples = train + val
    tok = train_wordpiece((s.words for s in train), vocab_size=8000)
    enc = TextEncoder(tok, 80)
    rows = enc.encode_words_batch([(s.words, s.head, s.tail) for s in samples])
    marker_ids = [enc.special[k] for k in ("head_open", "head_close", "tail_open", "tail_close")]
    overlapping = 0
    for s, row in zip(samples, rows):
        check_encoding(row, enc.special, 80)
        assert [row.input_ids.count(m) for m in marker_ids] == [1, 1, 1, 1], s.line_no
        marked = insert_markers(s.words, s.head, s.tail)
        assert marked.count(S) == marked.count(ES) == marked.count(O) == marked.count(EO) == 1
        head = marked[marked.index(S) + 1:marked.index(ES)]
        tail = marked[marked.index(O) + 1:marked.index(EO)]
        assert " ".join(w for w in head if w not in MARKERS) == s.head_name, s.line_no
        assert " ".join(w for w in tail if w not in MARKERS) == s.tail_name, s.line_no
        overlapping += s.head[0] < s.tail[1] and s.tail[0] < s.head[1]
    assert overlapping >= 20   # the few dozen overlapping pairs went through the same checks
