"""Read and verify a bundle folder (torch-free, onnx-free: json + hashlib only).

A bundle (docs/contract.md section 4) is a folder with ``manifest.json`` and the files it lists under
``files`` (relative path -> ``sha256``, ``bytes``). The exporter writes it (``dfma.contract.bundle_writer``);
every runtime opens it through :func:`open_bundle` (or :func:`read_manifest` + :func:`verify_bundle`),
which refuses a bundle whose manifest is malformed, whose listed files are missing, resized or altered,
or whose paths point outside the folder. Every error is a :class:`~dfma.contract.errors.BundleError` naming the
file and, where there is one, the manifest field.
"""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from dfma.contract.errors import BundleError

FORMAT = "dfma-bundle"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
REQUIRED_KEYS: dict[str, type] = {
    "format": str, "format_version": int, "created": str, "model": dict, "labels": list,
    "preprocess": dict, "io": dict, "limits": dict, "opset": int, "graphs": dict, "files": dict,
    "tools": dict, "parity": dict,
}
GRAPH_KEYS = ("file", "precision", "kind")


def sha256_file(path: str | os.PathLike) -> str:
    """Hex sha256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def check_relative_path(rel: str, *, where: str) -> PurePosixPath:
    """A listed path must be relative, POSIX, without ``..``; returns it parsed, else BundleError."""
    if not isinstance(rel, str) or not rel or "\\" in rel:
        raise BundleError(f"{where}: invalid file name {rel!r}")
    path = PurePosixPath(rel)
    if path.is_absolute() or any(part in ("", ".", "..") for part in rel.split("/")):
        raise BundleError(f"{where}: file {rel!r} is not a plain path inside the bundle")
    return path


def read_manifest(folder: str | os.PathLike) -> dict:
    """Parse and validate ``folder/manifest.json`` (format, version, required keys and their types).

    Does not touch the other files; :func:`verify_bundle` checks them. Raises BundleError.
    """
    folder = Path(folder)
    path = folder / MANIFEST
    if not folder.is_dir():
        raise BundleError(f"{folder}: not a bundle folder (no such directory)")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"{path}: missing (every bundle has a manifest)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BundleError(f"{path}: unreadable ({exc})") from None
    if not isinstance(manifest, dict):
        raise BundleError(f"{path}: expected a JSON object, got {type(manifest).__name__}")
    if manifest.get("format") != FORMAT:
        raise BundleError(f"{path}: field 'format' is {manifest.get('format')!r}, expected {FORMAT!r}")
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{path}: field 'format_version' is {manifest.get('format_version')!r}; "
                          f"this reader understands {FORMAT_VERSION}")
    for key, kind in REQUIRED_KEYS.items():
        if key not in manifest:
            raise BundleError(f"{path}: field {key!r} missing")
        if not isinstance(manifest[key], kind) or (kind is int and isinstance(manifest[key], bool)):
            raise BundleError(f"{path}: field {key!r} must be of type {kind.__name__}, "
                              f"got {type(manifest[key]).__name__}")
    for rel, entry in manifest["files"].items():
        check_relative_path(rel, where=f"{path}: files")
        if rel == MANIFEST:
            raise BundleError(f"{path}: files lists {MANIFEST} itself")
        if not (isinstance(entry, dict) and isinstance(entry.get("sha256"), str)
                and isinstance(entry.get("bytes"), int)):
            raise BundleError(f"{path}: files[{rel!r}] needs 'sha256' (str) and 'bytes' (int)")
    for key, graph in manifest["graphs"].items():
        if not isinstance(graph, dict) or any(k not in graph for k in GRAPH_KEYS):
            raise BundleError(f"{path}: graphs[{key!r}] needs {list(GRAPH_KEYS)}")
        if graph["file"] not in manifest["files"]:
            raise BundleError(f"{path}: graphs[{key!r}].file {graph['file']!r} is not listed in files")
    return manifest


def unlisted_files(folder: str | os.PathLike, manifest: Mapping) -> list[str]:
    """Files in the folder (recursively) that the manifest does not list, ``manifest.json`` excepted."""
    folder = Path(folder)
    listed = set(manifest.get("files", {})) | {MANIFEST}
    found = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file() or p.is_symlink())
    return [rel for rel in found if rel not in listed]


def verify_bundle(folder: str | os.PathLike, manifest: Mapping | None = None, *, strict: bool = False) -> dict:
    """Check every file of ``files``: inside the folder, a regular file, its size and sha256.

    ``strict`` also refuses files the manifest does not list. Returns the manifest; raises BundleError
    naming the first offending file.
    """
    folder = Path(folder)
    manifest = dict(manifest) if manifest is not None else read_manifest(folder)
    root = folder.resolve()
    for rel, entry in manifest["files"].items():
        path = folder / rel
        if path.is_symlink() or root not in path.resolve().parents:
            raise BundleError(f"{path}: a link or a path leading outside the bundle (listed in {MANIFEST})")
        if not path.is_file():
            raise BundleError(f"{path}: missing (listed in {MANIFEST})")
        size = path.stat().st_size
        if size != entry["bytes"]:
            raise BundleError(f"{path}: {size} bytes, {MANIFEST} says {entry['bytes']}")
        if sha256_file(path) != entry["sha256"]:
            raise BundleError(f"{path}: sha256 does not match {MANIFEST}")
    if strict:
        extra = unlisted_files(folder, manifest)
        if extra:
            raise BundleError(f"{folder}: file(s) not listed in {MANIFEST}: {extra[:5]}")
    return manifest


@dataclass(frozen=True)
class Bundle:
    """A verified bundle: its folder and manifest, with accessors for the parts runtimes need."""

    folder: Path
    manifest: dict

    def path(self, rel: str) -> Path:
        """Absolute path of a file the manifest lists; BundleError for any other name."""
        if rel not in self.manifest["files"]:
            raise BundleError(f"{self.folder}: {rel!r} is not a file of this bundle (not in {MANIFEST})")
        return self.folder / rel

    def graph(self, key: str) -> dict:
        """The ``graphs`` entry ``key`` (a catalogue key, ``dfma.contract.graphs``); BundleError listing the keys."""
        graphs = self.manifest["graphs"]
        if key not in graphs:
            raise BundleError(f"{self.folder / MANIFEST}: no graph {key!r}; it has {sorted(graphs)}")
        return graphs[key]

    def graph_path(self, key: str) -> Path:
        """Path of the file of graph ``key``."""
        return self.path(self.graph(key)["file"])

    @property
    def labels(self) -> list[str]:
        """Relation names, index = class id."""
        return list(self.manifest["labels"])


def open_bundle(folder: str | os.PathLike, *, verify: bool = True, strict: bool = False) -> Bundle:
    """Read the manifest and (by default) verify every listed file; raises BundleError."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if verify:
        verify_bundle(folder, manifest, strict=strict)
    return Bundle(folder, manifest)
