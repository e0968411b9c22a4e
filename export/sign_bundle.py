"""Digest, sign or check a bundle's manifest: ``python export/sign_bundle.py {digest,sign,check} BUNDLE [--key-file KEY]``.

``digest`` re-digests ``manifest.json`` after an intended hand edit (``manifest.sha256``); ``sign`` writes the
digest and the HMAC-SHA256 signature ``manifest.sig``; ``check`` opens the bundle as every runtime does
(digest, signature where a key is given, every file's sha256). The key is ``--key-file`` or
``$DFMA_BUNDLE_KEY_FILE``. Formats: ``dfma.contract.manifest_digest``. Exit status 0, 1 on a bundle error,
2 on a usage error.
"""
from __future__ import annotations

import os
import sys

if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)  # import everything as dfma.export.*, never export/ modules by bare name

import argparse  # noqa: E402
from pathlib import Path  # noqa: E402

from dfma.contract.bundle import open_bundle, parse_manifest  # noqa: E402
from dfma.contract.errors import BundleError  # noqa: E402
from dfma.contract.manifest_digest import (  # noqa: E402
    DIGEST_FILE, KEY_ENV, MANIFEST, MAX_MANIFEST_BYTES, SIGNATURE_FILE,
    key_from_env, load_key, read_small_file, write_digest,
)


def build_parser() -> argparse.ArgumentParser:
    """The command line (module doc)."""
    p = argparse.ArgumentParser(prog="python export/sign_bundle.py",
                                description="Digest, sign or check a bundle's manifest.json.")
    p.add_argument("command", choices=("digest", "sign", "check"),
                   help="digest: write manifest.sha256; sign: digest + manifest.sig; check: verify both")
    p.add_argument("bundle", type=Path, help="bundle folder")
    p.add_argument("--key-file", type=Path, default=None,
                   help=f"HMAC-SHA256 key (raw bytes of the file); default ${KEY_ENV}; required by sign")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command; returns the exit status."""
    args = build_parser().parse_args(argv)
    try:
        key = load_key(args.key_file) if args.key_file is not None else key_from_env()
        if args.command == "sign" and key is None:
            print(f"usage error: sign needs --key-file or ${KEY_ENV}", file=sys.stderr)
            return 2
        if args.command == "check":
            open_bundle(args.bundle, key=key)
            print(f"{args.bundle}: manifest digest{' and signature' if key else ''} and every file verified")
        else:
            path = args.bundle / MANIFEST
            parse_manifest(read_small_file(path, MAX_MANIFEST_BYTES, missing="nothing to digest"), path)
            digest = write_digest(args.bundle, key=key if args.command == "sign" else None)
            signed = f"; {SIGNATURE_FILE} written" if args.command == "sign" else ""
            print(f"{args.bundle / DIGEST_FILE}: {digest}{signed}")
    except BundleError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
