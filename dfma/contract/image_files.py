"""Reading an image file with bounded work (torch-free): regular files only, at most ``max_image_bytes``.

The file is opened without blocking (a FIFO would wait for a writer) and checked with ``fstat`` on the
open descriptor before a byte is read: a folder, a FIFO, a device (``/dev/zero``) or a socket is refused,
and so is a file over the size limit. The C++ runtime does the same (``image_file.cpp``).
"""
from __future__ import annotations

import os
import stat

from dfma.contract.errors import ImageError
from dfma.contract.limits import Limits, check_image_bytes

_OPEN_FLAGS = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_NOCTTY", 0)
_KINDS = ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"), (stat.S_ISCHR, "a character device"),
          (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def file_kind(mode: int) -> str:
    """What a non-regular ``st_mode`` is, in words (``a folder``, ``a character device``, ...)."""
    return next((name for test, name in _KINDS if test(mode)), "not a regular file")


def read_image_file(path: str | os.PathLike, limits: Limits) -> bytes:
    """The bytes of a regular file of at most ``limits.max_image_bytes``; ImageError (field ``image``)
    naming the file otherwise: missing, not a regular file, too large, unreadable, or a path the OS
    refuses (too long, embedded NUL, not encodable)."""
    name = os.fsdecode(path) if isinstance(path, bytes) else str(path)
    if len(name) > 200:
        name = f"{name[:120]}...{name[-60:]} ({len(name)} characters)"
    try:
        fd = os.open(path, _OPEN_FLAGS)
    except (FileNotFoundError, NotADirectoryError):
        raise ImageError(f"{name}: no such image file", field="image") from None
    except OSError as e:
        raise ImageError(f"{name}: cannot open ({e.strerror or e})", field="image") from None
    except (ValueError, TypeError, UnicodeError) as e:  # embedded NUL, lone surrogate
        raise ImageError(f"{name!r}: not a usable file name ({e})", field="image") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise ImageError(f"{name}: {file_kind(st.st_mode)}, not a regular file (images are read from "
                             "regular files only)", field="image")
        check_image_bytes(st.st_size, name, limits)
        chunks, total = [], 0
        while True:  # the file may grow after fstat: read at most one byte past the limit
            block = os.read(fd, min(1 << 20, limits.max_image_bytes + 1 - total))
            if not block:
                break
            chunks.append(block)
            total += len(block)
            check_image_bytes(total, name, limits)
        return b"".join(chunks)
    except OSError as e:
        raise ImageError(f"{name}: read error ({e.strerror or e})", field="image") from None
    finally:
        os.close(fd)
