"""Request lines from a file, a pipe or stdin, read once, each decoded on its own (the command line's input).

``--input -`` is stdin; a path must be a regular file or a FIFO (a named pipe, ``/dev/stdin``, a shell's
``<(...)``): a folder or a device (``/dev/zero``) is refused before anything is read. Lines are read in
binary, at most ``max_line_bytes`` each (the rest of a longer line is skipped and the line reported), so
one bad line costs bounded memory; each is decoded as UTF-8 separately, so an invalid byte is that line's
error. A UTF-8 byte order mark at the start of a line is dropped (files joined with ``cat`` keep theirs).
"""
from __future__ import annotations

import os
import stat
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

from dfma.contract.errors import DataError
from dfma.contract.image_files import file_kind

BOM = b"\xef\xbb\xbf"
STDIN = "-"


@dataclass(frozen=True)
class Line:
    """One non-blank input line: its 1-based number and its text, or the DataError that makes it unusable."""

    number: int
    text: str | None = None
    error: DataError | None = None


def check_input(path: str) -> bool:
    """Refuse an input that cannot be streamed (missing, a folder, a device): DataError naming it.

    Returns whether it is a regular file (whose lines can be counted beforehand). Nothing is opened.
    """
    if path == STDIN:
        return False
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        raise DataError("no such file", file=path) from None
    except (OSError, ValueError) as e:
        raise DataError(f"cannot read: {getattr(e, 'strerror', None) or e}", file=path) from None
    if stat.S_ISREG(mode):
        return True
    if stat.S_ISFIFO(mode):
        return False
    raise DataError(f"{file_kind(mode)}, not a file or a pipe", file=path)


def open_input(path: str) -> BinaryIO:
    """The input as a binary stream (stdin for ``-``); DataError when it cannot be opened."""
    if path == STDIN:
        return sys.stdin.buffer
    check_input(path)
    try:
        return open(path, "rb")
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror or e}", file=path) from None


def _raw_lines(stream: BinaryIO, max_bytes: int) -> Iterator[tuple[int, bytes | None]]:
    """``(number, bytes)`` per line without its newline; ``bytes`` None for a line over ``max_bytes``."""
    number = 0
    while True:
        chunk = stream.readline(max_bytes + 2)  # the line, its "\r\n", and one byte to tell it is longer
        if not chunk:
            return
        number += 1
        body = chunk.rstrip(b"\n").rstrip(b"\r") if chunk.endswith(b"\n") else chunk
        if len(body) <= max_bytes and (chunk.endswith(b"\n") or len(chunk) <= max_bytes):
            yield number, body
            continue
        while not chunk.endswith(b"\n"):  # skip the rest of the long line, in bounded pieces
            chunk = stream.readline(1 << 20)
            if not chunk:
                break
        yield number, None


def read_lines(path: str, max_bytes: int, stream: BinaryIO | None = None) -> Iterator[Line]:
    """Every non-blank line of ``path`` (or of an already opened ``stream``), decoded, with its number."""
    own = stream is None
    stream = open_input(path) if own else stream
    try:
        for number, raw in _raw_lines(stream, max_bytes):
            if raw is not None and raw.startswith(BOM):  # any line: concatenated files keep theirs
                raw = raw[len(BOM):]
            if raw is None:
                yield Line(number, error=DataError(f"line is longer than {max_bytes} bytes (max_line_bytes)",
                                                   file=path, line=number, field="record"))
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                yield Line(number, error=DataError(f"not UTF-8 text: byte 0x{raw[e.start]:02x} at byte offset "
                                                   f"{e.start} ({e.reason})", file=path, line=number,
                                                   field="record"))
                continue
            if text.strip():
                yield Line(number, text)
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror or e}", file=path) from None
    finally:
        if own and stream is not sys.stdin.buffer:
            stream.close()


def count_lines(path: str, max_bytes: int) -> int | None:
    """The number of non-blank lines of a regular file (for progress); None for a pipe or stdin."""
    if not check_input(path):
        return None
    return sum(1 for _ in read_lines(path, max_bytes))
