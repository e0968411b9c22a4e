"""The relation label map: class id <-> relation name (torch-free).

MNRE ships it as ``rel2id.json`` (``{"None": 0, "/per/per/parent": 1, ...}``); bundles store it as a
list whose index is the class id. Both forms are validated: ids are exactly ``0..n-1``, names are
unique non-empty strings, and the no-relation label ``"None"`` is present.
"""
from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from dfma.contract.errors import DataError

NONE_LABEL = "None"


class LabelMap:
    """An immutable bijection between relation names and contiguous class ids ``0..n-1``."""

    def __init__(self, names: Iterable[str], *, source: str | None = None):
        """Build from names in id order; ``source`` (a file name) only improves error messages."""
        names = list(names)
        if not names:
            raise DataError("the label map is empty", file=source, field="labels")
        index: dict[str, int] = {}
        for i, name in enumerate(names):
            if not isinstance(name, str) or not name:
                raise DataError(f"label {i} must be a non-empty string, got {name!r}",
                                file=source, field="labels")
            if name in index:
                raise DataError(f"duplicate label {name!r} (ids {index[name]} and {i})",
                                file=source, field="labels")
            index[name] = i
        if NONE_LABEL not in index:
            raise DataError(f"the label map has no {NONE_LABEL!r} label", file=source, field="labels")
        self._names = tuple(names)
        self._index = index

    @classmethod
    def from_list(cls, names: Iterable[str]) -> LabelMap:
        """Build from a list whose index is the class id (the bundle's ``labels``)."""
        return cls(names)

    @classmethod
    def from_dict(cls, rel2id: Mapping[str, int], *, source: str | None = None) -> LabelMap:
        """Build from a name -> id mapping; ids must be the ints ``0..n-1``, each used once."""
        if not isinstance(rel2id, Mapping):
            raise DataError(f"expected an object name -> id, got {type(rel2id).__name__}",
                            file=source, field="labels")
        by_id: dict[int, str] = {}
        for name, i in rel2id.items():
            if type(i) is not int:
                raise DataError(f"id of {name!r} must be an int, got {i!r}", file=source, field=str(name))
            if i in by_id:
                raise DataError(f"id {i} is used by both {by_id[i]!r} and {name!r}",
                                file=source, field=str(name))
            by_id[i] = name
        n = len(by_id)
        if sorted(by_id) != list(range(n)):
            raise DataError(f"ids must be contiguous 0..{n - 1}, got {sorted(by_id)}",
                            file=source, field="labels")
        return cls((by_id[i] for i in range(n)), source=source)

    @classmethod
    def from_json(cls, path: str | os.PathLike) -> LabelMap:
        """Read ``rel2id.json`` (object name -> id) or a JSON list of names."""
        path = Path(path)
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except OSError as e:
            raise DataError(f"cannot read the label map: {e.strerror or e}", file=str(path)) from e
        except (UnicodeDecodeError, json.JSONDecodeError) as e:
            raise DataError(f"not valid JSON: {e}", file=str(path)) from e
        if isinstance(data, list):
            return cls(data, source=str(path))
        return cls.from_dict(data, source=str(path))

    @property
    def names(self) -> list[str]:
        """Relation names; index = class id."""
        return list(self._names)

    @property
    def none_id(self) -> int:
        """Class id of the no-relation label ``"None"``."""
        return self._index[NONE_LABEL]

    def id(self, name: str) -> int:
        """Class id of ``name``; raises DataError naming the unknown relation."""
        try:
            return self._index[name]
        except (KeyError, TypeError):
            raise DataError(f"unknown relation {name!r} (not among the {len(self)} labels)",
                            field="relation") from None

    def name(self, i: int) -> str:
        """Relation name of class id ``i``; raises DataError when out of range."""
        if isinstance(i, bool) or not hasattr(i, "__index__"):
            raise DataError(f"class id must be an int, got {i!r}", field="relation")
        i = i.__index__()
        if not 0 <= i < len(self._names):
            raise DataError(f"class id {i} is out of range 0..{len(self._names) - 1}", field="relation")
        return self._names[i]

    def to_dict(self) -> dict[str, int]:
        """The ``rel2id`` form: name -> id."""
        return dict(self._index)

    def __len__(self) -> int:
        return len(self._names)

    def __contains__(self, name: object) -> bool:
        return name in self._index

    def __eq__(self, other: object) -> bool:
        return isinstance(other, LabelMap) and self._names == other._names

    def __hash__(self) -> int:
        return hash(self._names)

    def __repr__(self) -> str:
        return f"LabelMap({len(self)} labels, none_id={self.none_id})"
