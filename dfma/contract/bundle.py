"""Read and verify a bundle folder (torch-free, onnx-free: json + hashlib only).

A bundle (docs/contract.md section 4) is a folder with ``manifest.json``, its digest ``manifest.sha256``
(and optionally its signature ``manifest.sig``: ``dfma.contract.manifest_digest``) and the files the
manifest lists under ``files`` (relative path -> ``sha256``, ``bytes``). The exporter writes it
(``dfma.contract.bundle_writer``); every runtime opens it through :func:`open_bundle` (or
:func:`read_manifest` + :func:`verify_bundle`), which refuses a bundle

- whose manifest is not a regular file of at most 16 MiB (a link, a FIFO), is not JSON, nests deeper than
  ``MAX_DEPTH``, or does not match its digest (or, with a key, its signature);
- whose manifest is malformed or inconsistent: required keys and types, every ``files`` entry a plain
  relative path with a 64-hex ``sha256`` and ``bytes >= 0``, at least one graph, every graph's file
  listed, and the preprocessing constants and limits consistent with the graph IO and the model config
  (``dfma.contract.manifest_checks``);
- whose listed files are missing, links, not regular files, resized or altered, or resolve outside the
  folder; whose graphs reference external data outside the weight store (``dfma.contract.weight_store``:
  another file, an unaligned offset, a length past the store's end); and (``strict``, the default of
  :func:`open_bundle`) that holds files the manifest does not list.

Every error is a :class:`~dfma.contract.errors.BundleError` naming the file and, where there is one, the
manifest field (also in its ``file`` / ``field`` attributes).

Opt-outs and keys, for every runtime (Python and C++ alike): ``DFMA_BUNDLE_ALLOW_UNLISTED=1`` accepts
unlisted files; ``DFMA_BUNDLE_KEY_FILE=<key file>`` requires a matching ``manifest.sig``.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from dfma.contract.atomic import check_relative_path
from dfma.contract.errors import BundleError
from dfma.contract.manifest import GraphEntry, Manifest
from dfma.contract.manifest_checks import check_consistency
from dfma.contract.weight_store import check_bundle_refs
from dfma.contract.manifest_digest import (
    MAX_MANIFEST_BYTES,
    OWN_FILES,
    check_digest,
    check_signature,
    key_from_env,
    read_small_file,
)

FORMAT = "dfma-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
REQUIRED_KEYS: dict[str, type] = {
    "format": str, "format_version": int, "created": str, "model": dict, "labels": list,
    "preprocess": dict, "io": dict, "limits": dict, "opset": int, "graphs": dict, "files": dict,
    "tools": dict, "parity": dict,
}
GRAPH_KEYS = ("file", "precision", "kind")
MAX_DEPTH = 64  # nesting of JSON objects and lists; a real manifest nests 7 deep
ALLOW_UNLISTED_ENV = "DFMA_BUNDLE_ALLOW_UNLISTED"
_SHA256 = re.compile(r"[0-9a-f]{64}")


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _refuse_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def _check_depth(value, where: str) -> None:
    """Refuse containers nested more than MAX_DEPTH deep (the top object is level 1), iteratively."""
    stack = [(value, 1)]
    while stack:
        node, level = stack.pop()
        if level > MAX_DEPTH:
            raise BundleError(f"{where}: nested more than {MAX_DEPTH} levels deep", file=where)
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, level + 1) for child in children if isinstance(child, (dict, list)))


def _fail(path: Path, field: str, message: str):
    raise BundleError(f"{path}: field {field!r} {message}", file=str(path), field=field)


def parse_manifest(data: bytes, path: str | os.PathLike) -> dict:
    """Parse and validate manifest bytes (read from ``path``, named in errors): JSON, depth, format,
    version, required keys and their types, ``files`` and ``graphs`` entries, consistency. BundleError."""
    path = Path(path)
    try:
        manifest = json.loads(data.decode("utf-8"), parse_constant=_refuse_constant)
    except RecursionError:
        raise BundleError(f"{path}: nested too deeply to parse (at most {MAX_DEPTH} levels)", file=str(path)) from None
    except (UnicodeDecodeError, ValueError) as exc:  # JSONDecodeError is a ValueError
        raise BundleError(f"{path}: unreadable ({exc})", file=str(path)) from None
    if isinstance(manifest, (dict, list)):
        _check_depth(manifest, str(path))
    if not isinstance(manifest, dict):
        raise BundleError(f"{path}: expected a JSON object, got {type(manifest).__name__}", file=str(path))
    if manifest.get("format") != FORMAT:
        _fail(path, "format", f"is {manifest.get('format')!r:.80}, expected {FORMAT!r}")
    if manifest.get("format_version") != FORMAT_VERSION or isinstance(manifest.get("format_version"), bool):
        _fail(path, "format_version", f"is {manifest.get('format_version')!r:.80}; this reader understands "
                                      f"{FORMAT_VERSION}")
    for key, kind in REQUIRED_KEYS.items():
        if key not in manifest:
            _fail(path, key, "missing")
        if not isinstance(manifest[key], kind) or (kind is int and isinstance(manifest[key], bool)):
            _fail(path, key, f"must be of type {kind.__name__}, got {type(manifest[key]).__name__}")
    for rel, entry in manifest["files"].items():
        check_relative_path(rel, where=f"{path}: files", field=f"files.{rel}")
        if rel in OWN_FILES:
            _fail(path, f"files.{rel}", f"lists {rel}, which is not a file the manifest can list")
        if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
                and isinstance(entry.get("bytes"), int) and not isinstance(entry.get("bytes"), bool)):
            _fail(path, f"files.{rel}", "needs 'sha256' (str) and 'bytes' (int)")
        if not _SHA256.fullmatch(entry["sha256"]):
            _fail(path, f"files.{rel}.sha256", f"is {entry['sha256']!r:.80}, expected 64 lower-case hex digits")
        if entry["bytes"] < 0:
            _fail(path, f"files.{rel}.bytes", f"is {entry['bytes']}, must be >= 0")
    if not manifest["graphs"]:
        _fail(path, "graphs", "is empty (every bundle holds at least one graph)")
    for key, graph in manifest["graphs"].items():
        if not isinstance(graph, dict) or any(k not in graph for k in GRAPH_KEYS):
            _fail(path, f"graphs.{key}", f"needs {list(GRAPH_KEYS)}")
        for k in GRAPH_KEYS:
            if not isinstance(graph[k], str):
                _fail(path, f"graphs.{key}.{k}", f"must be a string, got {graph[k]!r:.80}")
        if graph["file"] not in manifest["files"]:
            _fail(path, f"graphs.{key}.file", f"is {graph['file']!r}, not listed in files")
    check_consistency(manifest, str(path))
    return manifest


def read_manifest(folder: str | os.PathLike, *, key: bytes | None = None) -> dict:
    """Read ``folder/manifest.json`` (a regular file, bounded size), check it against ``manifest.sha256``
    (and ``manifest.sig`` when ``key`` is given), then :func:`parse_manifest` it.

    Does not touch the other files; :func:`verify_bundle` checks them. Raises BundleError.
    """
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise BundleError(f"{folder}: not a bundle folder (no such directory)", file=str(folder))
    data = read_small_file(path, MAX_MANIFEST_BYTES, missing="every bundle has a manifest")
    check_digest(folder, data)
    if key is not None:
        check_signature(folder, data, key)
    return parse_manifest(data, path)


def _listed(manifest: Mapping | Manifest) -> dict[str, Mapping]:
    """``rel -> {sha256, bytes}`` of a manifest given as JSON or typed."""
    if isinstance(manifest, Manifest):
        return {rel: {"sha256": f.sha256, "bytes": f.bytes} for rel, f in manifest.files.items()}
    return dict(manifest.get("files", {}))


def unlisted_files(folder: str | os.PathLike, manifest: Mapping | Manifest) -> list[str]:
    """Entries in the folder (recursively, links not followed) that are neither folders nor files the
    manifest lists, the manifest's own files (``manifest.json``, its digest and signature) excepted."""
    folder = Path(folder)
    listed = set(_listed(manifest)) | set(OWN_FILES)
    found = []
    for top, dirs, names in os.walk(folder, followlinks=False):
        rel_top = Path(top).relative_to(folder)
        found += [(rel_top / n).as_posix() for n in names]
        found += [(rel_top / d).as_posix() for d in dirs if (Path(top) / d).is_symlink()]
    return sorted(rel for rel in found if rel not in listed)


def verify_bundle(folder: str | os.PathLike, manifest: Mapping | Manifest | None = None, *,
                  strict: bool = False, only: Iterable[str] | None = None) -> Mapping | Manifest:
    """Check every file of ``files``: inside the folder, a regular file, its size and sha256.

    ``strict`` also refuses files the manifest does not list; ``only`` checks just these listed files (a
    partial copy of a bundle, as Triton's Python models hold: each must be listed). Returns the manifest (as
    given; read as JSON when not given); raises BundleError naming the first offending file.
    """
    folder = Path(folder)
    manifest = manifest if manifest is not None else read_manifest(folder)
    root = folder.resolve()
    listed = _listed(manifest)
    if only is not None:
        only = list(only)
        for rel in only:
            if rel not in listed:
                raise BundleError(f"{folder / MANIFEST}: {rel!r} is not listed in files", file=str(folder / MANIFEST),
                                  field=f"files.{rel}")
        listed = {rel: listed[rel] for rel in only}
    for rel, entry in listed.items():
        path = folder / rel
        try:
            outside = path.is_symlink() or root not in path.resolve().parents
        except (OSError, RuntimeError):  # a link loop
            outside = True
        if outside:
            raise BundleError(f"{path}: a link or a path leading outside the bundle (listed in {MANIFEST})",
                              file=str(path), field=f"files.{rel}")
        try:
            mode = path.stat().st_mode
        except FileNotFoundError:
            raise BundleError(f"{path}: missing (listed in {MANIFEST})", file=str(path), field=f"files.{rel}") from None
        if not stat.S_ISREG(mode):
            raise BundleError(f"{path}: not a regular file (listed in {MANIFEST})", file=str(path),
                              field=f"files.{rel}")
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise BundleError(f"{path}: {size} bytes, {MANIFEST} says {entry['bytes']}", file=str(path),
                              field=f"files.{rel}.bytes")
        if sha256_file(path) != entry["sha256"]:
            raise BundleError(f"{path}: sha256 does not match {MANIFEST}", file=str(path), field=f"files.{rel}.sha256")
    check_bundle_refs(folder, _listed(manifest), only=listed)  # graphs' external data inside the weight store
    if strict and only is None:
        extra = unlisted_files(folder, manifest)
        if extra:
            raise BundleError(f"{folder}: file(s) not listed in {MANIFEST}: {extra[:5]} (a bundle holds only what "
                              f"its manifest lists; {ALLOW_UNLISTED_ENV}=1 or strict=False accepts them)",
                              file=str(folder / extra[0]), field="files")
    return manifest


@dataclass(frozen=True)
class Bundle:
    """A verified bundle: its folder and its typed manifest (:class:`~dfma.contract.manifest.Manifest`)."""

    folder: Path
    manifest: Manifest

    def path(self, rel: str) -> Path:
        """Absolute path of a file the manifest lists; BundleError for any other name."""
        if rel not in self.manifest.files:
            raise BundleError(f"{self.folder}: {rel!r} is not a file of this bundle (not in {MANIFEST})")
        return self.folder / rel

    def graph(self, key: str) -> GraphEntry:
        """The ``graphs`` entry ``key`` (a catalogue key, ``dfma.contract.graphs``); BundleError listing the keys."""
        if key not in self.manifest.graphs:
            raise BundleError(f"{self.folder / MANIFEST}: no graph {key!r}; it has {sorted(self.manifest.graphs)}",
                              file=str(self.folder / MANIFEST), field=f"graphs.{key}")
        return self.manifest.graphs[key]

    def graph_path(self, key: str) -> Path:
        """Path of the file of graph ``key``."""
        return self.path(self.graph(key).file)

    @property
    def labels(self) -> list[str]:
        """Relation names, index = class id."""
        return list(self.manifest.labels)


def allow_unlisted_from_env() -> bool:
    """Whether ``DFMA_BUNDLE_ALLOW_UNLISTED`` opts out of the strict unlisted-file check (``1``, ``true``, ``yes``)."""
    return os.environ.get(ALLOW_UNLISTED_ENV, "").strip().lower() in ("1", "true", "yes")


def open_bundle(folder: str | os.PathLike, *, verify: bool = True, strict: bool | None = None,
                key: bytes | None = None, only: Iterable[str] | None = None) -> Bundle:
    """Read the manifest and (by default) verify every listed file; raises BundleError. The one opening path
    of every bundle reader: the manifest is checked against its digest and (with a key) its signature,
    parsed and checked once, and typed (``Bundle.manifest``, :class:`~dfma.contract.manifest.Manifest`).

    ``strict`` (default: True unless ``DFMA_BUNDLE_ALLOW_UNLISTED=1``) refuses files the manifest does not
    list; ``key`` (default: the key file ``DFMA_BUNDLE_KEY_FILE`` names, if set) requires a signature;
    ``only`` verifies just these listed files (a partial copy: Triton's Python models); ``verify=False``
    checks the manifest alone (digest, signature, contents), for a caller that verifies what it copies.
    """
    folder = Path(folder)
    key = key if key is not None else key_from_env()
    manifest = read_manifest(folder, key=key)
    if verify:
        verify_bundle(folder, manifest, strict=not allow_unlisted_from_env() if strict is None else strict,
                      only=only)
    return Bundle(folder, Manifest.from_json(manifest))
