"""The command line's output file: written beside its target under a temporary name, renamed at the end.

:func:`check_output` runs before the bundle loads (a folder, or a path whose parent is a file, is refused
then); :class:`OutputFile` is opened only once the bundle has loaded, so a failed load never touches an
existing output. When the run ends, normally, on a fatal error or on Ctrl-C, the lines written are renamed
into place (nothing predicted is lost); a run that fails before writing a line leaves the old file as it
was. ``-`` is stdout, written as it goes.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Self, TextIO

from dfma.contract.atomic import AtomicFile
from dfma.contract.errors import DataError

STDOUT = "-"


def check_output(path: str) -> None:
    """Refuse an output path that cannot become a file (a folder, a parent that is a file): DataError."""
    if path == STDOUT:
        return
    target = Path(path)
    try:
        is_dir = target.is_dir()
        parent = next((p for p in target.parents if p.exists()), Path("."))
    except (OSError, ValueError) as e:
        raise DataError(f"cannot write here: {getattr(e, 'strerror', None) or e}", file=path) from None
    if is_dir:
        raise DataError("is a folder; give a file name for the output", file=path)
    if not parent.is_dir():
        raise DataError(f"{parent} is not a folder", file=path)


class OutputFile:
    """A text file written under a temporary name in the target's folder and renamed over it on close
    (``dfma.contract.atomic.AtomicFile``), or stdout for ``-``."""

    def __init__(self, path: str):
        """Create the temporary file (and missing parent folders); DataError when the folder refuses it."""
        self.path = path
        self.written = 0
        self._file: AtomicFile | None = None
        if path == STDOUT:
            self.stream: TextIO = sys.stdout
            return
        try:
            # JSON escapes everything but a lone surrogate of an echoed id; written as \udXXX, still valid JSON
            self._file = AtomicFile(path, encoding="utf-8", errors="backslashreplace")
        except OSError as e:
            raise DataError(f"cannot write: {e.strerror or e}", file=path) from None
        self.stream = self._file.stream

    def write(self, text: str) -> None:
        """Write text (the caller adds newlines)."""
        self.stream.write(text)
        self.written += 1

    def close(self, keep: bool = True) -> None:
        """Flush and rename the temporary file over the target (stdout: flush only); ``keep=False``
        removes it instead, leaving the target as it was."""
        if self._file is None:
            self.stream.flush()
            return
        file, self._file = self._file, None
        try:
            file.close(keep=keep)
        except OSError as e:
            raise DataError(f"cannot write: {e.strerror or e}", file=self.path) from None

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(keep=exc_type is None or self.written > 0)
