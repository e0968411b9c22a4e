"""Model configuration: the `tiny` and `base` presets, saved as JSON with every checkpoint (torch-free)."""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from dfma.contract.errors import CheckpointError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


@dataclass
class DFMAConfig:
    """Every number that defines a DFMA network and its preprocessing.

    Text: a BERT encoder (`hidden_size`, `num_layers`, ...) whose self-attention takes a prefix of
    visual prompt keys/values per layer. Vision: a bottleneck ResNet (`resnet_depths`, `resnet_widths`)
    shared by the main image and `num_crops` crops; each of its 4 stages is a pyramid level pooled to
    `pyramid_grid` x `pyramid_grid` tokens. Prompts: `pyramid_grid**2` prompt tokens per image and layer.
    """

    preset: str = "tiny"
    # text encoder (BERT layout, Hugging Face parameter names)
    vocab_size: int = 8000
    hidden_size: int = 128
    num_layers: int = 2
    num_heads: int = 2
    intermediate_size: int = 512
    max_position_embeddings: int = 128
    type_vocab_size: int = 2
    layer_norm_eps: float = 1e-12
    dropout: float = 0.1
    # vision encoder (bottleneck ResNet, torchvision parameter names)
    resnet_depths: tuple[int, ...] = (1, 1, 1, 1)
    resnet_widths: tuple[int, ...] = (8, 16, 32, 64)
    resnet_stem: int = 16
    resnet_expansion: int = 4
    freeze_vision: bool = False
    # images and prompts
    image_size: int = 64
    resize_size: int = 73
    num_crops: int = 3
    pyramid_grid: int = 2
    image_mean: tuple[float, ...] = IMAGENET_MEAN
    image_std: tuple[float, ...] = IMAGENET_STD
    # mutual fusion
    mmf_heads: int = 2
    mmf_intermediate_size: int = 256
    # task
    num_labels: int = 23
    max_length: int = 80
    pad_token_id: int = 0
    head_marker_id: int = 5
    tail_marker_id: int = 7
    labels: list[str] = field(default_factory=list)

    @property
    def num_images(self) -> int:
        """Image slots per sample: the main image plus the crops."""
        return 1 + self.num_crops

    @property
    def tokens_per_image(self) -> int:
        """Pyramid tokens per image: 4 levels x grid x grid."""
        return len(self.resnet_widths) * self.pyramid_grid ** 2

    @property
    def prompts_per_image(self) -> int:
        """Prompt key/value vectors each image contributes to every text layer."""
        return self.pyramid_grid ** 2

    @property
    def num_attention_blocks(self) -> int:
        """Attention blocks in the network: one self-attention per text layer plus the two MMF directions."""
        return self.num_layers + 2

    def validate(self) -> "DFMAConfig":
        """Raise CheckpointError on an inconsistent configuration; return self."""
        problems = []
        if self.hidden_size % self.num_heads:
            problems.append(f"hidden_size {self.hidden_size} not divisible by num_heads {self.num_heads}")
        if self.hidden_size % self.mmf_heads:
            problems.append(f"hidden_size {self.hidden_size} not divisible by mmf_heads {self.mmf_heads}")
        if len(self.resnet_depths) != 4 or len(self.resnet_widths) != 4:
            problems.append("resnet_depths and resnet_widths need 4 stages")
        if self.resize_size < self.image_size:
            problems.append(f"resize_size {self.resize_size} < image_size {self.image_size}")
        if self.max_length > self.max_position_embeddings:
            problems.append(f"max_length {self.max_length} > max_position_embeddings {self.max_position_embeddings}")
        if self.labels and len(self.labels) != self.num_labels:
            problems.append(f"{len(self.labels)} labels for num_labels {self.num_labels}")
        if problems:
            raise CheckpointError("invalid DFMA config: " + "; ".join(problems))
        return self

    def to_dict(self) -> dict:
        """A JSON-ready dict (tuples become lists)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, *, source: str = "config") -> "DFMAConfig":
        """Build from a dict, refusing unknown keys (a config from another tool is an error, not a guess)."""
        known = {f.name: f for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise CheckpointError(f"{source}: unknown config field(s) {unknown}")
        values = {}
        for key, value in data.items():
            if isinstance(value, list) and known[key].type.startswith("tuple"):
                value = tuple(value)
            values[key] = value
        return cls(**values).validate()

    def save(self, path: str | Path) -> None:
        """Write the config as JSON."""
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")

    @classmethod
    def load(cls, path: str | Path) -> "DFMAConfig":
        """Read a config JSON written by `save`."""
        path = Path(path)
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            raise CheckpointError(f"{path}: config file missing") from None
        except json.JSONDecodeError as exc:
            raise CheckpointError(f"{path}: not valid JSON ({exc})") from None
        if not isinstance(data, dict):
            raise CheckpointError(f"{path}: expected a JSON object, got {type(data).__name__}")
        return cls.from_dict(data, source=str(path))


PRESETS: dict[str, dict] = {
    # Tests, CI, seconds: 2 layers of width 128, a ResNet with one block per stage, 64-pixel images.
    "tiny": {},
    # What users run: BERT-base + ResNet-50 at 224 pixels.
    "base": dict(
        vocab_size=30526, hidden_size=768, num_layers=12, num_heads=12, intermediate_size=3072,
        max_position_embeddings=512, resnet_depths=(3, 4, 6, 3), resnet_widths=(64, 128, 256, 512),
        resnet_stem=64, freeze_vision=True, image_size=224, resize_size=256, mmf_heads=12,
        mmf_intermediate_size=3072,
    ),
}


def preset(name: str, **overrides) -> DFMAConfig:
    """The named preset (`tiny` or `base`) with optional field overrides."""
    if name not in PRESETS:
        raise CheckpointError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    return DFMAConfig(**{"preset": name, **PRESETS[name], **overrides}).validate()


def model_config(manifest) -> DFMAConfig:
    """The model configuration a bundle's typed manifest (:class:`dfma.contract.manifest.Manifest`) records
    (``model.config``)."""
    return DFMAConfig.from_dict(dict(manifest.model.config or {}), source="manifest.json model.config")


def special_token_ids(manifest) -> dict[str, int]:
    """The special tokens' ids a bundle's manifest records (``preprocess.special_tokens``): name -> id."""
    return manifest.preprocess.special_ids()
