"""Write the bundle's shared weight store (contract section 4.3, ``dfma.contract.weight_store``): every ONNX
graph of a bundle keeps its large initializers in one file, ``weights.bin``, each distinct tensor once.

- :func:`pack_folder` (re)packs every graph of a folder being written (a ``BundleWriter``'s or
  ``update_bundle``'s temporary folder) into a fresh store: graphs already external are read with their
  data and repacked, inline graphs are moved out, bytes no graph uses any more disappear. Every file it
  changes is written under a new name and renamed over the old one (the folder's files may be hard links
  to another bundle's).
- :func:`pack_bundle_weights` does it to a finished bundle, atomically (``update_bundle``).
- :func:`inline_model` / :func:`inline_bytes` give a graph with its data inline, for a consumer that takes one
  file or bytes (Triton's model folders, TensorRT's parser); :func:`inline_folder` turns a folder back into
  the layout of bundles written before the store (tests compare the two).
"""
from __future__ import annotations

import hashlib
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from dfma.contract.errors import ExportError
from dfma.contract.weight_store import ALIGNMENT, MIN_EXTERNAL_BYTES, STORE_FILE

__all__ = ["PackStats", "pack_folder", "pack_bundle_weights", "inline_model", "inline_bytes", "inline_folder",
           "graph_tensors"]


@dataclass
class PackStats:
    """What a pack did: graphs rewritten, tensors referenced / stored, bytes referenced / stored, store size."""

    graphs: int = 0
    references: int = 0
    tensors: int = 0
    referenced_bytes: int = 0
    stored_bytes: int = 0
    store_bytes: int = 0
    removed: list[str] = field(default_factory=list)


def graph_tensors(graph):
    """Every initializer of an ONNX ``GraphProto`` and of its subgraphs (If / Loop / Scan bodies)."""
    import onnx

    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.type == onnx.AttributeProto.GRAPH:
                yield from graph_tensors(attr.g)
            elif attr.type == onnx.AttributeProto.GRAPHS:
                for g in attr.graphs:
                    yield from graph_tensors(g)


class _Reader:
    """Reads external tensor data relative to a graph's folder, one open file per location."""

    def __init__(self):
        self.files: dict[Path, object] = {}

    def read(self, tensor, base: Path) -> tuple[bytes, Path]:
        from onnx.external_data_helper import ExternalDataInfo

        info = ExternalDataInfo(tensor)
        rel = Path(info.location)
        if rel.is_absolute() or ".." in rel.parts:
            raise ExportError(f"tensor {tensor.name!r}: external data location {info.location!r} leaves the folder")
        path = base / rel
        f = self.files.get(path)
        if f is None:
            try:
                f = self.files[path] = open(path, "rb")
            except OSError as exc:
                raise ExportError(f"{path}: external data of tensor {tensor.name!r} unreadable "
                                  f"({exc.strerror})") from None
        f.seek(info.offset or 0)
        data = f.read(info.length) if info.length else f.read()
        if info.length and len(data) != info.length:
            raise ExportError(f"{path}: external data of tensor {tensor.name!r} is cut short")
        return data, path

    def close(self):
        for f in self.files.values():
            f.close()
        self.files = {}


def _raw(tensor) -> bytes | None:
    """The tensor's bytes when it holds them in ``raw_data`` or a typed field (moved to ``raw_data``)."""
    from onnx import numpy_helper

    if tensor.HasField("raw_data"):
        return tensor.raw_data
    if tensor.data_type == 8:  # strings stay where they are
        return None
    arr = numpy_helper.to_array(tensor)
    if arr.nbytes < MIN_EXTERNAL_BYTES:
        return None
    converted = numpy_helper.from_array(arr, tensor.name)
    if not converted.HasField("raw_data"):
        return None
    name, doc = tensor.name, tensor.doc_string
    tensor.CopyFrom(converted)
    tensor.name, tensor.doc_string = name, doc
    return tensor.raw_data


def _set_external(tensor, offset: int, length: int) -> None:
    import onnx

    tensor.ClearField("raw_data")
    del tensor.external_data[:]
    tensor.data_location = onnx.TensorProto.EXTERNAL
    for key, value in (("location", STORE_FILE), ("offset", str(offset)), ("length", str(length))):
        entry = tensor.external_data.add()
        entry.key, entry.value = key, value


def _set_inline(tensor, data: bytes) -> None:
    import onnx

    del tensor.external_data[:]
    tensor.data_location = onnx.TensorProto.DEFAULT
    tensor.raw_data = data


def _save(model, path: Path) -> None:
    """Write ``model`` under a new name beside ``path`` and rename it over (never into a linked file)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)  # mkstemp makes 0600; a bundle writer normalises modes again at its commit
        with os.fdopen(fd, "wb") as f:
            f.write(model.SerializeToString())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def pack_folder(folder: str | os.PathLike, *, min_bytes: int = MIN_EXTERNAL_BYTES,
                alignment: int = ALIGNMENT) -> PackStats:
    """Move the initializers of ``min_bytes`` or more of every ``*.onnx`` file under ``folder`` into a fresh
    ``folder/weights.bin`` (each distinct tensor once: sha256 of its bytes, dtype, shape; every offset a
    multiple of ``alignment``), rewriting the graphs to reference it; external data files the graphs used
    before and no longer do are removed (no store is left when no tensor is that large). The tensors of the
    old store that stay come first, in their old order: a repack that drops nothing leaves them, and the
    graphs that use only them, byte for byte as they were (adding a graph changes no other graph's file).
    ExportError on an unreadable graph or external data."""
    import onnx

    folder = Path(folder)
    graphs = sorted(p for p in folder.rglob("*.onnx") if p.is_file() and not p.is_symlink())
    stats = PackStats(graphs=len(graphs))
    reader = _Reader()
    used_before: set[Path] = set()
    index: dict[tuple, tuple[int, int]] = {}
    kept: dict[tuple, tuple] = {}  # (old offset, dtype, shape) of a tensor of the old store -> its key
    old_store = folder / STORE_FILE

    def load(path: Path):
        try:
            return onnx.load(str(path), load_external_data=False)
        except Exception as exc:  # onnx raises DecodeError and friends
            raise ExportError(f"{path}: not a readable ONNX graph ({exc})") from None

    def in_old_store(tensor, path: Path) -> tuple | None:
        info = {e.key: e.value for e in tensor.external_data}
        if path.parent / info.get("location", "") != old_store or not info.get("length", "").isdigit():
            return None
        if int(info["length"]) < min_bytes:
            return None
        return int(info.get("offset") or 0), tensor.data_type, tuple(tensor.dims)

    fd, tmp_store = tempfile.mkstemp(dir=folder, prefix=f".{STORE_FILE}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as store:
            def put(key: tuple, data: bytes) -> None:
                if key not in index:
                    store.write(b"\0" * (-store.tell() % alignment))
                    index[key] = (store.tell(), len(data))
                    store.write(data)
                    stats.stored_bytes += len(data)

            first: dict[tuple, object] = {}  # the old store's tensors still referenced, by old offset
            for path in graphs:
                for tensor in graph_tensors(load(path).graph):
                    if tensor.data_location == onnx.TensorProto.EXTERNAL:
                        where = in_old_store(tensor, path)
                        if where is not None and where not in first:
                            first[where] = onnx.TensorProto()
                            first[where].CopyFrom(tensor)  # a copy: a part would keep its whole graph alive
            for where in sorted(first):
                data, _ = reader.read(first[where], folder)
                kept[where] = (hashlib.sha256(data).digest(), where[1], where[2])
                put(kept[where], data)
                del data
            for path in graphs:
                model = load(path)
                for tensor in graph_tensors(model.graph):
                    if tensor.data_location == onnx.TensorProto.EXTERNAL:
                        where = in_old_store(tensor, path)
                        if where is not None:
                            used_before.add(old_store)
                            key = kept[where]
                            stats.references += 1
                            stats.referenced_bytes += index[key][1]
                            _set_external(tensor, *index[key])
                            continue
                        data, source = reader.read(tensor, path.parent)
                        used_before.add(source)
                        if len(data) < min_bytes:
                            _set_inline(tensor, data)
                            continue
                    else:
                        data = _raw(tensor)
                        if data is None or len(data) < min_bytes:
                            continue
                    key = (hashlib.sha256(data).digest(), tensor.data_type, tuple(tensor.dims))
                    put(key, data)
                    stats.references += 1
                    stats.referenced_bytes += len(data)
                    _set_external(tensor, *index[key])
                    del data
                _save(model, path)
                del model
            store.flush()
            os.fsync(store.fileno())
            stats.store_bytes = store.tell()
        reader.close()
        target = folder / STORE_FILE
        if index:
            os.chmod(tmp_store, 0o644)
            os.replace(tmp_store, target)
        else:
            os.unlink(tmp_store)
            if target.exists():
                used_before.add(target)
        for old in sorted(used_before):
            if old != target or not index:
                if old.exists() and folder.resolve() in old.resolve().parents:
                    old.unlink()
                    stats.removed.append(old.relative_to(folder).as_posix())
    except BaseException:
        reader.close()
        Path(tmp_store).unlink(missing_ok=True)
        raise
    stats.tensors = len(index)
    return stats


def pack_bundle_weights(bundle_dir: str | os.PathLike, *, min_bytes: int = MIN_EXTERNAL_BYTES,
                        key: bytes | None = None) -> PackStats:
    """Pack a finished bundle's graphs into a fresh weight store (:func:`pack_folder`), atomically: the
    bundle is verified first and swapped for the packed copy with a new manifest. Returns what was packed."""
    from dfma.contract.bundle_writer import update_bundle

    result: list[PackStats] = []
    update_bundle(bundle_dir, {}, prepare=lambda tmp: result.append(pack_folder(tmp, min_bytes=min_bytes)),
                  key=key)
    return result[0]


def inline_model(path: str | os.PathLike):
    """The graph at ``path`` as an ``onnx.ModelProto`` with every external tensor read inline (the graph
    alone then needs no store; it must stay under protobuf's 2 GiB)."""
    import onnx

    path = Path(path)
    model = onnx.load(str(path), load_external_data=False)
    reader = _Reader()  # not onnx's loader: it refuses a store with several hard links (update_bundle's work folder)
    try:
        for tensor in graph_tensors(model.graph):
            if tensor.data_location == onnx.TensorProto.EXTERNAL:
                _set_inline(tensor, reader.read(tensor, path.parent)[0])
    finally:
        reader.close()
    return model


def inline_bytes(path: str | os.PathLike) -> bytes:
    """The serialized graph at ``path`` with its data inline (the file's own bytes when it has no external
    data)."""
    from dfma.contract.weight_store import external_refs

    if not external_refs(path):
        return Path(path).read_bytes()
    return inline_model(path).SerializeToString()


def inline_folder(folder: str | os.PathLike) -> int:
    """The reverse of :func:`pack_folder`: every ``*.onnx`` file under ``folder`` rewritten with its data
    inline (renamed over, as there) and the store removed: the layout of bundles written before the store.
    Returns the number of graphs rewritten."""
    folder = Path(folder)
    graphs = sorted(p for p in folder.rglob("*.onnx") if p.is_file() and not p.is_symlink())
    for path in graphs:
        _save(inline_model(path), path)
    (folder / STORE_FILE).unlink(missing_ok=True)
    return len(graphs)
