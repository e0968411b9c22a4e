"""Named arrays in the safetensors layout, read and written with numpy alone (no pickles, no library).

Layout: an 8-byte little-endian header length ``n``, ``n`` bytes of JSON (``name -> {dtype, shape,
data_offsets}`` plus an optional ``__metadata__`` of strings), then the raw little-endian bytes. The
reader checks every offset against the file size before reading, so a malformed file is a BundleError
naming the file and the tensor, never an allocation the header asks for.
"""
from __future__ import annotations

import json
import os
import struct
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from dfma.contract.errors import BundleError

DTYPES = {"F32": np.float32, "F16": np.float16, "I64": np.int64, "I32": np.int32, "U8": np.uint8, "I8": np.int8,
          "BOOL": np.bool_}
CODES = {np.dtype(v).name: k for k, v in DTYPES.items()}
MAX_HEADER = 1 << 20


def write_tensors(path: str | os.PathLike, arrays: Mapping[str, np.ndarray], metadata: Mapping[str, str] | None = None) -> None:
    """Write ``arrays`` (C order, little-endian) and string ``metadata`` to ``path``."""
    header: dict = {"__metadata__": dict(metadata or {})}
    offset, blobs = 0, []
    for name, array in arrays.items():
        a = np.ascontiguousarray(array)
        if a.dtype.name not in CODES:
            raise ValueError(f"{name}: dtype {a.dtype} cannot be stored (use one of {sorted(CODES)})")
        data = a.astype(a.dtype.newbyteorder("<"), copy=False).tobytes()
        header[name] = {"dtype": CODES[a.dtype.name], "shape": list(a.shape), "data_offsets": [offset, offset + len(data)]}
        blobs.append(data)
        offset += len(data)
    text = json.dumps(header, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 8)  # align the data to 8 bytes
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for data in blobs:
            f.write(data)


def read_tensors(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """``(arrays, metadata)`` of a file written by :func:`write_tensors` (or any safetensors file of these
    dtypes); BundleError naming the file and the tensor when it is malformed."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise BundleError(f"{path}: unreadable ({exc.strerror or exc})") from None
    if len(raw) < 8:
        raise BundleError(f"{path}: too short for a tensor file")
    (n,) = struct.unpack("<Q", raw[:8])
    if n > min(MAX_HEADER, len(raw) - 8):
        raise BundleError(f"{path}: header length {n} exceeds the file ({len(raw)} bytes)")
    try:
        header = json.loads(raw[8:8 + n].decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: unreadable header ({exc})") from None
    if not isinstance(header, dict):
        raise BundleError(f"{path}: header is not a JSON object")
    metadata = header.pop("__metadata__", {}) or {}
    data, arrays = memoryview(raw)[8 + n:], {}
    for name, spec in header.items():
        try:
            dtype = np.dtype(DTYPES[spec["dtype"]]).newbyteorder("<")
            shape = [int(d) for d in spec["shape"]]
            start, end = (int(x) for x in spec["data_offsets"])
        except (KeyError, TypeError, ValueError):
            raise BundleError(f"{path}: tensor {name!r}: needs dtype in {sorted(DTYPES)}, shape and data_offsets") from None
        count = int(np.prod(shape)) if shape else 1
        if any(d < 0 for d in shape) or not 0 <= start <= end <= len(data) or end - start != count * dtype.itemsize:
            raise BundleError(f"{path}: tensor {name!r}: shape {shape} / offsets [{start}, {end}] do not fit the file")
        arrays[name] = np.frombuffer(data[start:end], dtype=dtype).reshape(shape).astype(dtype.newbyteorder("="))
    return arrays, {str(k): str(v) for k, v in metadata.items()}
