"""Reader for the MNRE annotation files (torch-free).

Each non-blank line is one Python dict literal (single-quoted, so ``json`` cannot read it; it is parsed
with ``ast.literal_eval``, which evaluates literals only)::

    {'token': [...], 'h': {'name': str, 'pos': [start, end]}, 't': {'name': str, 'pos': [start, end]},
     'img_id': 'twitter_xxx.jpg', 'relation': '/per/per/peer'}

``pos`` is a word span, end exclusive. Every field is validated; a bad line raises
:class:`~dfma.contract.errors.DataError` naming the file, the 1-based line number and the field, or, with
``on_error="collect"``, is returned in a list of errors so that the caller can report how many lines it
dropped and why. Blank lines are not records and are ignored.
"""
from __future__ import annotations

import ast
import os
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, overload

from dfma.contract.errors import DataError
from dfma.contract.labels import LabelMap

MAX_LINE_CHARS = 1_000_000  # a record is a sentence of a few dozen words; refuse absurd lines


@dataclass(frozen=True)
class MNRESample:
    """One MNRE record: the sentence's words, head/tail word spans (end exclusive), image and label."""

    words: tuple[str, ...]
    head: tuple[int, int]
    tail: tuple[int, int]
    head_name: str
    tail_name: str
    img_id: str
    relation: str
    line_no: int = 0


def _is_int(x: Any) -> bool:
    return type(x) is int  # bool is not a position


def _parse_entity(rec: dict, key: str, n_words: int, err) -> tuple[tuple[int, int], str]:
    ent = rec.get(key)
    if not isinstance(ent, dict):
        raise err(f"expected a dict with 'name' and 'pos', got {type(ent).__name__}", key)
    name = ent.get("name")
    if not isinstance(name, str):
        raise err(f"expected a string, got {name!r}", f"{key}.name")
    pos = ent.get("pos")
    if not isinstance(pos, (list, tuple)) or len(pos) != 2 or not all(_is_int(p) for p in pos):
        raise err(f"expected [start, end] ints, got {pos!r}", f"{key}.pos")
    s, e = pos
    if not 0 <= s < e <= n_words:
        raise err(f"span [{s}, {e}) is not within 0 <= start < end <= {n_words} words", f"{key}.pos")
    return (s, e), name


def parse_record(text: str, *, labels: LabelMap | None = None, file: str | None = None,
                 line_no: int = 0) -> MNRESample:
    """Parse and validate one annotation line; raises DataError naming file, line and field."""

    def err(message: str, field: str) -> DataError:
        return DataError(message, file=file, line=line_no, field=field)

    if len(text) > MAX_LINE_CHARS:
        raise err(f"line is {len(text)} characters long (limit {MAX_LINE_CHARS})", "record")
    try:
        rec = ast.literal_eval(text.strip())
    except (SyntaxError, ValueError, TypeError, MemoryError, RecursionError) as e:
        raise err(f"not a Python dict literal ({type(e).__name__}: {e})", "record") from None
    if not isinstance(rec, dict):
        raise err(f"expected a dict, got {type(rec).__name__}", "record")
    for key in ("token", "h", "t", "img_id", "relation"):
        if key not in rec:
            raise err("missing key", key)
    words = rec["token"]
    if not isinstance(words, list) or not words:
        raise err(f"expected a non-empty list of strings, got {words!r:.80}", "token")
    for i, w in enumerate(words):
        if not isinstance(w, str):
            raise err(f"word {i} is {type(w).__name__} {w!r:.40}, not a string", "token")
    head, head_name = _parse_entity(rec, "h", len(words), err)
    tail, tail_name = _parse_entity(rec, "t", len(words), err)
    img_id = rec["img_id"]
    if not isinstance(img_id, str) or not img_id.strip():
        raise err(f"expected a non-empty string, got {img_id!r}", "img_id")
    relation = rec["relation"]
    if not isinstance(relation, str) or not relation:
        raise err(f"expected a non-empty string, got {relation!r}", "relation")
    if labels is not None and relation not in labels:
        raise err(f"unknown relation {relation!r} (not in the {len(labels)}-label map)", "relation")
    return MNRESample(tuple(words), head, tail, head_name, tail_name, img_id, relation, line_no)


@overload
def read_mnre(path: str | os.PathLike, labels: LabelMap | None = ...,
              on_error: Literal["raise"] = ...) -> list[MNRESample]: ...
@overload
def read_mnre(path: str | os.PathLike, labels: LabelMap | None = ...,
              on_error: Literal["collect"] = ...) -> tuple[list[MNRESample], list[DataError]]: ...


def read_mnre(path: str | os.PathLike, labels: LabelMap | None = None, on_error: str = "raise"
              ) -> list[MNRESample] | tuple[list[MNRESample], list[DataError]]:
    """Read an MNRE annotation file.

    ``on_error="raise"`` (default): the first bad line raises DataError (file, line, field).
    ``on_error="collect"``: returns ``(samples, errors)``; ``errors`` lists one DataError per dropped
    line (see :func:`error_summary`). A file that cannot be read or decoded always raises.
    """
    if on_error not in ("raise", "collect"):
        raise ValueError(f"on_error must be 'raise' or 'collect', got {on_error!r}")
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror or e}", file=str(path)) from e
    except UnicodeDecodeError as e:
        raise DataError(f"not UTF-8 text: {e}", file=str(path)) from e
    samples: list[MNRESample] = []
    errors: list[DataError] = []
    for line_no, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            samples.append(parse_record(line, labels=labels, file=str(path), line_no=line_no))
        except DataError as e:
            if on_error == "raise":
                raise
            errors.append(e)
    if on_error == "collect":
        return samples, errors
    return samples


def error_summary(errors: Iterable[DataError], *, examples: int = 3) -> str:
    """One line per field: how many lines were dropped for it, and the first few messages."""
    errors = list(errors)
    if not errors:
        return "no lines dropped"
    by_field = Counter(e.field or "?" for e in errors)
    lines = [f"{len(errors)} line(s) dropped:"]
    for field, count in by_field.most_common():
        lines.append(f"  {field}: {count}")
        for e in [e for e in errors if (e.field or "?") == field][:examples]:
            lines.append(f"    {e}")
    return "\n".join(lines)
