"""Write bundle folders atomically: build beside the target, hash every file, rename into place.

:class:`BundleWriter` creates a fresh bundle; :func:`update_bundle` adds or replaces files in an existing
one (the precision step writes ``model.fp16.onnx`` / ``model.int8*.onnx`` this way) and re-writes the
manifest with the same hashing. Either leaves no half bundle: until the final rename the work lives in a
hidden sibling folder that is removed on any failure. :class:`~dfma.contract.atomic.AtomicFolder` (in
``dfma.contract.atomic``, the one home of writing files and folders atomically; re-exported here) is the
same temp-and-rename for any folder (the Triton repository, a slimmed bundle). Every manifest goes through
:func:`write_manifest`, which also writes its digest ``manifest.sha256`` and, with a key (argument or
``DFMA_BUNDLE_KEY_FILE``), its signature ``manifest.sig`` (``dfma.contract.manifest_digest``). The hidden
siblings are named after their owner (``dfma.contract.stale_temps``), and each writer first removes the
stale ones of its target that a killed run left behind. Reading and verification live in
``dfma.contract.bundle``, re-exported here for convenience.
"""
from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from dfma.contract.atomic import (AtomicFolder, check_relative_path, check_target, link_or_copy, normalize_modes,
                                 swap_into_place)
from dfma.contract.bundle import (FORMAT, FORMAT_VERSION, MANIFEST, open_bundle, read_manifest, sha256_file,
                                 verify_bundle)
from dfma.contract.errors import BundleError, ExportError
from dfma.contract.manifest import FileEntry, Manifest
from dfma.contract.manifest_digest import OWN_FILES, key_from_env, write_digest
from dfma.contract.stale_temps import remove_stale_temps, temp_prefix

__all__ = ["AtomicFolder", "BundleWriter", "check_target", "update_bundle", "hash_files", "write_manifest",
           "manifest_json", "normalize_modes", "link_or_copy", "swap_into_place",
           "read_manifest", "verify_bundle", "open_bundle", "FORMAT", "FORMAT_VERSION", "MANIFEST"]


def hash_files(folder: Path) -> dict[str, dict]:
    """``relative path -> {sha256, bytes}`` for every regular file under ``folder`` but the manifest and its
    digest and signature."""
    files = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        rel = path.relative_to(folder).as_posix()
        if rel not in OWN_FILES:
            files[rel] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    return files


def _typed_files(files: Mapping[str, Mapping]) -> dict[str, FileEntry]:
    return {rel: FileEntry(sha256=e["sha256"], bytes=e["bytes"]) for rel, e in files.items()}


def manifest_json(manifest: Manifest | Mapping) -> dict:
    """The JSON object of a manifest: the one serialisation of the typed view (:meth:`Manifest.to_json`;
    a JSON mapping, as the precision step still builds, is taken as it is)."""
    return manifest.to_json() if isinstance(manifest, Manifest) else dict(manifest)


def write_manifest(folder: Path, manifest: Manifest | Mapping, *, key: bytes | None = None) -> None:
    """Write ``manifest.json`` (typed, :func:`manifest_json`, or JSON; keys stay as given; 2-space indent),
    fsync it, then its digest ``manifest.sha256`` and, with ``key`` (default: ``DFMA_BUNDLE_KEY_FILE``'s, if
    set), ``manifest.sig``."""
    text = json.dumps(manifest_json(manifest), indent=2, ensure_ascii=False, allow_nan=False) + "\n"
    path = folder / MANIFEST
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    write_digest(folder, key=key if key is not None else key_from_env())


class BundleWriter(AtomicFolder):
    """An :class:`AtomicFolder` whose commit hashes every file and writes the manifest.

    >>> with BundleWriter("bundles/tiny", force=False) as w:
    ...     save_graph(model, w.path("model.onnx"))
    ...     w.commit(manifest)      # hashes every file, writes manifest.json, renames
    """

    def __init__(self, out: str | os.PathLike, *, force: bool = False, key: bytes | None = None):
        """As :class:`AtomicFolder`; ``key`` signs the manifest (default: ``DFMA_BUNDLE_KEY_FILE``'s, if set)."""
        super().__init__(out, force=force)
        self.key = key

    def __enter__(self) -> "BundleWriter":
        super().__enter__()
        return self

    def commit(self, manifest: Manifest | Mapping) -> Path:  # type: ignore[override]
        """Hash the files, write the manifest (typed or JSON; its ``files`` filled in) and its digest,
        rename into place; returns ``out``."""
        if self.tmp is None:
            raise ExportError("BundleWriter.commit() called outside its `with` block")
        typed = Manifest.from_json(manifest_json(manifest))
        typed = dataclasses.replace(typed, files=_typed_files(hash_files(self.tmp)))
        for key, graph in typed.graphs.items():
            if graph.file not in typed.files:
                raise ExportError(f"manifest graphs[{key!r}]: file {graph.file!r} was not written")
        write_manifest(self.tmp, typed, key=self.key)
        read_manifest(self.tmp, key=self.key)  # the reader the runtimes use must accept what we wrote
        return super().commit()


def update_bundle(folder: str | os.PathLike, new_files: Mapping[str, str | os.PathLike],
                  update: Callable[[dict], dict | None] | Mapping | None = None, *,
                  remove: Iterable[str] = (), verify: bool = True, key: bytes | None = None,
                  edit: Callable[[Manifest], Manifest] | None = None,
                  prepare: Callable[[Path], object] | None = None) -> dict:
    """Add or replace files in an existing bundle and re-write its manifest, atomically.

    ``new_files`` maps bundle-relative names (``model.fp16.onnx``, ``engines/x.plan``) to source paths;
    ``remove`` names files to drop. ``edit`` takes the typed :class:`~dfma.contract.manifest.Manifest` and
    returns the new one (``m.with_graph(key, GraphEntry(...))``, ``dataclasses.replace(m, tools={...})``);
    the older forms of ``update`` still work on the JSON: a function that edits the manifest dict in place
    (or returns a new one) or a mapping merged one level deep (e.g. ``{"graphs": {"fp16": {...}},
    "parity": {"fp16": {...}}}``). The existing files are verified first (``verify``); ``files`` is
    recomputed from what the new folder holds; the new manifest gets its digest (and, with ``key`` or
    ``DFMA_BUNDLE_KEY_FILE``, a signature; the old one is checked first). ``prepare`` is called on the new
    folder once its files are in place, before they are hashed (the exporter packs the graphs' weights into
    the bundle's weight store there: ``dfma.export.weight_store.pack_folder``); its files may be hard links
    to the old bundle's, so it must replace a file (write a new one, rename it over) rather than write into
    it. Returns the new manifest.
    Raises BundleError.
    """
    folder = Path(folder)
    sign_key = key if key is not None else key_from_env()
    manifest = read_manifest(folder, key=sign_key)
    if verify:
        verify_bundle(folder, manifest)
    removed = set(remove)
    for rel in list(new_files) + list(removed):
        check_relative_path(rel, where="update_bundle")
        if rel == MANIFEST:
            raise BundleError(f"{folder}: update_bundle cannot replace {MANIFEST} as a file")
    remove_stale_temps(folder.absolute())
    tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(folder.absolute(), "tmp"), dir=folder.parent))
    tmp.chmod(0o755)
    try:
        for rel in manifest["files"]:
            if rel not in new_files and rel not in removed:
                link_or_copy(folder / rel, tmp / rel)
        for rel, src in new_files.items():
            src = Path(src)
            if not src.is_file():
                raise BundleError(f"{src}: source of bundle file {rel!r} is missing")
            (tmp / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, tmp / rel)
        if prepare is not None:
            prepare(tmp)
        new = copy.deepcopy(manifest)
        if edit is not None:
            new = manifest_json(edit(Manifest.from_json(new)))
        if callable(update):
            new = update(new) or new
        elif update:
            for section, value in update.items():
                if isinstance(value, Mapping) and isinstance(new.get(section), dict):
                    new[section].update(copy.deepcopy(dict(value)))
                else:
                    new[section] = copy.deepcopy(value)
        typed = dataclasses.replace(Manifest.from_json(new), files=_typed_files(hash_files(tmp)))
        for graph_key in [k for k, g in typed.graphs.items() if g.file in removed]:
            typed = typed.with_graph(graph_key, None)  # and its parity record
        new = manifest_json(typed)
        write_manifest(tmp, new, key=sign_key)
        read_manifest(tmp, key=sign_key)
        normalize_modes(tmp)
        swap_into_place(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return new
