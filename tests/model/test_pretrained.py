"""Pretrained encoders and BERT vocabularies: extraction checked by sha256, fp16-stored checkpoints, and the
export of a model whose entity markers sit at the end of a BERT-sized vocabulary (ids 30522..30525)."""
from __future__ import annotations

import hashlib
import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch

BERT_VOCAB = 30522


def _bert_vocab(path: Path) -> Path:
    """A vocab.txt laid out like bert-base-uncased: [PAD], [unused*], [UNK] [CLS] [SEP] [MASK] at 100..103."""
    pieces = ["[PAD]"] + [f"[unused{i}]" for i in range(99)] + ["[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    letters = "abcdefghijklmnopqrstuvwxyz"
    pieces += list(letters) + [f"##{c}" for c in letters]
    i = 0
    while len(pieces) < BERT_VOCAB:
        a, b, c = letters[i % 26], letters[(i // 26) % 26], letters[(i // 676) % 26]
        pieces.append(f"{c}{b}{a}{i // 17576 or ''}")
        i += 1
    path.write_text("\n".join(pieces) + "\n", encoding="utf-8")
    return path


def test_markers_at_the_end_of_a_bert_vocabulary_export(tmp_path):
    """A checkpoint on a BERT vocabulary (markers appended at 30522..30525) exports and validates."""
    from dfma.export.random_feeds import ordinary_ids, random_inputs
    from dfma.export.to_onnx import main

    from dfma.checkpoint import load_checkpoint, save_checkpoint
    from dfma.config import preset
    from dfma.contract.tokenizer import special_ids, tokenizer_from_bert_vocab
    from dfma.model import DFMAModel

    tok = tokenizer_from_bert_vocab(_bert_vocab(tmp_path / "vocab.txt"))
    ids = special_ids(tok)
    assert ids["cls"] == 101 and min(ids["head_open"], ids["tail_close"]) >= BERT_VOCAB
    words = ordinary_ids(BERT_VOCAB + 4, ids)
    assert words.size == BERT_VOCAB + 4 - 9 and not set(ids.values()) & set(words.tolist())
    cfg = preset("tiny", vocab_size=tok.get_vocab_size(with_added_tokens=True), num_layers=1,
                 head_marker_id=ids["head_open"], tail_marker_id=ids["tail_open"])
    feeds = random_inputs(cfg, ids, 4, 16, rng=np.random.default_rng(0))
    assert (feeds["input_ids"] == ids["head_open"]).sum(axis=1).tolist() == [1, 1, 1, 1]
    torch.manual_seed(0)
    ckpt = save_checkpoint(DFMAModel(cfg).eval(), tmp_path / "ckpt", tokenizer=tok)
    assert load_checkpoint(ckpt).config.vocab_size == BERT_VOCAB + 4
    rc = main(["--checkpoint", str(ckpt), "--out", str(tmp_path / "bundle"), "--quiet"])
    assert rc == 0
    manifest = json.loads((tmp_path / "bundle" / "manifest.json").read_text())
    assert manifest["model"]["config"]["head_marker_id"] == ids["head_open"]
    assert {g: manifest["parity"][g]["passed"] for g in ("portable", "ort")} == {"portable": True, "ort": True}
    assert manifest["parity"]["ort"]["top1_agreement"] == 1.0


def test_fp16_stored_checkpoint_loads_as_float32(tmp_path):
    """weights_dtype=float16 halves the file and loads back (upcast) equal to the rounded weights."""
    from dfma.checkpoint import load_checkpoint, save_checkpoint
    from dfma.config import preset
    from dfma.model import DFMAModel

    torch.manual_seed(0)
    model = DFMAModel(preset("tiny")).eval()
    full = save_checkpoint(model, tmp_path / "fp32")
    half = save_checkpoint(model, tmp_path / "fp16", weights_dtype=torch.float16)
    size = lambda d: (d / "model.safetensors").stat().st_size
    assert size(half) < 0.55 * size(full)
    loaded = load_checkpoint(half).model.state_dict()
    for name, tensor in model.state_dict().items():
        assert loaded[name].dtype == tensor.dtype, name
        want = tensor.half().float() if tensor.is_floating_point() else tensor
        assert torch.equal(loaded[name], want), name


def _fake_package(tmp_path: Path) -> tuple[Path, str]:
    """A zip shaped like the MiniLM package's model.zip, and the sha256 of its weights."""
    from safetensors.numpy import save

    weights = save({"embeddings.word_embeddings.weight": np.ones((4, 2), np.float32)})
    tokenizer = {"model": {"type": "WordPiece", "vocab": {"[PAD]": 0, "[UNK]": 1, "hello": 3, "[CLS]": 2}}}
    archive = tmp_path / "model.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("config.json", json.dumps({"hidden_size": 2}))
        zf.writestr("model.safetensors", weights)
        zf.writestr("tokenizer.json", json.dumps(tokenizer))
    return archive, hashlib.sha256(weights).hexdigest()


def test_extract_checks_the_weights_and_writes_vocab(tmp_path):
    """The folder holds vocab.txt in id order; a second call reuses it; a wrong sha256 leaves nothing."""
    from dfma.contract.errors import CheckpointError
    from dfma.pretrained import MINILM, extract

    archive, digest = _fake_package(tmp_path)
    entry = type(MINILM)(**{**MINILM.__dict__, "weights_sha256": digest})
    folder = extract(entry, tmp_path / "cache", archive=archive)
    assert (folder / "vocab.txt").read_text().split("\n")[:4] == ["[PAD]", "[UNK]", "[CLS]", "hello"]
    assert json.loads((folder / "ORIGIN.json").read_text())["licence"] == "Apache-2.0"
    assert extract(entry, tmp_path / "cache", archive=tmp_path / "absent.zip") == folder  # cached, checked

    bad = type(MINILM)(**{**MINILM.__dict__, "weights_sha256": "0" * 64})
    with pytest.raises(CheckpointError, match="sha256 .* expected 0000"):
        extract(bad, tmp_path / "other", archive=archive)
    assert list((tmp_path / "other").iterdir()) == []


def test_missing_package_says_how_to_install():
    """Without the pip package the error names it and the make target."""
    from dfma.contract.errors import CheckpointError
    from dfma.pretrained import MINILM, package_archive

    entry = type(MINILM)(**{**MINILM.__dict__, "package": "dfma_no_such_package_xyz"})
    with pytest.raises(CheckpointError, match="make minilm"):
        package_archive(entry)
