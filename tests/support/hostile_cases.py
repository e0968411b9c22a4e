"""The shared table of hostile requests (tests/cases/hostile_requests.json), made into request lines.

One table drives the Python API (tests/support/hostile_worker.py, in a subprocess that measures time and peak
memory per case), the Python command line and the C++ command line (tests/contract/test_hostile_requests.py), so
that all three refuse the same inputs with the same error kinds and fields.
"""
from __future__ import annotations

import io
import json
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from repo_paths import CASES

TABLE = CASES / "hostile_requests.json"


def load_table() -> dict:
    """The parsed case table."""
    return json.loads(TABLE.read_text(encoding="utf-8"))


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(width: int, height: int, extra: bytes = b"") -> bytes:
    """A PNG whose header declares width x height RGB pixels, with a few bytes of pixel data."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", ihdr) + extra + _chunk(b"IDAT", zlib.compress(b"\0" * 64))
            + _chunk(b"IEND", b""))


def png_with_chunk(kind: str, inflate: int, count: int = 1) -> bytes:
    """A real 8x8 PNG with ``count`` text / ICC chunks of ``kind`` that each inflate to ``inflate`` bytes."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (200, 30, 90)).save(buf, format="PNG")
    png = buf.getvalue()
    stream = zlib.compress(b"a" * inflate, 9)
    body = {"zTXt": b"Comment\0\0" + stream, "iCCP": b"icc\0\0" + stream,
            "iTXt": b"Comment\0\x01\x00\0\0" + stream}[kind]
    at = png.index(b"IDAT") - 4
    return png[:at] + _chunk(kind.encode(), body) * count + png[at:]


def jpeg_with_header(width: int, height: int) -> bytes:
    """A real 8x8 JPEG whose SOF0 header is patched to say width x height."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (10, 120, 240)).save(buf, format="JPEG")
    data = bytearray(buf.getvalue())
    sof = data.index(b"\xff\xc0")
    data[sof + 5:sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def jpeg_many_scans(scans: int, side: int = 4000) -> bytes:
    """A grey ``side`` x ``side`` progressive JPEG of ``scans`` scans, small for its decoding time.

    Pillow writes libjpeg's progressive script (6 scans for grey); its last scan, an AC refinement of a
    flat image, is about 30 bytes (end-of-band runs) yet makes the decoder walk every 8x8 block again.
    It is repeated until the file has ``scans`` scans (libjpeg warns about the repeated refinement and
    decodes on, as Pillow does): 4000 x 4000 with 5000 scans is about 220 kB and tens of seconds of
    decoding.
    """
    from PIL import Image

    buf = io.BytesIO()
    Image.new("L", (side, side), 128).save(buf, format="JPEG", progressive=True, quality=90)
    data = buf.getvalue()
    last, eoi = data.rindex(b"\xff\xda"), len(data) - 2
    assert data[eoi:] == b"\xff\xd9" and data.count(b"\xff\xda") == 6, "not libjpeg's grey progressive script"
    return data[:eoi] + data[last:eoi] * (scans - 6) + data[eoi:]


def truncated_jpeg() -> bytes:
    """The first half of a real 64x48 JPEG (the decoder runs out of data)."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (30, 160, 90)).save(buf, format="JPEG")
    data = buf.getvalue()
    return data[:len(data) // 2]


def good_jpeg() -> bytes:
    """A real 64x48 JPEG."""
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (200, 40, 10)).save(buf, format="JPEG")
    return buf.getvalue()


def _make(spec: dict, folder: Path, name: str) -> Any:
    """A file (its path) or a value the spec describes."""
    kind = spec["make"]
    path = folder / name
    if kind == "png":
        path.write_bytes(png_header_only(spec["width"], spec["height"]))
    elif kind == "png_chunk":
        path.write_bytes(png_with_chunk(spec["chunk"], spec["inflate"], spec.get("count", 1)))
    elif kind == "jpeg":
        path.write_bytes(jpeg_with_header(spec["width"], spec["height"]))
    elif kind == "jpeg_scans":
        path.write_bytes(jpeg_many_scans(spec["scans"], spec.get("side", 4000)))
    elif kind == "jpeg_truncated":
        path.write_bytes(truncated_jpeg())
    elif kind == "jpeg_good":
        path.write_bytes(good_jpeg())
    elif kind == "sparse":
        with path.open("wb") as f:
            f.truncate(spec["bytes"])
    elif kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    elif kind == "long_path":
        return str(folder / ("a" * 5000 + ".png"))
    elif kind == "missing":
        return str(folder / "no-such-image.png")
    elif kind == "words":
        return ["w" * spec.get("length", 1)] * spec["count"]
    elif kind == "text":
        return ("a " * (spec["length"] // 2 + 1))[:spec["length"]]
    else:
        raise ValueError(f"unknown make {kind!r}")
    return str(path)


def _materialize(value: Any, folder: Path, name: str) -> Any:
    if isinstance(value, dict) and "make" in value:
        return _make(value, folder, name)
    if isinstance(value, list):
        return [_materialize(v, folder, f"{name}-{i}") for i, v in enumerate(value)]
    return value


@dataclass
class Case:
    """One table row made concrete: the request line's bytes, the object the API gets (or None)."""

    name: str
    line: bytes
    request: dict | None
    kind: str | None
    field: str | None
    api_kind: str | None
    api_field: str | None
    seconds: float
    rss_mb: float | None


def build_cases(folder: Path) -> tuple[dict, list[Case]]:
    """(the good request, every case) with their files created under ``folder``."""
    table = load_table()
    good = table["good"]
    cases = []
    for i, row in enumerate(table["cases"]):
        request = None
        if "set" in row:
            request = dict(good)
            for key, value in row["set"].items():
                if value is None:
                    request.pop(key, None)
                else:
                    request[key] = _materialize(value, folder, f"case{i}-{key}")
            line = json.dumps(request).encode()
        elif "line_hex" in row:
            line = bytes.fromhex(row["line_hex"])
        elif isinstance(row["line"], dict):
            spec = row["line"]
            if spec["make"] == "deep":
                line = ("[" * spec["depth"] + "]" * spec["depth"]).encode()
            else:
                line = b'{"x": "' + b"a" * spec["bytes"] + b'"}'
        else:
            line = row["line"].encode()
            if "api_kind" in row:
                request = json.loads(row["line"])
        cases.append(Case(row["name"], line, request, row["kind"], row["field"], row.get("api_kind", row["kind"]),
                          row.get("api_field", row["field"]), float(row.get("seconds", 1.0)), row.get("rss_mb")))
    return good, cases


def interleaved_lines(good: dict, cases: list[Case]) -> tuple[bytes, dict[int, Case | None]]:
    """A request file: a good line, then each case followed by a good line; line number -> case (None: good)."""
    rows: list[bytes] = [json.dumps(good).encode()]
    where: dict[int, Case | None] = {1: None}
    for case in cases:
        rows.append(case.line)
        where[len(rows)] = case
        rows.append(json.dumps(good).encode())
        where[len(rows)] = None
    return b"\n".join(rows) + b"\n", where
