"""Request files for the command line: MNRE annotation lines or JSON lines, read one line at a time.

Formats (``auto`` decides from the first non-blank line: JSON -> ``jsonl``, else ``mnre``):

- ``mnre``: one Python dict literal per line, as in the MNRE release (``token``, ``h``, ``t``, ``img_id``,
  ``relation``), parsed by :func:`dfma.contract.mnre.parse_record`;
- ``jsonl``: one JSON object per line, any form :func:`dfma.runtime.as_sample` accepts (raw ``text`` with
  character spans, ``words`` or MNRE ``token`` with word spans, ``image``, ``crops``, ``img_id``), with
  an optional gold ``relation`` and an ``id`` echoed in the output.

Every line becomes a :class:`RequestLine` that carries either the request or the typed error that
makes it unusable, so that the caller reports it with its line number and goes on.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dfma.contract.errors import DataError, DFMAError, InputError
from dfma.contract.mnre import MAX_LINE_CHARS, parse_record

from dfma.contract.samples import ImageFolders, Sample, as_sample

FORMATS = ("auto", "mnre", "jsonl")


@dataclass
class RequestLine:
    """One non-blank input line: its number, the request or the error, the gold relation if any."""

    line_no: int
    sample: Sample | None = None
    gold: str | None = None
    error: DFMAError | None = None
    image_missing: bool = False  # an img_id that was looked up and not found (absent image, mask 0)


def _lines(path: Path) -> Iterator[tuple[int, str]]:
    try:
        with path.open("r", encoding="utf-8", newline="") as f:
            for line_no, line in enumerate(f, start=1):
                if line.strip():
                    yield line_no, line
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror or e}", file=str(path)) from e
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text: {e}", file=str(path)) from e


def detect_format(path: str | os.PathLike) -> str:
    """``jsonl`` when the first non-blank line is a JSON object, else ``mnre``."""
    for _, line in _lines(Path(path)):
        try:
            return "jsonl" if isinstance(json.loads(line), dict) else "mnre"
        except ValueError:
            return "mnre"
    return "jsonl"


def count_lines(path: str | os.PathLike) -> int:
    """The number of non-blank lines (for progress)."""
    return sum(1 for _ in _lines(Path(path)))


def _parse(line: str, fmt: str, path: Path, line_no: int, folders: ImageFolders | None
           ) -> tuple[Sample, str | None, Any]:
    if fmt == "mnre":
        rec = parse_record(line, file=str(path), line_no=line_no)
        return as_sample(rec, folders=folders), rec.relation, rec.img_id
    if len(line) > MAX_LINE_CHARS:
        raise DataError(f"line is {len(line)} characters long (limit {MAX_LINE_CHARS})", field="record")
    try:
        obj = json.loads(line)
    except ValueError as e:
        raise DataError(f"not valid JSON ({e})", field="record") from None
    if not isinstance(obj, dict):
        raise DataError(f"expected a JSON object, got {type(obj).__name__}", field="record")
    gold = obj.get("relation")
    if gold is not None and not isinstance(gold, str):
        raise DataError(f"expected a relation name, got {gold!r:.60}", field="relation")
    has_own_image = obj.get("image") is not None or bool(obj.get("crops"))
    return as_sample(obj, folders=folders), gold, None if has_own_image else obj.get("img_id")


def read_requests(path: str | os.PathLike, fmt: str = "auto", folders: ImageFolders | None = None
                  ) -> Iterator[RequestLine]:
    """Yield one :class:`RequestLine` per non-blank line; a file that cannot be read raises DataError."""
    path = Path(path)
    if fmt not in FORMATS:
        raise DataError(f"unknown input format {fmt!r}; choose one of {list(FORMATS)}", field="format")
    if fmt == "auto":
        fmt = detect_format(path)
    for line_no, line in _lines(path):
        try:
            sample, gold, img_id = _parse(line, fmt, path, line_no, folders)
        except (DataError, InputError) as e:
            yield RequestLine(line_no, error=e)
            continue
        missing = (img_id is not None and folders is not None and folders.images is not None
                   and sample.image is None)
        yield RequestLine(line_no, sample, gold, image_missing=missing)
