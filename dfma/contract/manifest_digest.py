"""The manifest's own digest and optional signature (contract section 4, "Manifest integrity").

``manifest.json`` lists every other file with its sha256; these two small files beside it cover the
manifest itself:

- ``manifest.sha256`` (required): one line ``<sha256 hex of the bytes of manifest.json>  manifest.json``,
  the format of ``sha256sum`` (``sha256sum -c manifest.sha256`` checks it too). Any edit of the manifest
  (a preprocessing constant, a limit, a file hash) is detected at load.
- ``manifest.sig`` (optional): one line ``hmac-sha256 <hex>``, the HMAC-SHA256 of the same bytes under a
  key the user holds. The digest alone detects edits but anyone can recompute it; the signature can only
  be made with the key. A key is the raw bytes of a key file (e.g. ``head -c 32 /dev/urandom > key``),
  named by an argument or by the environment variable ``DFMA_BUNDLE_KEY_FILE``; where a key is given
  every load requires a matching signature, and every bundle writer signs what it writes.

Why file bytes and not a digest field inside a canonical JSON: Python's ``json.dumps`` and nlohmann::json
print some floats differently (shortest round-trip digits, exponent forms), so a canonical re-serialisation
could not be reproduced bit for bit in C++; hashing the bytes as written needs no canonical form, and
the C++ runtime (runtime/cpp/src/bundle.cpp) checks the very same bytes.

Command line: ``python export/sign_bundle.py {digest,sign,check} BUNDLE [--key-file KEY]``.
"""
from __future__ import annotations

import hashlib
import hmac
import os
import re
import stat
from pathlib import Path

from dfma.contract.atomic import write_atomic
from dfma.contract.errors import BundleError

MANIFEST = "manifest.json"
DIGEST_FILE = "manifest.sha256"
SIGNATURE_FILE = "manifest.sig"
OWN_FILES = (MANIFEST, DIGEST_FILE, SIGNATURE_FILE)  # the bundle files ``files`` does not list
KEY_ENV = "DFMA_BUNDLE_KEY_FILE"
MAX_MANIFEST_BYTES = 16 << 20  # a real manifest is well under 1 MiB
MAX_SIDECAR_BYTES = 4096
MAX_KEY_BYTES = 1 << 16
SIGNATURE_SCHEME = "hmac-sha256"
_DIGEST_LINE = re.compile(r"([0-9a-f]{64}) [ *]manifest\.json\n?")
_SIGNATURE_LINE = re.compile(r"hmac-sha256 ([0-9a-f]{64})\n?")


def read_small_file(path: str | os.PathLike, limit: int, *, missing: str) -> bytes:
    """The bytes of a regular file of at most ``limit`` bytes, never following a link.

    A link, a FIFO, a device or a folder is refused before it is opened (no read can block or run
    forever); ``missing`` completes the message when the file does not exist. Raises BundleError.
    """
    path = Path(path)
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        raise BundleError(f"{path}: missing ({missing})", file=str(path)) from None
    except OSError as exc:
        raise BundleError(f"{path}: cannot be read ({exc.strerror or exc})", file=str(path)) from None
    if stat.S_ISLNK(st.st_mode):
        raise BundleError(f"{path}: a link; bundle files must be regular files inside the folder", file=str(path))
    if not stat.S_ISREG(st.st_mode):
        raise BundleError(f"{path}: not a regular file", file=str(path))
    if st.st_size > limit:
        raise BundleError(f"{path}: {st.st_size} bytes, more than the {limit} allowed", file=str(path))
    flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0)
    try:
        fd = os.open(path, flags)
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):  # replaced between lstat and open
                raise BundleError(f"{path}: not a regular file", file=str(path))
            data = f.read(limit + 1)
    except OSError as exc:
        raise BundleError(f"{path}: cannot be read ({exc.strerror or exc})", file=str(path)) from None
    if len(data) > limit:
        raise BundleError(f"{path}: more than the {limit} bytes allowed", file=str(path))
    return data


def digest_line(data: bytes) -> str:
    """The ``manifest.sha256`` content for manifest bytes ``data``."""
    return f"{hashlib.sha256(data).hexdigest()}  {MANIFEST}\n"


def signature_line(data: bytes, key: bytes) -> str:
    """The ``manifest.sig`` content: HMAC-SHA256 of manifest bytes ``data`` under ``key``."""
    return f"{SIGNATURE_SCHEME} {hmac.new(key, data, hashlib.sha256).hexdigest()}\n"


def check_digest(folder: str | os.PathLike, data: bytes) -> None:
    """Check ``folder/manifest.sha256`` against the manifest bytes ``data``; BundleError naming the file."""
    path = Path(folder) / DIGEST_FILE
    raw = read_small_file(path, MAX_SIDECAR_BYTES, missing=f"every bundle has the digest of its {MANIFEST}; "
                          "after an intended edit run `python export/sign_bundle.py digest BUNDLE`")
    match = _DIGEST_LINE.fullmatch(raw.decode("ascii", errors="replace"))
    if match is None:
        raise BundleError(f"{path}: expected one line '<sha256 hex>  {MANIFEST}', got {raw[:100]!r}",
                          file=str(path), field="sha256")
    actual = hashlib.sha256(data).hexdigest()
    if not hmac.compare_digest(match.group(1), actual):
        raise BundleError(f"{path}: {MANIFEST} has sha256 {actual}, the digest says {match.group(1)}: the manifest "
                          "was edited after it was written", file=str(path), field="sha256")


def load_key(key_file: str | os.PathLike, *, where: str = "--key-file") -> bytes:
    """The raw bytes of a key file (1 byte to 64 KiB); BundleError naming ``where`` and the path."""
    try:
        key = read_small_file(key_file, MAX_KEY_BYTES, missing="the signing key file")
    except BundleError as exc:
        raise BundleError(f"{where}: {exc}", file=str(key_file), field=where) from None
    if not key:
        raise BundleError(f"{where}: {key_file}: the key file is empty", file=str(key_file), field=where)
    return key


def key_from_env() -> bytes | None:
    """The key named by ``DFMA_BUNDLE_KEY_FILE``, or None when the variable is unset or empty."""
    path = os.environ.get(KEY_ENV)
    return load_key(path, where=KEY_ENV) if path else None


def check_signature(folder: str | os.PathLike, data: bytes, key: bytes) -> None:
    """Check ``folder/manifest.sig`` against the manifest bytes ``data`` and ``key``; BundleError."""
    path = Path(folder) / SIGNATURE_FILE
    raw = read_small_file(path, MAX_SIDECAR_BYTES, missing="a signing key is given, so the bundle must be signed "
                          "(python export/sign_bundle.py sign BUNDLE --key-file KEY)")
    match = _SIGNATURE_LINE.fullmatch(raw.decode("ascii", errors="replace"))
    if match is None:
        raise BundleError(f"{path}: expected one line '{SIGNATURE_SCHEME} <hex>', got {raw[:100]!r}",
                          file=str(path), field=SIGNATURE_SCHEME)
    expected = hmac.new(key, data, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(match.group(1), expected):
        raise BundleError(f"{path}: the signature does not match {MANIFEST} under this key (edited, or signed "
                          "with another key)", file=str(path), field=SIGNATURE_SCHEME)


def write_digest(folder: str | os.PathLike, *, key: bytes | None = None) -> str:
    """Write ``manifest.sha256`` for the folder's manifest as it is now (and ``manifest.sig`` with ``key``;
    without one an existing signature is left alone: it still vouches only for the bytes it was made
    for). Returns the digest hex."""
    folder = Path(folder)
    data = read_small_file(folder / MANIFEST, MAX_MANIFEST_BYTES, missing="nothing to digest")
    line = digest_line(data)
    write_atomic(folder / DIGEST_FILE, line, encoding="ascii")
    if key is not None:
        write_atomic(folder / SIGNATURE_FILE, signature_line(data, key), encoding="ascii")
    return line.split()[0]


def copy_manifest(src: str | os.PathLike, dst: str | os.PathLike) -> None:
    """Copy ``manifest.json`` with its digest (and signature, when there is one) from folder ``src`` to ``dst``."""
    src, dst = Path(src), Path(dst)
    data = read_small_file(src / MANIFEST, MAX_MANIFEST_BYTES, missing="nothing to copy")
    check_digest(src, data)
    (dst / MANIFEST).write_bytes(data)
    (dst / DIGEST_FILE).write_text(digest_line(data), encoding="ascii")
    if (src / SIGNATURE_FILE).is_file():
        (dst / SIGNATURE_FILE).write_bytes(read_small_file(src / SIGNATURE_FILE, MAX_SIDECAR_BYTES, missing=""))
