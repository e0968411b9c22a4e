"""Bounding what a PNG's ancillary chunks inflate to, before a decoder sees them (torch-free).

A text (``tEXt``, ``zTXt``, ``iTXt``) or ICC (``iCCP``) chunk of a few hundred bytes can inflate to
gigabytes; decoders inflate them while reading the header. :func:`check_ancillary` walks the chunks of
PNG bytes (up to ``IEND``) and inflates each compressed one into a capped buffer, as Pillow's
``PngImagePlugin`` splits them: a chunk that inflates to ``max_chunk_bytes`` or more, or chunks that
together inflate to more than ``max_ancillary_bytes``, are refused with an ImageError (field
``image``). A corrupt stream counts as nothing (the decoders skip it too). The C++ runtime does the same
(``png_chunks.cpp``).
"""
from __future__ import annotations

import struct
import zlib

from dfma.contract.errors import ImageError
from dfma.contract.limits import Limits

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def inflated_size(stream: bytes, cap: int) -> int:
    """Bytes a zlib stream inflates to, at most ``cap`` (0 when the stream is corrupt before ``cap``)."""
    try:
        return len(zlib.decompressobj().decompress(stream, cap))
    except zlib.error:
        return 0


def text_payload(kind: bytes, body: bytes) -> tuple[bytes, bool] | None:
    """``(payload, compressed)`` of a text or ICC chunk body as Pillow reads it; None for other chunks."""
    if kind == b"tEXt":
        _, _, value = body.partition(b"\0")
        return value, False
    if kind == b"zTXt":
        _, _, value = body.partition(b"\0")
        return (value[1:], True) if value[:1] == b"\0" else None  # method 0 (deflate) only
    if kind == b"iCCP":
        i = body.find(b"\0")
        return (body[i + 2:], True) if body[i + 1:i + 2] == b"\0" else None
    if kind == b"iTXt":
        _, sep, rest = body.partition(b"\0")
        if not sep or len(rest) < 2:
            return None
        flag, method, parts = rest[0], rest[1], rest[2:].split(b"\0", 2)
        if len(parts) < 3 or (flag and method):
            return None
        return parts[2], bool(flag)
    return None


def check_ancillary(data: bytes, name: str, limits: Limits) -> None:
    """Refuse PNG bytes whose text / ICC chunks inflate past the limits; other bytes pass untouched."""
    if not data.startswith(PNG_SIGNATURE):
        return
    pos, total = len(PNG_SIGNATURE), 0
    while pos + 8 <= len(data):
        length, kind = struct.unpack_from(">I4s", data, pos)
        if kind == b"IEND":
            return
        found = text_payload(kind, data[pos + 8:pos + 8 + length])
        if found is not None:
            payload, compressed = found
            cap = min(limits.max_chunk_bytes, limits.max_ancillary_bytes - total + 1)
            size = inflated_size(payload, cap) if compressed else len(payload)
            kind_name = kind.decode("latin-1")
            if compressed and size >= limits.max_chunk_bytes:
                raise ImageError(f"{name}: a {kind_name} chunk inflates to {limits.max_chunk_bytes} bytes or "
                                 f"more (max_chunk_bytes)", field="image")
            total += size
            if total > limits.max_ancillary_bytes:
                raise ImageError(f"{name}: text and ICC chunks inflate to more than "
                                 f"{limits.max_ancillary_bytes} bytes (max_ancillary_bytes)", field="image")
        pos += 12 + length
