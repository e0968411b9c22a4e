"""Write bundle folders atomically: build beside the target, hash every file, rename into place.

:class:`BundleWriter` creates a fresh bundle; :func:`update_bundle` adds or replaces files in an existing
one (the precision step writes ``model.fp16.onnx`` / ``model.int8*.onnx`` this way) and re-writes the
manifest with the same hashing. Either leaves no half bundle: until the final rename the work lives in a
hidden sibling folder that is removed on any failure. :class:`AtomicFolder` is the same temp-and-rename
for any folder (the Triton repository, a slimmed bundle). Every manifest goes through
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
import uuid
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from dfma.contract.bundle import (FORMAT, FORMAT_VERSION, MANIFEST, check_relative_path, open_bundle,
                                 read_manifest, sha256_file, verify_bundle)
from dfma.contract.errors import BundleError, ExportError
from dfma.contract.manifest import FileEntry, Manifest
from dfma.contract.manifest_digest import OWN_FILES, key_from_env, write_digest
from dfma.contract.stale_temps import remove_stale_temps, temp_prefix

__all__ = ["AtomicFolder", "BundleWriter", "check_target", "update_bundle", "hash_files", "write_manifest",
           "manifest_json",
           "normalize_modes", "link_or_copy",
           "read_manifest", "verify_bundle", "open_bundle", "FORMAT", "FORMAT_VERSION", "MANIFEST"]


def check_target(out: str | os.PathLike, *, force: bool = False) -> Path:
    """Refuse an existing target (unless ``force``) or one whose parent cannot be written; ExportError."""
    out = Path(out).absolute()
    if out.exists() or out.is_symlink():
        if not force:
            raise ExportError(f"{out}: output folder already exists (pass --force to replace it)")
        if not out.is_dir() or out.is_symlink():
            raise ExportError(f"{out}: exists and is not a folder; refusing to replace it even with --force")
    ancestor = out.parent
    while not ancestor.exists():
        ancestor = ancestor.parent
    if not ancestor.is_dir():
        raise ExportError(f"{ancestor}: is not a folder, cannot create {out}")
    try:  # a real probe: access() says yes to root even on read-only file systems
        os.rmdir(tempfile.mkdtemp(prefix=temp_prefix(out, "probe"), dir=ancestor))
    except OSError as exc:
        raise ExportError(f"{ancestor}: not writable ({exc.strerror or exc}), cannot create {out}") from None
    return out


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


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def normalize_modes(folder: Path) -> None:
    """Give the folder tree ordinary permissions (temp files and folders are created owner-only)."""
    mask = _umask()
    os.chmod(folder, 0o777 & ~mask)
    for path in folder.rglob("*"):
        if not path.is_symlink():
            os.chmod(path, (0o777 if path.is_dir() else 0o666) & ~mask)


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


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Rename ``tmp`` to ``out``; an existing ``out`` is moved aside first and removed after."""
    if out.exists():
        old = out.with_name(f"{temp_prefix(out, 'old')}{uuid.uuid4().hex[:8]}")
        os.replace(out, old)
        try:
            os.replace(tmp, out)
        except BaseException:
            os.replace(old, out)
            raise
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(tmp, out)


class AtomicFolder:
    """Context manager that builds a folder in a hidden sibling and renames it into place on :meth:`commit`.

    >>> with AtomicFolder("triton-repo", force=True) as folder:
    ...     (folder.tmp / "model").mkdir()
    ...     folder.commit()
    Leaving the block without :meth:`commit` (or by an exception) removes everything it wrote, including
    parent folders it had to create; entering it first removes the stale work folders a killed run left
    beside the same target (``dfma.contract.stale_temps``). Every step of the project that writes a folder
    uses it.
    """

    def __init__(self, out: str | os.PathLike, *, force: bool = False):
        """Check the target now (ExportError when it exists without ``force`` or is not writable)."""
        self.out = check_target(out, force=force)
        self.force = force
        self.tmp: Path | None = None
        self._created: list[Path] = []
        self.committed = False

    def __enter__(self):
        missing, parent = [], self.out.parent
        while not parent.exists():
            missing.append(parent)
            parent = parent.parent
        try:
            for folder in reversed(missing):
                folder.mkdir()
                self._created.append(folder)
            remove_stale_temps(self.out)
            self.tmp = Path(tempfile.mkdtemp(prefix=temp_prefix(self.out, "tmp"), dir=self.out.parent))
            self.tmp.chmod(0o755)  # mkdtemp makes 0700; the folder is meant to be shipped
        except OSError as exc:
            self._cleanup()
            raise ExportError(f"{self.out}: cannot create the output folder ({exc.strerror or exc})") from None
        return self

    def path(self, rel: str) -> Path:
        """Where to write file ``rel`` (inside the temporary folder); creates its sub-folders."""
        if self.tmp is None:
            raise ExportError(f"{type(self).__name__}.path() called outside its `with` block")
        check_relative_path(rel, where="output file")
        target = self.tmp / rel
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def commit(self) -> Path:
        """Give the tree ordinary permissions and rename it into place; returns ``out``."""
        if self.tmp is None:
            raise ExportError(f"{type(self).__name__}.commit() called outside its `with` block")
        normalize_modes(self.tmp)
        if self.out.exists() and not self.force:
            raise ExportError(f"{self.out}: appeared while writing; refusing to replace it without --force")
        try:
            _swap_into_place(self.tmp, self.out)
        except OSError as exc:
            raise ExportError(f"{self.out}: cannot move the folder into place ({exc.strerror or exc})") from None
        self.committed = True
        self.tmp = None
        return self.out

    def _cleanup(self) -> None:
        if self.tmp is not None:
            shutil.rmtree(self.tmp, ignore_errors=True)
            self.tmp = None
        for folder in reversed(self._created):
            try:
                folder.rmdir()
            except OSError:
                pass
        self._created = []

    def __exit__(self, *exc) -> None:
        if not self.committed:
            self._cleanup()


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


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (same file system), else copy it."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def update_bundle(folder: str | os.PathLike, new_files: Mapping[str, str | os.PathLike],
                  update: Callable[[dict], dict | None] | Mapping | None = None, *,
                  remove: Iterable[str] = (), verify: bool = True, key: bytes | None = None,
                  edit: Callable[[Manifest], Manifest] | None = None) -> dict:
    """Add or replace files in an existing bundle and re-write its manifest, atomically.

    ``new_files`` maps bundle-relative names (``model.fp16.onnx``, ``engines/x.plan``) to source paths;
    ``remove`` names files to drop. ``edit`` takes the typed :class:`~dfma.contract.manifest.Manifest` and
    returns the new one (``m.with_graph(key, GraphEntry(...))``, ``dataclasses.replace(m, tools={...})``);
    the older forms of ``update`` still work on the JSON: a function that edits the manifest dict in place
    (or returns a new one) or a mapping merged one level deep (e.g. ``{"graphs": {"fp16": {...}},
    "parity": {"fp16": {...}}}``). The existing files are verified first (``verify``); ``files`` is
    recomputed from what the new folder holds; the new manifest gets its digest (and, with ``key`` or
    ``DFMA_BUNDLE_KEY_FILE``, a signature; the old one is checked first). Returns the new manifest.
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
        _swap_into_place(tmp, folder)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return new
