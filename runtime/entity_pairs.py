"""One sentence, many entities, every (or some) ordered entity pair: the requests of ``predict_pairs``.

    request = PairRequest("Obama met Merkel in Berlin", [(0, 5), (10, 16), (20, 26)], image="post.jpg")
    entities, pairs = check_pair_request(request, limits)      # typed errors before any work
    samples = pair_samples(request, entities, pairs)            # one Sample per pair, ids (h, t)

``sentence`` is a str (entity spans in characters, ``[start, end)``) or a list of words (word spans);
``entities`` a list of at least two spans, no span given twice (overlapping spans are allowed, as for
``head`` / ``tail``); ``pairs`` ``"all"`` (every ordered pair with head != tail: (0, 1), (0, 2), ..., (1, 0),
...) or a list of ``[head_index, tail_index]``. Every problem is an InputError naming the field
(``sentence``, ``entities``, ``entities[i]``, ``pairs``, ``pairs[k]``) raised before anything runs.
"""
from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from dfma.contract.errors import InputError
from dfma.contract.limits import Limits, check_text, check_words
from dfma.contract.reprs import short_repr
from dfma.contract.samples import ImageFolders, Sample, request_images, text_key
from dfma.runtime.api_guards import with_field

Span = tuple[int, int]
ALL = "all"


@dataclass(frozen=True)
class PairRequest:
    """A sentence with its entities, the post's image and crops, the pairs wanted and an id (module doc)."""

    sentence: Any
    entities: Any
    image: Any = None
    crops: Any = field(default_factory=tuple)
    pairs: Any = ALL
    id: Any = None


def pair_id(request_id: Any, head: int, tail: int) -> tuple:
    """The ``id`` of one pair's prediction: ``(head, tail)``, or ``(id, head, tail)`` when the request has one."""
    return (head, tail) if request_id is None else (request_id, head, tail)


def _as_int_pair(value: Any, field: str, what: str) -> tuple[int, int]:
    if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)) or len(value) != 2:
        raise InputError(f"expected {what}, got {short_repr(value, 60)}", field=field)
    if any(isinstance(x, bool) for x in value):
        raise InputError(f"expected {what} of ints, got {short_repr(value, 60)}", field=field)
    try:
        return operator.index(value[0]), operator.index(value[1])
    except TypeError:
        raise InputError(f"expected {what} of ints, got {short_repr(value, 60)}", field=field) from None


def _check_sentence(sentence: Any, limits: Limits) -> int:
    """The span limit of a sentence (characters of a str, entries of a word list); InputError ``sentence``."""
    if isinstance(sentence, str):
        try:
            check_text(sentence, limits)
        except InputError as e:
            raise with_field(e, "sentence") from None
        if not sentence.strip():
            raise InputError(f"the text is empty or whitespace only: {short_repr(sentence, 40)}", field="sentence")
        return len(sentence)
    if isinstance(sentence, (list, tuple)):
        try:
            check_words(sentence, limits)
        except InputError as e:
            raise with_field(e, "sentence") from None
        if not sentence:
            raise InputError("the word list is empty", field="sentence")
        for i, w in enumerate(sentence):
            if not isinstance(w, str):
                raise InputError(f"word {i} is {type(w).__name__} {short_repr(w, 40)}, not a string", field="sentence")
        return len(sentence)
    raise InputError(f"expected a str (entities in characters) or a list of words (entities in words), got "
                     f"{type(sentence).__name__}", field="sentence")


def _check_entities(sentence: Any, entities: Any, limit: int, limits: Limits) -> list[Span]:
    if isinstance(entities, (str, bytes, Mapping)) or not isinstance(entities, (list, tuple)):
        raise InputError(f"expected a list of [start, end) spans, got {type(entities).__name__}", field="entities")
    if len(entities) < 2:
        raise InputError(f"needs at least two entities to pair, got {len(entities)}", field="entities")
    if len(entities) > limits.max_batch_requests:
        raise InputError(f"{len(entities)} entities exceeds max_batch_requests {limits.max_batch_requests}",
                         field="entities")
    unit = "characters" if isinstance(sentence, str) else "word indices"
    spans: list[Span] = []
    seen: dict[Span, int] = {}
    for i, entity in enumerate(entities):
        name = f"entities[{i}]"
        s, e = _as_int_pair(entity, name, "a (start, end) span")
        if not 0 <= s < e <= limit:
            raise InputError(f"span ({s}, {e}) must satisfy 0 <= start < end <= {limit} ({unit})", field=name)
        covered = sentence[s:e] if isinstance(sentence, str) else "".join(sentence[s:e])
        if not covered.strip():
            raise InputError(f"span ({s}, {e}) covers only whitespace: {short_repr(sentence[s:e])}", field=name)
        if (s, e) in seen:
            raise InputError(f"span ({s}, {e}) is given twice (also entities[{seen[(s, e)]}])", field=name)
        seen[(s, e)] = i
        spans.append((s, e))
    return spans


def _check_pairs(pairs: Any, n: int, limits: Limits) -> list[tuple[int, int]]:
    if isinstance(pairs, str):
        if pairs != ALL:
            raise InputError(f"expected 'all' or a list of [head, tail] entity indices, got {short_repr(pairs, 40)}",
                             field="pairs")
        if n * (n - 1) > limits.max_batch_requests:
            raise InputError(f"{n} entities make {n * (n - 1)} ordered pairs, over max_batch_requests "
                             f"{limits.max_batch_requests}; give a list of pairs", field="pairs")
        return [(h, t) for h in range(n) for t in range(n) if h != t]
    if not isinstance(pairs, (list, tuple)):
        raise InputError(f"expected 'all' or a list of [head, tail] entity indices, got {type(pairs).__name__}",
                         field="pairs")
    if not pairs:
        raise InputError("is empty: give at least one [head, tail] pair, or 'all'", field="pairs")
    if len(pairs) > limits.max_batch_requests:
        raise InputError(f"{len(pairs)} pairs exceeds max_batch_requests {limits.max_batch_requests}", field="pairs")
    out = []
    for k, pair in enumerate(pairs):
        name = f"pairs[{k}]"
        h, t = _as_int_pair(pair, name, "a [head_index, tail_index] pair")
        if not (0 <= h < n and 0 <= t < n):
            raise InputError(f"entity indices ({h}, {t}) out of range: there are {n} entities", field=name)
        if h == t:
            raise InputError(f"head and tail are the same entity ({h}); a pair needs two", field=name)
        out.append((h, t))
    return out


def check_pair_request(request: PairRequest, limits: Limits) -> tuple[list[Span], list[tuple[int, int]]]:
    """``(entity spans, (head, tail) index pairs)`` of a request; InputError naming the field (module doc)."""
    limit = _check_sentence(request.sentence, limits)
    entities = _check_entities(request.sentence, request.entities, limit, limits)
    return entities, _check_pairs(request.pairs, len(entities), limits)


def pair_samples(request: PairRequest, entities: Sequence[Span], pairs: Sequence[tuple[int, int]]) -> list[Sample]:
    """One :class:`Sample` per pair (the request's image and crops on each, ``id`` from :func:`pair_id`)."""
    words = None if isinstance(request.sentence, str) else list(request.sentence)
    text = request.sentence if isinstance(request.sentence, str) else None
    return [Sample(head=entities[h], tail=entities[t], words=words, text=text, image=request.image,
                   crops=request.crops, id=pair_id(request.id, h, t)) for h, t in pairs]


def pair_field(error: InputError, head: int, tail: int) -> InputError:
    """A per-pair preprocessing error renamed to the request's fields (``text`` / ``words`` -> ``sentence``,
    ``head`` -> ``entities[head]``, ``tail`` -> ``entities[tail]``)."""
    name = {"text": "sentence", "words": "sentence", "head": f"entities[{head}]",
            "tail": f"entities[{tail}]"}.get(error.field or "")
    return with_field(error, name) if name else error


def pair_request(rec: Mapping, folders: ImageFolders | None = None) -> PairRequest:
    """The :class:`PairRequest` of a JSON-lines record: ``text`` (character spans) or ``words`` / ``token``
    (word spans), ``entities``, optional ``pairs`` (default ``"all"``), ``image`` / ``crops`` / ``img_id``
    (resolved as for any request) and ``id``. InputError when it also gives ``head`` / ``tail``."""
    also = [k for k in ("head", "tail", "h", "t") if k in rec]
    if also:
        raise InputError(f"give either 'entities' (with optional 'pairs') or a head and a tail, not both "
                         f"(also got {also})", field="entities")
    key = text_key(rec)
    if key is None:
        raise InputError("a request with 'entities' needs 'text' (character spans) or 'words' / 'token' "
                         "(word spans)", field="sentence")
    image, crops = request_images(rec, folders)
    return PairRequest(rec[key], rec["entities"], image=image, crops=crops, pairs=rec.get("pairs", ALL),
                       id=rec.get("id"))
