"""Text preprocessing of contract section 2: markers, word pieces, truncation, padding (torch-free).

Words are turned into pieces by the tokenizer with special-token matching switched off
(``encode_special_tokens=True``), and the marker ids are spliced in at the word boundaries of section 2.1.
This is the same as encoding the marked word list, except that a word whose text happens to contain a
special-token string (a literal ``<s>`` or ``[SEP]`` in a tweet) is tokenized as plain text and can never
forge a marker: every encoding holds exactly one ``<s> </s> <o> </o>`` before truncation, and at least
the first ``<s>`` and ``<o>`` after it.
"""
from __future__ import annotations

import itertools
import operator
import os
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np
from tokenizers import Tokenizer

from dfma.contract.errors import InputError
from dfma.contract.reprs import short_repr
from dfma.contract.tokenizer import (
    HEAD_CLOSE,
    HEAD_OPEN,
    TAIL_CLOSE,
    TAIL_OPEN,
    load_tokenizer,
    special_ids,
)

T = TypeVar("T")
Span = tuple[int, int]
MIN_MAX_LENGTH = 4  # [CLS] + two pieces + [SEP]: the two-segment branch keeps both opening markers


# ---------------------------------------------------------------- validation

def _surrogate_at(text: str) -> int | None:
    """Index of the first unpaired surrogate (a str UTF-8 cannot encode), or None."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:
        return e.start
    return None


def check_encodable(text: str, field: str, what: str = "the text") -> None:
    """Refuse a string holding an unpaired surrogate (InputError naming the field and the index)."""
    at = _surrogate_at(text)
    if at is not None:
        raise InputError(f"{what} holds an unpaired surrogate U+{ord(text[at]):04X} at index {at} "
                         "(not valid Unicode text)", field=field)


def _check_span(span: Any, limit: int, field: str, unit: str) -> Span:
    if not isinstance(span, (tuple, list)) or len(span) != 2:
        raise InputError(f"expected a (start, end) pair, got {short_repr(span)}", field=field)
    try:
        if any(isinstance(x, bool) for x in span):
            raise TypeError
        s, e = operator.index(span[0]), operator.index(span[1])
    except TypeError:
        raise InputError(f"start and end must be ints, got {short_repr(span)}", field=field) from None
    if not 0 <= s < e <= limit:
        raise InputError(f"span ({s}, {e}) must satisfy 0 <= start < end <= {limit} ({unit})",
                         field=field)
    return s, e


def validate_words(words: Any, head: Any, tail: Any) -> tuple[list[str], Span, Span]:
    """Check a word list and two word spans; raises InputError naming the field and the value."""
    if not isinstance(words, (list, tuple)):
        raise InputError(f"expected a list of strings, got {type(words).__name__}", field="words")
    if not words:
        raise InputError("the word list is empty", field="words")
    for i, w in enumerate(words):
        if not isinstance(w, str):
            raise InputError(f"word {i} is {type(w).__name__} {short_repr(w, 40)}, not a string", field="words")
        check_encodable(w, "words", f"word {i}")
    spans = []
    for field, span in (("head", head), ("tail", tail)):
        s, e = _check_span(span, len(words), field, "word indices")
        if not "".join(words[s:e]).strip():
            raise InputError(f"span ({s}, {e}) covers only whitespace: {short_repr(words[s:e])}", field=field)
        spans.append((s, e))
    return list(words), spans[0], spans[1]


# ---------------------------------------------------------------- section 2.1: markers

def marker_plan(head: Span, tail: Span) -> list[tuple[int, str]]:
    """(word boundary, marker) in emission order: per boundary closers first, then openers.

    Closers: the span that started later closes first (tie: ``</o>`` before ``</s>``). Openers: the span
    that ends later opens first (tie: ``<s>`` before ``<o>``).
    """
    (hs, he), (ts, te) = head, tail
    events = [
        (he, 0, -hs, 1, HEAD_CLOSE), (te, 0, -ts, 0, TAIL_CLOSE),
        (hs, 1, -he, 0, HEAD_OPEN), (ts, 1, -te, 1, TAIL_OPEN),
    ]
    events.sort()
    return [(ev[0], ev[4]) for ev in events]


def insert_markers(words: Sequence[str], head: Span, tail: Span) -> list[str]:
    """The marked word list: ``<s> </s>`` around head, ``<o> </o>`` around tail (section 2.1)."""
    words, head, tail = validate_words(words, head, tail)
    out: list[str] = []
    prev = 0
    for boundary, marker in marker_plan(head, tail):
        out.extend(words[prev:boundary])
        out.append(marker)
        prev = boundary
    out.extend(words[prev:])
    return out


# ---------------------------------------------------------------- raw text with character spans

def text_to_words(text: str, head_chars: Any, tail_chars: Any) -> tuple[list[str], Span, Span]:
    """Cut ``text`` at the span boundaries, split each piece on whitespace; spans become word ranges."""
    if not isinstance(text, str):
        raise InputError(f"expected a string, got {type(text).__name__}", field="text")
    check_encodable(text, "text")
    if not text.strip():
        raise InputError(f"the text is empty or whitespace only: {short_repr(text, 40)}", field="text")
    spans = []
    for field, span in (("head", head_chars), ("tail", tail_chars)):
        s, e = _check_span(span, len(text), field, "character offsets")
        if not text[s:e].strip():
            raise InputError(f"span ({s}, {e}) covers only whitespace: {short_repr(text[s:e])}", field=field)
        spans.append((s, e))
    cuts = sorted({0, len(text), *spans[0], *spans[1]})
    words: list[str] = []
    word_at: dict[int, int] = {0: 0}
    for a, b in itertools.pairwise(cuts):
        words.extend(text[a:b].split())
        word_at[b] = len(words)
    (hs, he), (ts, te) = spans
    return words, (word_at[hs], word_at[he]), (word_at[ts], word_at[te])


# ---------------------------------------------------------------- section 2.3: truncation

def truncation_segments(n: int, max_length: int, head_open: int, tail_open: int,
                        head_close: int, tail_close: int) -> list[tuple[int, int]]:
    """Half-open piece ranges kept by section 2.3 for ``n`` pieces with markers at these indices."""
    m = max_length - 2
    if m < MIN_MAX_LENGTH - 2:
        raise InputError(f"must be at least {MIN_MAX_LENGTH}, got {max_length}", field="max_length")
    if n <= m:
        return [(0, n)]
    lo = min(head_open, tail_open)
    hi = 1 + max(head_close, tail_close)
    if hi - lo <= m:
        a = min(max(lo - (m - (hi - lo)) // 2, 0), n - m)
        return [(a, a + m)]
    h1, h2 = m - m // 2, m // 2
    lo1, lo2 = sorted((head_open, tail_open))
    s2 = min(max(lo2, lo1 + h1), n - h2)
    return [(lo1, lo1 + h1), (s2, s2 + h2)]


def truncate(pieces: Sequence[T], max_length: int, head_open: int, tail_open: int,
             head_close: int, tail_close: int) -> list[T]:
    """Section 2.3 as a pure function: the kept pieces (without ``[CLS]``/``[SEP]``)."""
    out: list[T] = []
    for a, b in truncation_segments(len(pieces), max_length, head_open, tail_open,
                                    head_close, tail_close):
        out.extend(pieces[a:b])
    return out


# ---------------------------------------------------------------- encoder

@dataclass(frozen=True)
class Encoded:
    """One encoded row: ``[CLS] ... [SEP]`` ids and the positions of the first ``<s>`` and ``<o>``."""

    input_ids: list[int]
    head_pos: int
    tail_pos: int


def check_encoding(enc: Encoded, special: dict[str, int], max_length: int | None = None) -> None:
    """Assert the invariants every encoding must satisfy; raises InputError on violation."""
    ids = enc.input_ids
    if len(ids) < 4 or ids[0] != special["cls"] or ids[-1] != special["sep"]:
        raise InputError(f"row must be [CLS] ... [SEP] with both markers, got {ids[:8]}...",
                         field="input_ids")
    if max_length is not None and len(ids) > max_length:
        raise InputError(f"row has {len(ids)} pieces > max_length {max_length}", field="input_ids")
    for name, pos, key in (("head", enc.head_pos, "head_open"), ("tail", enc.tail_pos, "tail_open")):
        if special[key] not in ids or ids.index(special[key]) != pos:
            raise InputError(f"{pos} is not the first {key} marker of the row", field=name)


class TextEncoder:
    """Words or raw text + head/tail spans -> :class:`Encoded` rows (contract section 2)."""

    def __init__(self, tokenizer: Tokenizer, max_length: int):
        """Wrap a tokenizer (not modified) with its special ids; ``max_length`` counts [CLS]/[SEP]."""
        if isinstance(max_length, bool) or not isinstance(max_length, int) or max_length < MIN_MAX_LENGTH:
            raise InputError(f"must be an int >= {MIN_MAX_LENGTH}, got {max_length!r}", field="max_length")
        self.tokenizer = tokenizer
        self.max_length = max_length
        self.special = special_ids(tokenizer)
        self.pad_id = self.special["pad"]
        self._marker_ids = {HEAD_OPEN: self.special["head_open"], HEAD_CLOSE: self.special["head_close"],
                            TAIL_OPEN: self.special["tail_open"], TAIL_CLOSE: self.special["tail_close"]}
        words_tok = Tokenizer.from_str(tokenizer.to_str())
        words_tok.no_truncation()
        words_tok.no_padding()
        words_tok.encode_special_tokens = True  # words are text, never markers
        self._words_tok = words_tok

    @classmethod
    def from_folder(cls, path: str | os.PathLike, max_length: int) -> TextEncoder:
        """Load the tokenizer of a folder (tokenizer.json or vocab.txt) and wrap it."""
        return cls(load_tokenizer(path), max_length)

    def _assemble(self, ids: list[int], word_ids: list[int | None], head: Span, tail: Span) -> Encoded:
        pieces: list[int] = []
        at: dict[str, int] = {}
        prev = 0
        for boundary, marker in marker_plan(head, tail):
            cut = bisect_left(word_ids, boundary)
            pieces.extend(ids[prev:cut])
            at[marker] = len(pieces)
            pieces.append(self._marker_ids[marker])
            prev = cut
        pieces.extend(ids[prev:])
        kept = truncate(pieces, self.max_length, at[HEAD_OPEN], at[TAIL_OPEN], at[HEAD_CLOSE], at[TAIL_CLOSE])
        row = [self.special["cls"], *kept, self.special["sep"]]
        return Encoded(row, row.index(self.special["head_open"]), row.index(self.special["tail_open"]))

    def encode_words(self, words: Sequence[str], head: Span, tail: Span) -> Encoded:
        """Encode one word list with word spans ``[start, end)``."""
        words, head, tail = validate_words(words, head, tail)
        enc = self._words_tok.encode(words, is_pretokenized=True, add_special_tokens=False)
        return self._assemble(enc.ids, enc.word_ids, head, tail)

    def encode_words_batch(self, items: Sequence[tuple[Sequence[str], Span, Span]]) -> list[Encoded]:
        """Encode many ``(words, head, tail)`` items at once (``encode_batch``: the fast path)."""
        checked = [validate_words(*item) for item in items]
        if not checked:
            return []
        encs = self._words_tok.encode_batch([w for w, _, _ in checked], is_pretokenized=True,
                                            add_special_tokens=False)
        return [self._assemble(e.ids, e.word_ids, h, t) for e, (_, h, t) in zip(encs, checked)]

    def encode_text(self, text: str, head_chars: Span, tail_chars: Span) -> Encoded:
        """Encode raw text with character spans ``[start, end)``."""
        return self.encode_words(*text_to_words(text, head_chars, tail_chars))

    def encode_text_batch(self, items: Sequence[tuple[str, Span, Span]]) -> list[Encoded]:
        """Encode many ``(text, head_chars, tail_chars)`` items at once."""
        return self.encode_words_batch([text_to_words(*item) for item in items])

    def pad_batch(self, encoded: Sequence[Encoded]) -> tuple[np.ndarray, np.ndarray]:
        """Right-pad rows with ``[PAD]`` to the longest: ``(input_ids, attention_mask)``, int64 [B, L]."""
        if not encoded:
            raise InputError("cannot pad an empty batch", field="batch")
        width = max(len(e.input_ids) for e in encoded)
        ids = np.full((len(encoded), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(encoded), width), dtype=np.int64)
        for r, e in enumerate(encoded):
            ids[r, :len(e.input_ids)] = e.input_ids
            mask[r, :len(e.input_ids)] = 1
        return ids, mask

    def tokens(self, enc: Encoded) -> list[str]:
        """The piece strings of a row (for debugging and tests)."""
        return [self.tokenizer.id_to_token(i) for i in enc.input_ids]
