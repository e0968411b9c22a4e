"""A tiny bundle for runtime tests, built once per test session, and the eager model it was exported from.

``tiny_bundle`` (session fixture): a bundle folder of the ``tiny`` preset; ``tiny_eager``: the eager
DFMAModel with the same weights (for parity). Built by the project's exporter (``export/to_onnx.py``)
when it exists, else by a minimal in-test exporter (torch.onnx.export of the same model, manifest per
docs/contract.md section 4). Both are cached per process, so importing the fixtures into several test
modules builds the bundle once.

Use: ``from fixtures_bundle import tiny_bundle, tiny_eager  # noqa: F401`` in a test module, or in
``tests/conftest.py`` to share them.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SHARED_MNRE = Path(os.environ.get("DFMA_MNRE_DIR", REPO.parent / "shared" / "data" / "mnre"))
LABELS_FALLBACK = ["None"] + [f"/rel/{i}" for i in range(1, 23)]
_CACHE: dict[str, object] = {}


def _labels() -> list[str]:
    rel2id = SHARED_MNRE / "rel2id.json"
    if rel2id.is_file():
        from dfma.labels import LabelMap
        return LabelMap.from_json(rel2id).names
    return LABELS_FALLBACK


def _corpus() -> list[list[str]]:
    train = SHARED_MNRE / "mnre_train.txt"
    if train.is_file():
        from dfma.mnre import read_mnre
        return [list(s.words) for s in read_mnre(train)]
    words = "the of and to in a is was for on with at by from rt obama visits paris london met".split()
    return [[words[(i * 7 + j) % len(words)] for j in range(12)] for i in range(400)]


def _sha(path: Path) -> dict:
    data = path.read_bytes()
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def _export_in_test(model, tok, out: Path) -> None:
    """Minimal exporter: portable fp32 graph (also used as the 'fused' one) + manifest of the contract."""
    import torch

    from dfma.tokenizer import SPECIAL_KEYS, SPECIAL_TOKENS, save_tokenizer, special_ids

    cfg = model.config
    save_tokenizer(tok, out)
    ex = model.example_inputs(batch=2, length=16)
    dyn = {"input_ids": {0: "batch", 1: "sequence"}, "attention_mask": {0: "batch", 1: "sequence"},
           "pixel_values": {0: "batch"}, "image_mask": {0: "batch"}}
    torch.onnx.export(copy.deepcopy(model), tuple(ex.values()), str(out / "model.onnx"), input_names=list(ex),
                      output_names=["logits"], dynamic_shapes=dyn, opset_version=23, dynamo=True,
                      external_data=False, verbose=False)
    shutil.copy(out / "model.onnx", out / "model.ort.onnx")
    ids = special_ids(tok)
    files = {f: _sha(out / f) for f in ("model.onnx", "model.ort.onnx", "tokenizer.json", "vocab.txt")}
    manifest = {
        "format": "dfma-bundle", "format_version": 1, "created": time.strftime("%Y-%m-%dT%H:%M:%SZ"),
        "model": {"preset": cfg.preset, "config": cfg.to_dict()}, "labels": list(cfg.labels),
        "preprocess": {"max_length": cfg.max_length, "image_size": cfg.image_size,
                       "resize_size": cfg.resize_size, "mean": list(cfg.image_mean),
                       "std": list(cfg.image_std), "num_crops": cfg.num_crops,
                       "max_image_pixels": 50_000_000, "lowercase": True,
                       "special_tokens": {k: {"token": t, "id": ids[k]}
                                          for k, t in zip(SPECIAL_KEYS, SPECIAL_TOKENS)}},
        "io": {}, "limits": {"max_batch": 64, "max_length": cfg.max_length}, "opset": 23,
        "graphs": {"fp32": {"file": "model.onnx", "precision": "fp32", "kind": "onnx"},
                   "fp32-ort": {"file": "model.ort.onnx", "precision": "fp32", "kind": "onnx-ort"}},
        "files": files, "tools": {"exporter": "tests/fixtures_bundle.py"}, "parity": {},
    }
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def _export_with_project_exporter(model, tok, out: Path, work: Path) -> bool:
    """Run export/to_onnx.py on a checkpoint of ``model``; False when the exporter is not there."""
    script = REPO / "export" / "to_onnx.py"
    if not script.is_file() or os.environ.get("DFMA_TEST_INTERNAL_EXPORT"):
        return False
    from dfma.checkpoint import save_checkpoint

    ckpt = work / "checkpoint"
    save_checkpoint(model, ckpt, tokenizer=tok)
    cmd = [sys.executable, str(script), "--checkpoint", str(ckpt), "--out", str(out)]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return True


def build_tiny_bundle(work: Path) -> tuple[Path, object]:
    """Export a seeded ``tiny`` model to ``work/bundle``; returns (bundle folder, eager model)."""
    import torch

    from dfma.config import preset
    from dfma.model import DFMAModel
    from dfma.tokenizer import train_wordpiece

    torch.manual_seed(1234)
    cfg = preset("tiny", labels=_labels())
    tok = train_wordpiece(_corpus(), vocab_size=cfg.vocab_size)
    model = DFMAModel(cfg).eval()
    with torch.no_grad():  # non-zero biases, so that absent-vs-present and padding bugs show in the logits
        for p in model.parameters():
            if p.ndim == 1:
                p.add_(0.02 * torch.randn_like(p))
    out = work / "bundle"
    if not _export_with_project_exporter(model, tok, out, work):
        out.mkdir(parents=True)
        _export_in_test(model, tok, out)
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
