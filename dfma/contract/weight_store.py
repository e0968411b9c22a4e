"""The bundle's shared weight store (contract section 4.3): one file that holds, once, every large tensor of
every ONNX graph of the bundle, referenced from the graphs through standard ONNX external data.

Contract facts (the writer is ``dfma.export.weight_store``; this module reads and checks):

- :data:`STORE_FILE` (``weights.bin``): the one external data file a bundle may hold, beside its graphs and
  listed in the manifest's ``files`` like every file (so ``verify``, the digest and the signature cover it);
- an initializer of :data:`MIN_EXTERNAL_BYTES` (1 KiB) or more lives in the store; smaller ones (scalars,
  shapes, axes, quantization scales and zero points) stay inline: ONNX Runtime's shape inference cannot read
  an operator's shape or axes input from external data, and graph tools read them without the data;
- every tensor starts at a multiple of :data:`ALIGNMENT` (4096, the page size: ONNX Runtime and OpenVINO
  map aligned external data instead of copying it); the gaps are zeros;
- a tensor is stored once, however many graphs use it (same raw bytes, dtype and shape).

:func:`check_graph_refs` is the reader-side check: every external reference of a graph names the store,
with integer ``offset`` (aligned) and ``length`` (= the tensor's dtype x shape) that stay inside the store's
length; else a :class:`BundleError` naming the file, the tensor and the field. It reads the graph's protobuf
with a bounded walker of its own (no ``onnx`` needed: the runtime does not depend on it), skipping inline
tensor bytes without reading them. :func:`check_bundle_refs` runs it on every graph a manifest lists
(``dfma.contract.bundle.verify_bundle`` calls it after the hashes).
"""
from __future__ import annotations

import mmap
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from dfma.contract.errors import BundleError

__all__ = ["STORE_FILE", "ALIGNMENT", "MIN_EXTERNAL_BYTES", "ExternalRef", "external_refs", "check_graph_refs",
           "check_bundle_refs", "tensor_bytes", "graph_bytes", "graph_digest"]

STORE_FILE = "weights.bin"
ALIGNMENT = 4096
MIN_EXTERNAL_BYTES = 1024
EXTERNAL = 1  # TensorProto.DataLocation.EXTERNAL
MAX_DEPTH = 16  # nested subgraphs (If / Loop / Scan bodies) a graph may hold before it is refused

# TensorProto.DataType -> bits per element (the types whose size is fixed)
_BITS = {1: 32, 2: 8, 3: 8, 4: 16, 5: 16, 6: 32, 7: 64, 9: 8, 10: 16, 11: 64, 12: 32, 13: 64, 14: 64, 15: 128,
         16: 16, 17: 8, 18: 8, 19: 8, 20: 8, 21: 4, 22: 4, 23: 4}


@dataclass(frozen=True)
class ExternalRef:
    """One tensor of a graph whose data is external: its name, type, shape and ``external_data`` entries."""

    name: str
    data_type: int
    dims: tuple[int, ...]
    entries: tuple[tuple[str, str], ...]

    def get(self, key: str) -> str | None:
        """The value of ``external_data`` entry ``key`` (the last one wins, as in ONNX), or None."""
        value = None
        for k, v in self.entries:
            if k == key:
                value = v
        return value


def tensor_bytes(data_type: int, dims: tuple[int, ...]) -> int | None:
    """Bytes of a tensor of this ONNX dtype and shape (4-bit types packed two a byte); None for strings or an
    unknown dtype."""
    bits = _BITS.get(data_type)
    if bits is None:
        return None
    count = 1
    for d in dims:
        count *= d
    return (count * bits + 7) // 8


class _Malformed(Exception):
    pass


def _varint(buf, pos: int, end: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        if pos >= end or shift > 63:
            raise _Malformed
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(buf, start: int, end: int) -> Iterator[tuple[int, int, int, int]]:
    """(field number, wire type, value or start, end) of each field of one message in buf[start:end]."""
    pos = start
    while pos < end:
        key = buf[pos]  # one-byte varints (most keys and lengths) without a call
        if key < 0x80:
            pos += 1
        else:
            key, pos = _varint(buf, pos, end)
        num, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos, end)
            yield num, wire, value, pos
        elif wire == 1:
            pos += 8
        elif wire == 2:
            n = buf[pos] if pos < end else 0x80
            if n < 0x80:
                pos += 1
            else:
                n, pos = _varint(buf, pos, end)
            if pos + n > end:
                raise _Malformed
            yield num, wire, pos, pos + n
            pos += n
        elif wire == 5:
            pos += 4
        else:
            raise _Malformed
    if pos != end:
        raise _Malformed


def _text(buf, start: int, end: int) -> str:
    return bytes(buf[start:end]).decode("utf-8", errors="replace")


def _tensor(buf, start: int, end: int) -> ExternalRef | None:
    name, dtype, location, dims, entries = "", 0, 0, [], []
    for num, wire, a, b in _fields(buf, start, end):
        if num == 1 and wire == 0:
            dims.append(a - (1 << 64) if a >= 1 << 63 else a)
        elif num == 1 and wire == 2:  # packed dims
            pos = a
            while pos < b:
                v, pos = _varint(buf, pos, b)
                dims.append(v - (1 << 64) if v >= 1 << 63 else v)
        elif num == 2 and wire == 0:
            dtype = a
        elif num == 8 and wire == 2:
            name = _text(buf, a, b)
        elif num == 14 and wire == 0:
            location = a
        elif num == 13 and wire == 2:
            key = value = ""
            for n2, w2, c, d in _fields(buf, a, b):
                if n2 == 1 and w2 == 2:
                    key = _text(buf, c, d)
                elif n2 == 2 and w2 == 2:
                    value = _text(buf, c, d)
            entries.append((key, value))
    if location != EXTERNAL:
        return None
    return ExternalRef(name, dtype, tuple(dims), tuple(entries))


def _graph(buf, start: int, end: int, depth: int, out: list) -> None:
    if depth > MAX_DEPTH:
        raise _Malformed
    for num, wire, a, b in _fields(buf, start, end):
        if wire != 2:
            continue
        if num == 5:  # initializer
            ref = _tensor(buf, a, b)
            if ref is not None:
                out.append(ref)
        elif num == 15:  # sparse_initializer: values (1), indices (2)
            for n2, w2, c, d in _fields(buf, a, b):
                if n2 in (1, 2) and w2 == 2:
                    ref = _tensor(buf, c, d)
                    if ref is not None:
                        out.append(ref)
        elif num == 1:  # node: its attributes (5) hold tensors (t 5, tensors 10) and subgraphs (g 6, graphs 11)
            for n2, w2, c, d in _fields(buf, a, b):
                if n2 != 5 or w2 != 2:
                    continue
                for n3, w3, e, f in _fields(buf, c, d):
                    if w3 != 2:
                        continue
                    if n3 in (5, 10):
                        ref = _tensor(buf, e, f)
                        if ref is not None:
                            out.append(ref)
                    elif n3 in (6, 11):
                        _graph(buf, e, f, depth + 1, out)


def external_refs(path: str | os.PathLike, *, strict: bool = True) -> list[ExternalRef]:
    """Every tensor of an ONNX graph file whose data is external (initializers, sparse initializers, node
    attribute tensors, subgraphs included), in file order. BundleError when the file is not a readable
    ONNX model; ``strict=False`` returns the references read before the point where it stops being one
    (the bundle check: whoever loads such a file refuses it with its own error)."""
    path = Path(path)
    out: list[ExternalRef] = []
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise _Malformed
            with mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as buf:
                for num, wire, a, b in _fields(buf, 0, size):
                    if num == 7 and wire == 2:  # ModelProto.graph
                        _graph(buf, a, b, 0, out)
                return out
    except _Malformed:
        if not strict:
            return out
        raise BundleError(f"{path}: not a readable ONNX graph (malformed protobuf)", file=str(path)) from None
    except OSError as exc:
        raise BundleError(f"{path}: cannot read ({exc.strerror or exc})", file=str(path)) from None


def _int_entry(path: Path, ref: ExternalRef, key: str) -> int:
    value = ref.get(key)
    if value is None or not value.isdigit() or len(value) > 19:
        raise BundleError(f"{path}: tensor {ref.name!r}: external_data {key} {value!r} is not a non-negative "
                          f"integer", file=str(path), field=f"{ref.name}.external_data.{key}")
    return int(value)


def check_graph_refs(path: str | os.PathLike, store_bytes: int | None) -> int:
    """Check every external reference of graph ``path`` against the store (module doc): location
    :data:`STORE_FILE`, ``offset`` a multiple of :data:`ALIGNMENT`, ``length`` the tensor's size, inside the
    store's ``store_bytes`` (None: the bundle has no store). Returns the number of references; BundleError
    naming the file, the tensor and the field."""
    path = Path(path)
    refs = external_refs(path, strict=False)
    for ref in refs:
        def fail(key: str, why: str):
            raise BundleError(f"{path}: tensor {ref.name!r}: external_data {key} {why}", file=str(path),
                              field=f"{ref.name}.external_data.{key}")
        location = ref.get("location")
        if location != STORE_FILE:
            fail("location", f"is {location!r}; a bundle's graphs keep their external data in {STORE_FILE!r} only")
        if store_bytes is None:
            fail("location", f"names {STORE_FILE!r}, which the manifest does not list")
        offset, length = _int_entry(path, ref, "offset"), _int_entry(path, ref, "length")
        if offset % ALIGNMENT:
            fail("offset", f"{offset} is not a multiple of {ALIGNMENT}")
        if offset + length > store_bytes:
            fail("length", f"offset {offset} + length {length} runs past the end of {STORE_FILE} ({store_bytes} bytes)")
        expected = tensor_bytes(ref.data_type, ref.dims)
        if expected is not None and expected != length:
            fail("length", f"{length} bytes, but dtype {ref.data_type} x shape {list(ref.dims)} is {expected} bytes")
    return len(refs)


def check_bundle_refs(folder: str | os.PathLike, files: Mapping[str, Mapping], only=None) -> None:
    """Run :func:`check_graph_refs` on every ONNX file the manifest's ``files`` lists (or those of ``only``),
    with the store's listed size. BundleError as there."""
    folder = Path(folder)
    store = files.get(STORE_FILE)
    store_bytes = int(store["bytes"]) if store is not None else None
    for rel in (only if only is not None else files):
        if rel.endswith(".onnx"):
            check_graph_refs(folder / rel, store_bytes)


def graph_bytes(path: str | os.PathLike) -> int:
    """Bytes of a graph with its weights: the file's size plus the length of each distinct external tensor it
    references (what the graph weighed inline; the size a reader compares graphs by)."""
    path = Path(path)
    refs = {(r.get("location"), r.get("offset")): r.get("length") for r in external_refs(path, strict=False)}
    return path.stat().st_size + sum(int(n) for n in refs.values() if n and n.isdigit())


def graph_digest(path: str | os.PathLike) -> str:
    """sha256 (hex) of a graph with its weights: of the file's bytes followed by the bytes of each external
    reference, in file order, read from the store beside it. A graph without external data gets its file's
    sha256, so a digest recorded before the store still matches the same graph inline. BundleError when a
    reference cannot be read."""
    import hashlib

    path = Path(path)
    h = hashlib.sha256(path.read_bytes())
    refs = external_refs(path)
    if refs:
        with open(path.parent / STORE_FILE, "rb") as store:
            for ref in refs:
                offset, length = _int_entry(path, ref, "offset"), _int_entry(path, ref, "length")
                store.seek(offset)
                data = store.read(length)
                if len(data) != length:
                    raise BundleError(f"{path}: tensor {ref.name!r}: external_data length runs past the end of "
                                      f"{STORE_FILE}", file=str(path), field=f"{ref.name}.external_data.length")
                h.update(data)
    return h.hexdigest()
