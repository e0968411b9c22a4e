"""Bounding a JPEG's number of scans before a decoder sees it (torch-free).

A progressive JPEG is decoded scan by scan, and each scan walks every 8x8 block of the components it
covers however few bytes it has (an end-of-band run codes 32,767 empty blocks in a few bits): a file of
a few hundred kilobytes with thousands of scans keeps a decoder busy for minutes. :func:`count_scans`
walks the markers of JPEG bytes up to ``EOI`` as libjpeg reads them and counts the start-of-scan
(``SOS``) markers, stopping at ``max_jpeg_scans + 1``; :func:`check_jpeg_scans` refuses more than
``max_jpeg_scans`` with an ImageError (field ``image``). Other bytes (PNG, ...) pass untouched. The C++
runtime does the same (``jpeg_scans.cpp``).

The walk: after ``SOI``, find the next marker as libjpeg's ``next_marker`` does (bytes other than
``0xFF`` skipped, ``0xFF`` fill bytes skipped, ``0xFF 0x00`` a stuffed byte of entropy-coded data), so
the entropy-coded data after an ``SOS`` header, and any garbage, is skipped by one search; a marker with
a segment (every one but ``SOI``, ``EOI``, ``RSTn`` and ``TEM``) is skipped by its length, so an APP
segment's embedded thumbnail is never counted. A truncated segment ends the walk (the decoder reports it).
"""
from __future__ import annotations

import re

from dfma.contract.errors import ImageError
from dfma.contract.limits import Limits

JPEG_SOI = b"\xff\xd8"
_EOI, _SOS = 0xD9, 0xDA
# The next marker that matters: 0xFF fill bytes, then a code other than 0x00 (a stuffed byte), 0xFF,
# 0x01 (TEM) or 0xD0-0xD7 (RSTn): those stand alone and are skipped like entropy-coded data.
_MARKER = re.compile(rb"\xff+([^\x00\x01\xff\xd0-\xd7])")


def count_scans(data: bytes, cap: int) -> int:
    """The number of ``SOS`` markers of JPEG bytes before ``EOI``, counting stopped at ``cap``."""
    if not data.startswith(JPEG_SOI):
        return 0
    pos, scans = len(JPEG_SOI), 0
    while scans < cap:
        found = _MARKER.search(data, pos)
        if found is None:
            break
        code, pos = found.group(1)[0], found.end()
        if code == _EOI:
            break
        if code == 0xD8:  # a second SOI: no segment (libjpeg refuses the file)
            continue
        if pos + 2 > len(data):
            break
        length = int.from_bytes(data[pos:pos + 2], "big")
        if length < 2:
            break  # libjpeg: a bogus marker length
        if code == _SOS:
            scans += 1
        pos += length
    return scans


def check_jpeg_scans(data: bytes, name: str, limits: Limits) -> None:
    """Refuse JPEG bytes of more than ``max_jpeg_scans`` scans (ImageError naming the limit)."""
    limit = limits.max_jpeg_scans
    if count_scans(data, limit + 1) > limit:
        raise ImageError(f"{name}: a JPEG of more than {limit} scans exceeds max_jpeg_scans {limit} (each "
                         "scan of a progressive JPEG decodes the whole image again)", field="image")
