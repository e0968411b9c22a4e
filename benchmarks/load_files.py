"""The files a row of the benchmark loads: their bytes, following ONNX external data, and their pages in the
page cache (evicted before a cold load, counted to show that the eviction worked).

- :func:`external_data`: ``{store file: referenced bytes}`` of one graph, from its initializers'
  ``external_data`` entries (``location``, ``offset``, ``length``), the graph read with
  ``onnx.load(path, load_external_data=False)``;
- :func:`row_files`: the paths a row reads (its graph files and every store they reference) and its bytes:
  each graph file's size plus, per store, the union of the byte ranges its graphs reference (a store shared
  by a row's stage graphs, or by several precisions, is counted once per row, as what the row reads of it);
- :func:`read_through`: every file read once (its pages cached before a warm load);
- :func:`evict`: ``os.sync()`` then ``posix_fadvise(POSIX_FADV_DONTNEED)`` on every file (no root needed:
  the kernel drops the clean cached pages of a file any reader may open);
- :func:`resident_bytes`: the bytes of a file in the page cache (``mincore`` on a mapping of it).
"""
from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path

from dfma.contract.errors import BundleError


def _tensors(graph) -> Iterator:
    """Every tensor of ``graph`` and its subgraphs that may hold data: initializers, sparse initializers'
    values and indices, and tensor attributes of nodes (Constant), recursively."""
    yield from graph.initializer
    for sparse in graph.sparse_initializer:
        yield sparse.values
        yield sparse.indices
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _tensors(attr.g)
            for sub in attr.graphs:
                yield from _tensors(sub)


_RANGES: dict[tuple[str, int, int], list] = {}  # (graph path, mtime, size) -> its external tensors (_parse_ranges)


def external_ranges(path: Path) -> dict[Path, list[tuple[int, int]]]:
    """``{store path: [(offset, length), ...]}`` of the tensors of graph ``path`` stored as external data;
    a tensor without ``length`` reads its store to the end (the ONNX rule). BundleError names the graph and
    the tensor when a store is missing. Parsed once per file version (a 100 MB graph takes ~0.5 s), and only when
    its bytes hold an external-data ``location`` key."""
    path = Path(path)
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime_ns, st.st_size)
    if key not in _RANGES:
        _RANGES[key] = _parse_ranges(path) if _may_reference(path) else []
    out: dict[Path, list[tuple[int, int]]] = {}
    for tensor, location, offset, length in _RANGES[key]:
        store = path.parent / location
        if not store.is_file():
            raise BundleError(f"{path.name}: tensor {tensor!r} refers to {location!r}, which is not a file next to "
                              "the graph")
        out.setdefault(store, []).append((offset, store.stat().st_size - offset if length is None else length))
    return out


# an external tensor's ``location`` entry as serialized (StringStringEntryProto field 1, 8 bytes): a graph file
# without these bytes references no external data (a file with them is parsed; a match inside weights only costs that)
_LOCATION_KEY = b"\x0a\x08location"


def _may_reference(path: Path) -> bool:
    """Whether graph ``path`` may hold external data references (a byte scan, ~10x faster than parsing it)."""
    import mmap

    if path.stat().st_size == 0:
        return False
    with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        return mm.find(_LOCATION_KEY) >= 0


def _parse_ranges(path: Path) -> list[tuple[str, str, int, int | None]]:
    """``(tensor, location, offset, length or None)`` of every externally stored tensor of graph ``path``."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    out = []
    for tensor in _tensors(model.graph):
        if tensor.data_location != onnx.TensorProto.EXTERNAL:
            continue
        entry = {e.key: e.value for e in tensor.external_data}
        if "location" not in entry:
            raise BundleError(f"{path.name}: tensor {tensor.name!r} is stored externally but has no 'location'")
        out.append((tensor.name, entry["location"], int(entry.get("offset", 0)),
                    int(entry["length"]) if "length" in entry else None))
    return out


def union_bytes(ranges: Iterable[tuple[int, int]]) -> int:
    """Bytes covered by ``(offset, length)`` ranges, overlaps counted once."""
    total, end = 0, -1
    for start, length in sorted(ranges):
        stop = start + length
        if stop <= end:
            continue
        total += stop - max(start, end)
        end = stop
    return total


def external_data(path: Path) -> dict[str, int]:
    """``{store file name: bytes graph path references in it}`` (empty for a graph with inline weights)."""
    return {store.name: union_bytes(r) for store, r in external_ranges(Path(path)).items()}


def row_files(folder: Path, graphs: Sequence[str]) -> dict:
    """What a row that loads graph files ``graphs`` (names in bundle ``folder``) reads: ``{"graphs": {file:
    bytes}, "stores": {file: referenced bytes}, "paths": [every file], "bytes": total}``."""
    folder = Path(folder)
    sizes: dict[str, int] = {}
    ranges: dict[Path, list[tuple[int, int]]] = {}
    for name in dict.fromkeys(graphs):  # each graph once, in order
        path = folder / name
        if not path.is_file():
            raise BundleError(f"{name}: not a file in {folder}")
        sizes[name] = path.stat().st_size
        for store, r in external_ranges(path).items():
            ranges.setdefault(store, []).extend(r)
    stores = {store.name: union_bytes(r) for store, r in ranges.items()}
    paths = [str(folder / name) for name in sizes] + [str(store) for store in ranges]
    return {"graphs": sizes, "stores": stores, "paths": paths, "bytes": sum(sizes.values()) + sum(stores.values())}


def evict(paths: Iterable[str | Path]) -> None:
    """Drop ``paths`` from the page cache: dirty pages written first (``os.sync``), then
    ``POSIX_FADV_DONTNEED`` on each file. OSError when the platform has no ``posix_fadvise``."""
    if not hasattr(os, "posix_fadvise"):
        raise OSError("os.posix_fadvise is not available on this platform: the page cache cannot be evicted")
    os.sync()
    for path in paths:
        fd = os.open(str(path), os.O_RDONLY)
        try:
            os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(fd)


def read_through(paths: Iterable[str | Path], chunk: int = 8 << 20) -> None:
    """Read every file of ``paths`` once, so that its pages are in the page cache (a warm load follows)."""
    for path in paths:
        with open(path, "rb", buffering=0) as f:
            while f.read(chunk):
                pass


def resident_bytes(path: str | Path) -> int | None:
    """Bytes of file ``path`` now in the page cache (``mincore`` on a read-only mapping), None where mincore
    cannot be called (not Linux/glibc)."""
    import ctypes
    import mmap

    size = os.path.getsize(path)
    if size == 0:
        return 0
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        libc.mincore.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_void_p]
    except (OSError, AttributeError):
        return None
    page = mmap.PAGESIZE
    pages = (size + page - 1) // page
    fd = os.open(str(path), os.O_RDONLY)
    try:
        addr = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
        if addr in (None, ctypes.c_void_p(-1).value):
            return None
        try:
            vec = (ctypes.c_ubyte * pages)()
            if libc.mincore(ctypes.c_void_p(addr), size, vec) != 0:
                return None
            return min(size, sum(b & 1 for b in vec) * page)
        finally:
            libc.munmap(ctypes.c_void_p(addr), size)
    finally:
        os.close(fd)


def resident_share(paths: Sequence[str | Path]) -> float | None:
    """The share of the bytes of ``paths`` now in the page cache (None when it cannot be read)."""
    total = sum(os.path.getsize(p) for p in paths)
    counts = [resident_bytes(p) for p in paths]
    if any(c is None for c in counts):
        return None
    return sum(counts) / total if total else 0.0
