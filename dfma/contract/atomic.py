"""Writing atomically: every file and folder the project writes is built under a temporary name beside its
target and renamed into place, so that a reader sees the old one or the new one, never half of either.

- :class:`AtomicFile` / :func:`write_atomic`: a file (the command line's output, ``manifest.sha256`` /
  ``manifest.sig``, ``tokenizer.json`` / ``vocab.txt``): a hidden ``.<name>.*.tmp`` sibling, fsynced, given
  the umask's permissions, ``os.replace``-d over the target;
- :class:`AtomicFolder`: a folder (a bundle: ``dfma.contract.bundle_writer``; the Triton repository; a
  checkpoint; an extracted pretrained model) built in a hidden sibling named after its owner
  (``dfma.contract.stale_temps``, which also removes the siblings a killed writer left) and swapped into
  place by :func:`swap_into_place`; :func:`check_target` refuses a target before any work is done;
- :func:`check_relative_path`: a name inside a folder (no ``..``, not absolute), for what is written and read.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from pathlib import Path, PurePosixPath
from typing import TextIO

from dfma.contract.errors import BundleError, ExportError
from dfma.contract.stale_temps import remove_stale_temps, temp_prefix


def check_relative_path(rel: str, *, where: str, field: str | None = None) -> PurePosixPath:
    """A listed path must be relative, POSIX, without ``..``; returns it parsed, else BundleError
    (``where`` starts its message, ``field`` is its ``field``)."""
    if not isinstance(rel, str) or not rel or "\\" in rel or "\0" in rel:
        raise BundleError(f"{where}: invalid file name {rel!r}", field=field)
    path = PurePosixPath(rel)
    if path.is_absolute() or any(part in ("", ".", "..") for part in rel.split("/")):
        raise BundleError(f"{where}: file {rel!r} is not a plain path inside the bundle", field=field)
    return path


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


class AtomicFile:
    """A text file written under a temporary name in the target's folder and renamed over it on :meth:`close`
    (the target keeps its old content until then). OSError when the folder refuses the temporary file."""

    def __init__(self, path: str | os.PathLike, *, encoding: str = "utf-8", errors: str = "strict"):
        """Create the temporary file (and missing parent folders)."""
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.path.parent, prefix=f".{self.path.name}.", suffix=".tmp")
        self._tmp: str | None = tmp
        os.fchmod(fd, 0o666 & ~_umask())  # mkstemp makes 0600
        self.stream: TextIO = os.fdopen(fd, "w", encoding=encoding, errors=errors, newline="\n")

    def write(self, text: str) -> None:
        """Write text to the temporary file."""
        self.stream.write(text)

    def close(self, keep: bool = True) -> None:
        """Flush, fsync and rename the temporary file over the target; ``keep=False`` removes it instead,
        leaving the target as it was. On an OSError the temporary file is removed and the error raised."""
        if self._tmp is None:
            return
        tmp, self._tmp = self._tmp, None
        try:
            if keep:
                self.stream.flush()
                os.fsync(self.stream.fileno())
            self.stream.close()
            if keep:
                os.replace(tmp, self.path)
            else:
                os.unlink(tmp)
        except BaseException:
            try:
                self.stream.close()
            except OSError:
                pass
            try:
                os.unlink(tmp)
            except OSError:
                pass
            raise

    def __enter__(self) -> AtomicFile:
        return self

    def __exit__(self, exc_type, *exc) -> None:
        self.close(keep=exc_type is None)


def write_atomic(path: str | os.PathLike, text: str, *, encoding: str = "utf-8") -> None:
    """Write ``text`` to ``path`` through an :class:`AtomicFile` (all or nothing)."""
    with AtomicFile(path, encoding=encoding) as f:
        f.write(text)


def swap_into_place(tmp: Path, out: Path) -> None:
    """Rename folder ``tmp`` to ``out``; an existing ``out`` is moved aside first (a hidden ``old`` sibling) and
    removed after, so that ``out`` is always either the old folder or the new one."""
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
            swap_into_place(self.tmp, self.out)
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


def link_or_copy(src: Path, dst: Path) -> None:
    """Hard-link ``src`` to ``dst`` (same file system), else copy it."""
    dst.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


