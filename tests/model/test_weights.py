"""Loading local pretrained BERT and ResNet checkpoints (built here with transformers, no download)."""
from __future__ import annotations

import pytest
import torch

from dfma.config import preset
from dfma.contract.errors import CheckpointError
from dfma.model import DFMAModel
from dfma.weights import config_from_bert, load_bert, load_resnet

transformers = pytest.importorskip("transformers")


@pytest.fixture(scope="module")
def bert_folder(tmp_path_factory):
    cfg = transformers.BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                                  intermediate_size=64, max_position_embeddings=96)
    torch.manual_seed(0)
    bert = transformers.BertModel(cfg).eval()
    folder = tmp_path_factory.mktemp("bert")
    bert.save_pretrained(folder)
    return folder, bert


def test_bert_folder_maps_every_weight_and_matches_hf(bert_folder):
    folder, bert = bert_folder
    cfg = config_from_bert(folder, base=preset("tiny", mmf_heads=4), vocab_size=124)
    model = DFMAModel(cfg).eval()
    report = load_bert(model, folder)
    assert len(report.loaded) == len(model.text.state_dict())
    assert report.resized == ["embeddings.word_embeddings.weight 120->124 rows"]
    assert all(k.startswith("pooler.") for k in report.ignored)
    hf = bert.state_dict()
    for name, tensor in model.text.state_dict().items():
        if name == "embeddings.word_embeddings.weight":
            assert torch.equal(tensor[:120], hf[name])
        else:
            assert torch.equal(tensor, hf[name]), name
    # With every prompt masked out, the prompted encoder is exactly BERT.
    ids = torch.randint(1, 120, (2, 11))
    mask = torch.ones(2, 11, dtype=torch.long)
    mask[1, 7:] = 0
    prompts = torch.randn(2, cfg.num_layers, 16, cfg.hidden_size)
    with torch.no_grad():
        ours = model.text(ids, mask, prompts, torch.zeros(2, 16, dtype=torch.long))
        ref = bert(input_ids=ids, attention_mask=mask).last_hidden_state
    torch.testing.assert_close(ours[mask.bool()], ref[mask.bool()], atol=1e-5, rtol=1e-5)


def test_bert_folder_with_missing_weights_is_an_error(bert_folder, tmp_path):
    from safetensors.torch import load_file, save_file
    folder, _ = bert_folder
    state = load_file(str(folder / "model.safetensors"))
    del state["encoder.layer.1.output.dense.weight"]
    (tmp_path / "config.json").write_text((folder / "config.json").read_text())
    save_file(state, str(tmp_path / "model.safetensors"))
    model = DFMAModel(config_from_bert(tmp_path, base=preset("tiny", mmf_heads=4)))
    with pytest.raises(CheckpointError, match="lacks 1 weight.*encoder.layer.1.output.dense.weight"):
        load_bert(model, tmp_path)


def test_resnet_from_transformers_matches_its_stages(tmp_path):
    cfg = preset("tiny")
    hf_cfg = transformers.ResNetConfig(embedding_size=cfg.resnet_stem, hidden_sizes=[w * 4 for w in cfg.resnet_widths],
                                       depths=list(cfg.resnet_depths), layer_type="bottleneck")
    torch.manual_seed(0)
    hf = transformers.ResNetModel(hf_cfg).eval()
    with torch.no_grad():  # non-trivial batch-norm statistics
        for m in hf.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.1, 0.1)
                m.running_var.uniform_(0.5, 1.5)
    hf.save_pretrained(tmp_path)
    model = DFMAModel(cfg).eval()
    report = load_resnet(model, tmp_path)
    assert len(report.loaded) == len(model.vision.state_dict())
    x = torch.randn(2, 3, cfg.image_size, cfg.image_size)
    with torch.no_grad():
        ours = model.vision(x)
        ref = hf(x, output_hidden_states=True).hidden_states[1:]
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


def test_resnet_torchvision_names_and_errors(tmp_path):
    cfg = preset("tiny")
    model = DFMAModel(cfg)
    state = {k: torch.randn_like(v.float()).to(v.dtype) for k, v in model.vision.state_dict().items()}
    state["fc.weight"] = torch.zeros(10, 256)
    torch.save(state, tmp_path / "resnet.pth")
    report = load_resnet(model, tmp_path / "resnet.pth")
    assert report.ignored == ["fc.weight"]
    assert torch.equal(model.vision.conv1.weight, state["conv1.weight"])
    del state["layer4.0.conv3.weight"]
    torch.save(state, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match="layer4.0.conv3.weight"):
        load_resnet(model, tmp_path / "broken.pth")
    with pytest.raises(CheckpointError, match="weights file not found"):
        load_resnet(model, tmp_path / "absent.pth")
