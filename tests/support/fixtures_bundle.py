"""A tiny bundle for runtime tests, built once per test session, and the eager model it was exported from.

``tiny_bundle`` (session fixture): a bundle folder of the ``tiny`` preset; ``tiny_eager``: the eager
DFMAModel with the same weights (for parity); ``int8_bundle``: a copy with the INT8 graphs the precision step
builds. Built by the project's exporter (``export/to_onnx.py``)
from a checkpoint of that model; both are cached per process, so importing the fixtures into several
test modules builds the bundle once.

Use: ``from fixtures_bundle import tiny_bundle, tiny_eager  # noqa: F401`` in a test module, or in
``tests/conftest.py`` to share them.
"""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from repo_paths import REPO, SHARED_MNRE

LABELS_FALLBACK = ["None"] + [f"/rel/{i}" for i in range(1, 23)]
_CACHE: dict[str, object] = {}
INT8_TARGET = 0.85  # the tiny preset's random weights give close logits: its INT8 graphs agree 94-100 % on 16 sentences


def _labels() -> list[str]:
    rel2id = SHARED_MNRE / "rel2id.json"
    if rel2id.is_file():
        from dfma.contract.labels import LabelMap
        return LabelMap.from_json(rel2id).names
    return LABELS_FALLBACK


def _corpus() -> list[list[str]]:
    train = SHARED_MNRE / "mnre_train.txt"
    if train.is_file():
        from dfma.mnre import read_mnre
        return [list(s.words) for s in read_mnre(train)]
    words = "the of and to in a is was for on with at by from rt obama visits paris london met".split()
    return [[words[(i * 7 + j) % len(words)] for j in range(12)] for i in range(400)]


def _export_with_project_exporter(model, tok, out: Path, work: Path) -> None:
    """Run the project's exporter (`export/to_onnx.py`) on a checkpoint of ``model``."""
    from dfma.checkpoint import save_checkpoint

    script = REPO / "export" / "to_onnx.py"

    ckpt = work / "checkpoint"
    save_checkpoint(model, ckpt, tokenizer=tok)
    cmd = [sys.executable, str(script), "--checkpoint", str(ckpt), "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")


def build_tiny_bundle(work: Path) -> tuple[Path, object]:
    """Export a seeded ``tiny`` model to ``work/bundle``; returns (bundle folder, eager model)."""
    import torch

    from dfma.config import preset
    from dfma.model import DFMAModel
    from dfma.contract.tokenizer import train_wordpiece

    torch.manual_seed(1234)
    cfg = preset("tiny", labels=_labels())
    tok = train_wordpiece(_corpus(), vocab_size=cfg.vocab_size)
    model = DFMAModel(cfg).eval()
    with torch.no_grad():  # non-zero biases, so that absent-vs-present and padding bugs show in the logits
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(0.02 * torch.randn_like(p))
    out = work / "bundle"
    _export_with_project_exporter(model, tok, out, work)
    return out, model


def _built(tmp_path_factory) -> tuple[Path, object]:
    if "tiny" not in _CACHE:
        pytest.importorskip("torch")
        _CACHE["tiny"] = build_tiny_bundle(tmp_path_factory.mktemp("tiny_bundle"))
    return _CACHE["tiny"]


@pytest.fixture(scope="session")
def tiny_bundle(tmp_path_factory) -> Path:
    """Folder of a tiny-preset bundle (read-only: copy it before changing anything)."""
    return _built(tmp_path_factory)[0]


@pytest.fixture(scope="session")
def tiny_eager(tmp_path_factory):
    """The eager DFMAModel (eval mode) whose weights the tiny bundle holds."""
    return _built(tmp_path_factory)[1]


@pytest.fixture(scope="session")
def int8_bundle(tiny_bundle, tmp_path_factory):
    """``(folder, manifest)`` of a copy of the tiny bundle with every INT8 graph (static, dynamic and their 7-bit
    twins, with stage graphs) built by the precision step on MNRE sentences, guarded at :data:`INT8_TARGET`
    agreement (read-only: copy it before changing anything), the search's speed stop off (a timing, which would
    make what the search reaches depend on the machine's load); skipped without the MNRE annotations. Built once
    per process."""
    if "int8" not in _CACHE:
        if not (SHARED_MNRE / "mnre_train.txt").is_file():
            pytest.skip(f"MNRE annotations not found at {SHARED_MNRE} (set DFMA_MNRE_DIR)")
        from dfma.export.precision.command_line import parse
        from dfma.export.precision.step import run

        bundle = tmp_path_factory.mktemp("int8_bundle") / "bundle"
        copy_bundle(tiny_bundle, bundle)
        folder, options, recipe_options, chosen = parse([
            str(bundle), "--int8", "both", "--data", str(SHARED_MNRE), "--calibration-samples", "16",
            "--guard-samples", "32", "--latency-samples", "4", "--target-agreement", str(INT8_TARGET),
            "--no-speed-stop", "--quiet"])  # the guard's outcome must not hang on how fast the machine is now
        _CACHE["int8"] = (bundle, run(folder, options, chosen, recipe_options))
    return _CACHE["int8"]


def copy_bundle(bundle: Path, dst: Path, *, writable: bool = False) -> Path:
    """Copy the bundle folder ``bundle`` to ``dst`` (which must not exist) and return ``dst``.

    Default: ``shutil.copytree`` as is (contents, permissions and times). ``writable=True``: contents only
    (``shutil.copyfile``), then every folder 0o755 and every file 0o644: an editable copy of a read-only bundle.
    """
    if writable:
        shutil.copytree(bundle, dst, copy_function=shutil.copyfile)
        for p in [dst, *dst.rglob("*")]:
            p.chmod(0o755 if p.is_dir() else 0o644)
    else:
        shutil.copytree(bundle, dst)
    return dst


def random_feeds(bundle: Path, batch: int = 3, length: int = 21, seed: int = 0) -> dict:
    """Seeded random graph inputs (with crops) for ``bundle``'s model config and special tokens."""
    import json

    import numpy as np

    from dfma.config import DFMAConfig
    from dfma.export.random_feeds import random_inputs

    manifest = json.loads((bundle / "manifest.json").read_text())
    cfg = DFMAConfig.from_dict(manifest["model"]["config"])
    special = {k: v["id"] for k, v in manifest["preprocess"]["special_tokens"].items()}
    return random_inputs(cfg, special, batch, length, crops=True, rng=np.random.default_rng(seed))


def synthetic_image(seed: int, width: int = 96, height: int = 80):
    """A deterministic RGB uint8 array (H, W, 3) with structure (gradients + noise), for image tests."""
    import numpy as np

    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // max(width - 1, 1), y * 255 // max(height - 1, 1),
                     (x + y) * 127 // max(width + height - 2, 1)], axis=-1)
    noise = rng.integers(0, 64, size=(height, width, 3))
    return ((base + noise) % 256).astype(np.uint8)


def jpeg_bytes(seed: int, width: int = 96, height: int = 80) -> bytes:
    """``synthetic_image`` encoded as a JPEG."""
    import io

    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(synthetic_image(seed, width, height)).save(buf, format="JPEG", quality=90)
    return buf.getvalue()


GOOD = {"text": "Obama visits Paris with Merkel", "head": [0, 5], "tail": [13, 18]}  # a valid request (no image)


@pytest.fixture(scope="module")
def extractor(tiny_bundle):
    """The tiny bundle loaded by the runtime (one thread), once per test module."""
    import dfma.runtime as rt

    with rt.load(tiny_bundle, threads=1) as ex:
        yield ex


@pytest.fixture(scope="module")
def baseline(extractor):
    """The prediction for GOOD with a synthetic image: what a request after a refused one must still give."""
    return extractor.predict({**GOOD, "image": synthetic_image(3)})


def small_manifest(**extra) -> dict:
    """A small manifest whose preprocess, limits and io agree (the reader checks they do)."""
    from types import SimpleNamespace

    from dfma.contract.io_spec import io_manifest

    io = io_manifest(SimpleNamespace(image_size=8, num_images=4, num_labels=2))
    base = {"format": "dfma-bundle", "format_version": 1, "created": "2026-01-01T00:00:00+00:00",
            "model": {"preset": "tiny", "config": {"num_layers": 2}}, "labels": ["None", "r"],
            "preprocess": {"max_length": 80, "image_size": 8, "resize_size": 10, "mean": [0.5, 0.5, 0.5],
                           "std": [0.25, 0.25, 0.25], "num_crops": 3}, "io": io,
            "limits": {"max_batch": 4, "max_length": 80}, "opset": 23,
            "graphs": {"portable": {"file": "model.onnx", "precision": "fp32", "kind": "portable"}},
            "files": {}, "tools": {}, "parity": {"portable": {"max_abs_error": 0.0}}}
    base.update(extra)
    return base


def loaded_bytes(folder: Path, graphs) -> int:
    """What loading these graph files of a bundle reads: their sizes plus each distinct range of the weight store
    they reference, counted once (read with the contract's own reference walker, not the benchmark's)."""
    from dfma.contract.weight_store import external_refs

    ranges = {(r.get("location"), r.get("offset")): int(r.get("length") or 0)
              for g in graphs for r in external_refs(Path(folder) / g)}
    return sum((Path(folder) / g).stat().st_size for g in graphs) + sum(ranges.values())
