"""The eager DFMA model: shapes at every module boundary, gradients, image masking, checkpoints."""
from __future__ import annotations

import json

import pytest
import torch

from dfma.checkpoint import load_checkpoint, save_checkpoint
from dfma.config import DFMAConfig, preset
from dfma.contract.errors import CheckpointError
from dfma.model import DFMAModel


@pytest.fixture(scope="module")
def tiny():
    torch.manual_seed(0)
    return DFMAModel(preset("tiny")).eval()


@pytest.mark.parametrize("name", ["tiny", "base"])
def test_shapes_at_every_boundary(name):
    cfg = preset(name)
    torch.manual_seed(0)
    model = DFMAModel(cfg).eval()
    b, length = 2, 12
    x = model.example_inputs(b, length)
    n_img = cfg.num_images
    with torch.no_grad():
        levels = model.vision(x["pixel_values"].reshape(b * n_img, 3, cfg.image_size, cfg.image_size))
        s = cfg.image_size
        assert [tuple(t.shape) for t in levels] == [
            (b * n_img, c, s // f, s // f) for c, f in zip(model.vision.out_channels, (4, 8, 16, 32))]
        query = torch.randn(b, cfg.hidden_size)
        tokens, prompts = model.pfe(levels, query)
        assert tokens.shape == (b, n_img, cfg.tokens_per_image, cfg.hidden_size)
        assert prompts.shape == (b, cfg.num_layers, n_img * cfg.prompts_per_image, cfg.hidden_size)
        prompt_mask = x["image_mask"].repeat_interleave(cfg.prompts_per_image, 1)
        hidden = model.text(x["input_ids"], x["attention_mask"], prompts, prompt_mask)
        assert hidden.shape == (b, length, cfg.hidden_size)
        visual = tokens.reshape(b, -1, cfg.hidden_size)
        vmask = x["image_mask"].repeat_interleave(cfg.tokens_per_image, 1)
        text_fused, fused = model.mmf(hidden, x["attention_mask"], visual, vmask)
        assert text_fused.shape == hidden.shape and fused.shape == (b, cfg.hidden_size)
        logits = model(**x)
    assert logits.shape == (b, cfg.num_labels) and torch.isfinite(logits).all()


def test_gradients_reach_pfe_mmf_and_head(tiny):
    model = DFMAModel(tiny.config).train()
    x = model.example_inputs(3, 10)
    x["image_mask"][:] = 1
    loss = torch.nn.functional.cross_entropy(model(**x), torch.tensor([0, 5, 7]))
    loss.backward()
    for name in ("pfe", "mmf", "classifier", "text", "vision"):
        grads = [p.grad for p in getattr(model, name).parameters()]
        assert all(g is not None for g in grads), name
        assert sum(float(g.abs().sum()) for g in grads) > 0, name
    # the relevance gate and the per-layer level gate are on the gradient path
    assert model.pfe.level_gate.weight.grad.abs().sum() > 0
    assert model.pfe.query_proj.weight.grad.abs().sum() > 0
    assert model.mmf.balance.weight.grad.abs().sum() > 0


def test_absent_images_ignore_their_pixels(tiny):
    x = tiny.example_inputs(3, 14, seed=1)
    x["image_mask"] = torch.tensor([[1, 0, 0, 0], [1, 1, 0, 1], [0, 0, 0, 0]])
    with torch.no_grad():
        ref = tiny(**x)
        garbage = x["pixel_values"].clone()
        absent = x["image_mask"] == 0
        garbage[absent] = torch.randn_like(garbage[absent]) * 1e3
        out = tiny(**{**x, "pixel_values": garbage})
        garbage[absent] = float("nan")
        out_nan = tiny(**{**x, "pixel_values": garbage})
    assert torch.equal(ref, out)
    assert torch.equal(ref, out_nan)
    # and present images do matter
    changed = x["pixel_values"].clone()
    changed[0, 0] += 1.0
    with torch.no_grad():
        assert not torch.allclose(tiny(**{**x, "pixel_values": changed})[0], ref[0])


def test_padding_does_not_change_logits(tiny):
    x = tiny.example_inputs(1, 10, seed=2)
    padded = {k: v.clone() for k, v in x.items()}
    padded["input_ids"] = torch.cat([x["input_ids"], torch.zeros(1, 5, dtype=torch.long)], 1)
    padded["attention_mask"] = torch.cat([x["attention_mask"], torch.zeros(1, 5, dtype=torch.long)], 1)
    with torch.no_grad():
        torch.testing.assert_close(tiny(**padded), tiny(**x), atol=1e-5, rtol=1e-5)


def test_checkpoint_roundtrip_gives_identical_logits(tiny, tmp_path):
    save_checkpoint(tiny, tmp_path / "ckpt", meta={"note": "test"})
    loaded = load_checkpoint(tmp_path / "ckpt")
    x = tiny.example_inputs(2, 9)
    with torch.no_grad():
        assert torch.equal(tiny(**x), loaded.model(**x))
    assert loaded.config == tiny.config and loaded.meta == {"note": "test"}
    assert not list(tmp_path.glob(".ckpt*")), "temporary folders left behind"


def test_checkpoint_errors_name_the_file(tiny, tmp_path):
    folder = save_checkpoint(tiny, tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="checkpoint folder not found"):
        load_checkpoint(tmp_path / "nope")
    (folder / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(CheckpointError, match="model.safetensors: cannot read"):
        load_checkpoint(folder)
    folder = save_checkpoint(tiny, tmp_path / "ckpt2")
    cfg = json.loads((folder / "config.json").read_text())
    cfg["hidden_size"] = 64
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="does not match.*shape mismatch"):
        load_checkpoint(folder)
    cfg["bogus"] = 1
    (folder / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="unknown config field"):
        load_checkpoint(folder)
    (folder / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json: config file missing"):
        load_checkpoint(folder)


def test_unknown_preset_and_bad_config():
    with pytest.raises(CheckpointError, match="unknown preset 'huge'"):
        preset("huge")
    with pytest.raises(CheckpointError, match="not divisible"):
        DFMAConfig(hidden_size=100, num_heads=3).validate()


def test_text_only_training_shortcut_matches_full_path(tiny):
    """In train mode a batch without images skips the ResNet; outputs equal the full computation."""
    model = DFMAModel(tiny.config)
    model.load_state_dict(tiny.state_dict())
    model.dropout.p = 0.0
    for m in model.modules():
        if isinstance(m, torch.nn.Dropout):
            m.p = 0.0
    x = model.example_inputs(2, 12, seed=3)
    x["image_mask"][:] = 0
    model.train()
    with torch.no_grad():
        fast = model(**x)
        model.vision.eval()
        levels = model.vision(x["pixel_values"].reshape(-1, *x["pixel_values"].shape[2:]))
        assert [t.shape for t in levels] == [t.shape for t in model.vision.zero_levels(
            x["pixel_values"].reshape(-1, *x["pixel_values"].shape[2:]))]
        model.eval()
        full = model(**x)
    torch.testing.assert_close(fast, full, atol=1e-6, rtol=1e-6)


@pytest.mark.parametrize("size", [(7, 7), (56, 56), (5, 3), (2, 2)])
def test_pool_matrix_equals_adaptive_avg_pool(size):
    from dfma.model.pfe import adaptive_pool_matrix
    h, w = size
    x = torch.randn(3, 4, h, w)
    ours = (x.reshape(3, 4, h * w) @ adaptive_pool_matrix(h, w, 2)).reshape(3, 4, 2, 2)
    torch.testing.assert_close(ours, torch.nn.functional.adaptive_avg_pool2d(x, 2), atol=1e-6, rtol=1e-6)
