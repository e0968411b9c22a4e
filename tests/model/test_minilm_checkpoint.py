"""The committed MiniLM checkpoint (`checkpoints/minilm-mnre`): it loads, scores on MNRE validation what its
training record says, exports, and its fp32 bundle equals eager on real validation sentences."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest

from repo_paths import REPO


CKPT = REPO / "checkpoints" / "minilm-mnre"
N_PARITY = 64

pytestmark = pytest.mark.skipif(not (CKPT / "model.safetensors").is_file(), reason=f"{CKPT} is not there")


def test_checkpoint_is_minilm_stored_in_fp16_and_loads_as_fp32():
    """MiniLM-L6's text encoder (6 x 384, 12 heads, BERT vocabulary + 4 markers), fp16 on disk, fp32 loaded."""
    import torch
    from safetensors import safe_open

    from dfma.checkpoint import load_checkpoint

    with safe_open(str(CKPT / "model.safetensors"), "np") as f:
        dtypes = {str(f.get_slice(k).get_dtype()) for k in f.keys()}
    assert "F16" in dtypes and "F32" not in dtypes, dtypes
    assert (CKPT / "model.safetensors").stat().st_size < 60e6
    ckpt = load_checkpoint(CKPT)
    cfg = ckpt.config
    assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.vocab_size) == (6, 384, 12, 30526)
    assert cfg.head_marker_id >= 30522 and cfg.tail_marker_id >= 30522
    assert all(p.dtype == torch.float32 for p in ckpt.model.parameters())
    assert ckpt.meta["best"]["f1"] >= 0.58, ckpt.meta["best"]


@pytest.mark.slow
def test_evaluate_prints_the_recorded_validation_f1(mnre_dir):
    """`python -m dfma.evaluate` reproduces the best epoch's micro-F1 recorded in training.json."""
    proc = subprocess.run([sys.executable, "-m", "dfma.evaluate", str(CKPT), "--data", str(mnre_dir / "mnre_val.txt")],
                          cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-2000:]
    recorded = json.loads((CKPT / "training.json").read_text())["best"]["f1"]
    assert f"{100 * recorded:.1f}"[:-2] in proc.stdout or f"{recorded:.3f}"[:-1] in proc.stdout, proc.stdout[-1500:]


@pytest.mark.slow
def test_export_matches_eager_on_real_validation_sentences(tmp_path, mnre_dir):
    """`export/to_onnx.py --checkpoint` of it; runtime fp32 vs eager on real sentences: <= 1e-4, same top-1."""
    import dfma.runtime as rt
    import torch

    from dfma.checkpoint import load_checkpoint
    from dfma.contract.features import Preprocessor
    from dfma.contract.labels import LabelMap
    from dfma.mnre import read_mnre
    from dfma.contract.tokenizer import load_tokenizer

    bundle = tmp_path / "bundle"
    proc = subprocess.run([sys.executable, str(REPO / "export" / "to_onnx.py"), "--checkpoint", str(CKPT),
                           "--out", str(bundle), "--quiet"], cwd=REPO, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    samples = read_mnre(mnre_dir / "mnre_val.txt", LabelMap.from_json(mnre_dir / "rel2id.json"))[:N_PARITY]
    model = load_checkpoint(CKPT).model
    with rt.load(bundle, precision="fp32", threads=2) as ex:
        runtime = ex.logits(samples)
        pre = Preprocessor.from_manifest(ex.manifest.preprocess, load_tokenizer(bundle))
    feeds = pre.collate([pre.prepare(s) for s in samples])
    with torch.no_grad():
        eager = model(**{k: torch.from_numpy(np.asarray(v)) for k, v in feeds.items()}).numpy()
    assert np.abs(eager - runtime).max() <= 1e-4, np.abs(eager - runtime).max()
    assert (eager.argmax(1) == runtime.argmax(1)).all()
    assert len(set(eager.argmax(1).tolist())) > 1  # a trained model: not one label for everything
