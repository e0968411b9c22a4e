"""Load local pretrained weights into DFMA's encoders: a Hugging Face BERT folder, a ResNet checkpoint.

Nothing here downloads: every path is a local file or folder. Pickled formats are read only through
`torch.load(weights_only=True)`. Every target weight must be found; what the source has and we do not
use (BERT's pooler and MLM head, ResNet's classifier) is reported, never silently dropped.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import torch
from safetensors.torch import load_file

from dfma.config import DFMAConfig, preset
from dfma.contract.errors import CheckpointError

BERT_IGNORED = re.compile(r"^(pooler\.|cls\.|embeddings\.position_ids$)")
RESNET_IGNORED = re.compile(r"^(fc\.|classifier\.|pooler\.)")


@dataclass
class LoadReport:
    """What a weight load mapped, resized and ignored."""

    source: str
    loaded: list[str] = field(default_factory=list)
    resized: list[str] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """One line for logs."""
        return (f"{self.source}: {len(self.loaded)} tensors loaded, {len(self.resized)} resized "
                f"({', '.join(self.resized) or '-'}), {len(self.ignored)} ignored")


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Tensors from a .safetensors file, a torch file (weights_only) or a folder holding either."""
    path = Path(path)
    if path.is_dir():
        for name in ("model.safetensors", "pytorch_model.bin", "resnet50.pth"):
            if (path / name).is_file():
                return read_state_dict(path / name)
        raise CheckpointError(f"{path}: no model.safetensors or pytorch_model.bin in the folder")
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file not found")
    try:
        if path.suffix == ".safetensors":
            return load_file(str(path))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any reader failure is a corrupt file to the user
        raise CheckpointError(f"{path}: cannot read weights ({type(exc).__name__}: {exc})") from None
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: expected a flat dict of tensors")
    return state


def config_from_bert(folder: str | Path, base: DFMAConfig | None = None, vocab_size: int | None = None) -> DFMAConfig:
    """A DFMA config whose text encoder matches a Hugging Face BERT `config.json` (other fields from `base`)."""
    path = Path(folder) / "config.json"
    try:
        bert = json.loads(path.read_text())
    except FileNotFoundError:
        raise CheckpointError(f"{path}: BERT config.json missing") from None
    except json.JSONDecodeError as exc:
        raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
    base = base or preset("base")
    try:
        fields = dict(hidden_size=bert["hidden_size"], num_layers=bert["num_hidden_layers"],
                      num_heads=bert["num_attention_heads"], intermediate_size=bert["intermediate_size"],
                      max_position_embeddings=bert["max_position_embeddings"],
                      type_vocab_size=bert.get("type_vocab_size", 2),
                      layer_norm_eps=bert.get("layer_norm_eps", 1e-12),
                      vocab_size=vocab_size or bert["vocab_size"])
    except KeyError as exc:
        raise CheckpointError(f"{path}: field {exc.args[0]!r} missing") from None
    if bert.get("hidden_act", "gelu") != "gelu":
        raise CheckpointError(f"{path}: hidden_act {bert['hidden_act']!r} unsupported (DFMA uses exact gelu)")
    return DFMAConfig(**{**base.to_dict(), **fields}).validate()


def _bert_key(key: str) -> str:
    key = key[5:] if key.startswith("bert.") else key
    return key.replace("LayerNorm.gamma", "LayerNorm.weight").replace("LayerNorm.beta", "LayerNorm.bias")


def load_bert(model: torch.nn.Module, folder: str | Path) -> LoadReport:
    """Copy a local BERT checkpoint into `model.text`; the embedding table keeps extra rows for markers."""
    source = read_state_dict(folder)
    report = LoadReport(str(folder))
    target = model.text.state_dict()
    mapped = {}
    for key, tensor in source.items():
        name = _bert_key(key)
        if BERT_IGNORED.match(name):
            report.ignored.append(key)
        elif name in target:
            mapped[name] = tensor
        else:
            report.ignored.append(key)
    missing = sorted(set(target) - set(mapped))
    if missing:
        raise CheckpointError(f"{folder}: BERT checkpoint lacks {len(missing)} weight(s) the text encoder needs, "
                              f"e.g. {missing[:3]}")
    with torch.no_grad():
        for name, tensor in mapped.items():
            dest = target[name]
            if name == "embeddings.word_embeddings.weight" and tensor.shape[0] <= dest.shape[0] \
                    and tensor.shape[1:] == dest.shape[1:]:
                if tensor.shape[0] < dest.shape[0]:
                    report.resized.append(f"{name} {tensor.shape[0]}->{dest.shape[0]} rows")
                    dest[tensor.shape[0]:] = tensor.mean(0, keepdim=True)
                dest[: tensor.shape[0]] = tensor
            elif tensor.shape != dest.shape:
                raise CheckpointError(f"{folder}: {name} has shape {tuple(tensor.shape)}, "
                                      f"the text encoder expects {tuple(dest.shape)}")
            else:
                dest.copy_(tensor)
            report.loaded.append(name)
    return report


_HF_RESNET = [
    (re.compile(r"^embedder\.embedder\.convolution\.(.*)$"), r"conv1.\1"),
    (re.compile(r"^embedder\.embedder\.normalization\.(.*)$"), r"bn1.\1"),
    (re.compile(r"^encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.convolution\.(.*)$"), "layer{s}.{b}.downsample.0.{r}"),
    (re.compile(r"^encoder\.stages\.(\d+)\.layers\.(\d+)\.shortcut\.normalization\.(.*)$"), "layer{s}.{b}.downsample.1.{r}"),
    (re.compile(r"^encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d+)\.convolution\.(.*)$"), "layer{s}.{b}.conv{k}.{r}"),
    (re.compile(r"^encoder\.stages\.(\d+)\.layers\.(\d+)\.layer\.(\d+)\.normalization\.(.*)$"), "layer{s}.{b}.bn{k}.{r}"),
]


def resnet_key(key: str) -> str | None:
    """Map a transformers `ResNetModel` key to torchvision naming; torchvision keys pass unchanged."""
    key = key[7:] if key.startswith("resnet.") else key
    for pattern, template in _HF_RESNET:
        m = pattern.match(key)
        if not m:
            continue
        if "{" not in template:
            return m.expand(template)
        g = m.groups()
        if len(g) == 3:
            return template.format(s=int(g[0]) + 1, b=g[1], r=g[2])
        return template.format(s=int(g[0]) + 1, b=g[1], k=int(g[2]) + 1, r=g[3])
    return key


def load_resnet(model: torch.nn.Module, path: str | Path) -> LoadReport:
    """Copy a local ResNet checkpoint (torchvision or transformers key names) into `model.vision`."""
    source = read_state_dict(path)
    report = LoadReport(str(path))
    target = model.vision.state_dict()
    mapped = {}
    for key, tensor in source.items():
        name = resnet_key(key)
        if RESNET_IGNORED.match(name) or name not in target:
            report.ignored.append(key)
        else:
            mapped[name] = tensor
    missing = sorted(set(target) - set(mapped))
    if missing:
        raise CheckpointError(f"{path}: ResNet checkpoint lacks {len(missing)} weight(s) the vision encoder needs, "
                              f"e.g. {missing[:3]}")
    with torch.no_grad():
        for name, tensor in mapped.items():
            if tensor.shape != target[name].shape:
                raise CheckpointError(f"{path}: {name} has shape {tuple(tensor.shape)}, "
                                      f"the vision encoder expects {tuple(target[name].shape)}")
            target[name].copy_(tensor)
            report.loaded.append(name)
    return report
