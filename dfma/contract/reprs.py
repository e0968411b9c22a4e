"""Short, safe ``repr`` of request values for error messages (torch-free).

``f"{value!r:.80}"`` builds the whole repr before cutting it: a nested list 100,000 deep raises
RecursionError and a 100 MB string costs 100 MB. :func:`short_repr` bounds depth, items and length.
"""
from __future__ import annotations

import reprlib
from typing import Any

_REPR = reprlib.Repr()
_REPR.maxlevel = 3
_REPR.maxstring = 60
_REPR.maxother = 60
_REPR.maxlist = _REPR.maxtuple = _REPR.maxdict = _REPR.maxset = 6


def short_repr(value: Any, width: int = 80) -> str:
    """At most ``width`` characters of a bounded repr of ``value`` (never raises)."""
    try:
        text = _REPR.repr(value)
    except Exception:  # noqa: BLE001  a user object whose __repr__ fails
        text = f"<{type(value).__name__}>"
    return text if len(text) <= width else text[:width - 3] + "..."
