"""Request files for the command line: MNRE annotation lines or JSON lines, read one line at a time.

Formats (``auto`` decides from the first non-blank line: JSON -> ``jsonl``, else ``mnre``):

- ``mnre``: one Python dict literal per line, as in the MNRE release (``token``, ``h``, ``t``, ``img_id``,
  ``relation``), parsed by :func:`dfma.mnre.parse_record`;
- ``jsonl``: one JSON object per line, any form :func:`dfma.runtime.as_sample` accepts (raw ``text`` with
  character spans, ``words`` or MNRE ``token`` with word spans, ``image``, ``crops``, ``img_id``), with
  an optional gold ``relation`` and an ``id`` echoed in the output; a line with ``entities`` (a list of
  spans) and optional ``pairs`` (``"all"``, the default, or a list of ``[head_index, tail_index]``) instead of
  ``head`` / ``tail`` is a :class:`~dfma.runtime.entity_pairs.PairRequest`: one prediction per pair.

Every line becomes a :class:`RequestLine` that carries either the request or the typed error that
makes it unusable (decoding errors and over-long lines included, :mod:`dfma.runtime.line_source`), so
that the caller reports it with its line number and goes on. The input is read once, as it streams.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from dfma.runtime.api_guards import request_error
from dfma.runtime.entity_pairs import PairRequest, pair_request
from dfma.runtime.line_source import count_lines, read_lines

from dfma.contract.errors import DataError, DFMAError, InputError
from dfma.contract.limits import DEFAULT_LIMITS, Limits, check_json_depth
from dfma.mnre import MAX_LINE_CHARS, parse_record
from dfma.contract.reprs import short_repr
from dfma.contract.samples import ImageFolders, Sample, as_sample

FORMATS = ("auto", "mnre", "jsonl")
__all__ = ["FORMATS", "RequestLine", "count_lines", "detect_format", "read_requests"]


@dataclass
class RequestLine:
    """One non-blank input line: its number, the request (``sample``, or ``pairs`` for an ``entities`` line)
    or the error, the gold relation if any."""

    line_no: int
    sample: Sample | None = None
    gold: str | None = None
    error: DFMAError | None = None
    image_missing: bool = False  # an img_id that was looked up and not found (absent image, mask 0)
    pairs: PairRequest | None = None


def detect_format(line: str) -> str:
    """``jsonl`` when a (first non-blank) line is a JSON object, else ``mnre``."""
    try:
        return "jsonl" if isinstance(json.loads(line), dict) else "mnre"
    except (ValueError, RecursionError):
        return "mnre"


def _no_constant(name: str) -> Any:
    """JSON has no NaN / Infinity (Python's json accepts them; the C++ runtime does not)."""
    raise ValueError(f"{name} is not JSON")


def _lone_surrogate(obj: Any) -> bool:
    """Whether a parsed JSON value holds a string UTF-8 cannot encode (an unpaired \\uD800-\\uDFFF)."""
    try:
        json.dumps(obj, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _parse(line: str, fmt: str, path: str, line_no: int, folders: ImageFolders | None, limits: Limits
           ) -> tuple[Sample | PairRequest, str | None, Any]:
    if fmt == "mnre":
        rec = parse_record(line, file=path, line_no=line_no)
        return as_sample(rec, folders=folders), rec.relation, rec.img_id
    if len(line) > MAX_LINE_CHARS:
        raise DataError(f"line is {len(line)} characters long (limit {MAX_LINE_CHARS})", field="record")
    check_json_depth(line, limits)
    try:
        obj = json.loads(line, parse_constant=_no_constant)
    except (ValueError, RecursionError) as e:
        raise DataError(f"not valid JSON ({e})", field="record") from None
    if not isinstance(obj, dict):
        raise DataError(f"expected a JSON object, got {type(obj).__name__}", field="record")
    if "\\u" in line and _lone_surrogate(obj):
        raise DataError("a \\uXXXX escape makes an unpaired surrogate (not valid Unicode text)", field="record")
    gold = obj.get("relation")
    if gold is not None and not isinstance(gold, str):
        raise DataError(f"expected a relation name, got {short_repr(gold, 60)}", field="relation")
    has_own_image = obj.get("image") is not None or bool(obj.get("crops"))
    request = pair_request(obj, folders) if "entities" in obj else as_sample(obj, folders=folders)
    return request, gold, None if has_own_image else obj.get("img_id")


def read_requests(path: str, fmt: str = "auto", folders: ImageFolders | None = None,
                  limits: Limits = DEFAULT_LIMITS) -> Iterator[RequestLine]:
    """Yield one :class:`RequestLine` per non-blank line of ``path`` (``-``: stdin), reading it once.

    ``auto`` decides the format from the first non-blank line that decodes. A bad line is yielded with
    its error; an input that cannot be opened or read raises DataError.
    """
    if fmt not in FORMATS:
        raise DataError(f"unknown input format {fmt!r}; choose one of {list(FORMATS)}", field="format")
    for line in read_lines(str(path), limits.max_line_bytes):
        if line.error is not None:
            yield RequestLine(line.number, error=line.error)
            continue
        if fmt == "auto":
            fmt = detect_format(line.text)
        try:
            request, gold, img_id = _parse(line.text, fmt, str(path), line.number, folders, limits)
        except (DataError, InputError) as e:
            yield RequestLine(line.number, error=e)
            continue
        except Exception as e:  # noqa: BLE001  a parser's untyped error is this line's error, never the run's
            yield RequestLine(line.number, error=request_error(e))
            continue
        missing = (img_id is not None and folders is not None and folders.images is not None
                   and request.image is None)
        if isinstance(request, PairRequest):
            yield RequestLine(line.number, gold=gold, image_missing=missing, pairs=request)
        else:
            yield RequestLine(line.number, request, gold, image_missing=missing)
