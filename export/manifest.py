"""The bundle manifest's sections (contract section 4), built from a ModelSource and export settings."""
from __future__ import annotations

import datetime as _dt
import json
import platform
from importlib import metadata

from dfma.contract.io_spec import io_manifest
from dfma.contract.bundle import FORMAT, FORMAT_VERSION
from dfma.contract.manifest import Manifest

TOOLS = ("dfma", "torch", "onnx", "onnxruntime", "onnxscript", "onnx-ir", "tokenizers", "numpy", "safetensors")


def tool_versions() -> dict[str, str]:
    """Installed versions of every tool that shaped the bundle, plus Python."""
    versions = {"python": platform.python_version()}
    for name in TOOLS:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "not installed"
    return versions


def tokenizer_lowercase(tokenizer) -> bool:
    """Whether the tokenizer's normalizer lower-cases (read from its serialized pipeline)."""
    normalizer = json.loads(tokenizer.to_str()).get("normalizer") or {}
    stack = [normalizer]
    while stack:
        node = stack.pop()
        if isinstance(node, dict):
            if node.get("type") in ("BertNormalizer", "Lowercase"):
                return bool(node.get("lowercase", True))
            stack.extend(node.get("normalizers") or [])
    return False


def preprocess_section(cfg, tokenizer, special: dict[str, int], max_length: int) -> dict:
    """Text and image preprocessing constants (contract sections 2 and 3)."""
    from dfma.contract.images import DEFAULT_MAX_IMAGE_PIXELS
    from dfma.contract.tokenizer import SPECIAL_KEYS, SPECIAL_TOKENS

    return {
        "max_length": max_length,
        "image_size": cfg.image_size,
        "resize_size": cfg.resize_size,
        "mean": list(cfg.image_mean),
        "std": list(cfg.image_std),
        "num_crops": cfg.num_crops,
        "max_image_pixels": DEFAULT_MAX_IMAGE_PIXELS,
        "lowercase": tokenizer_lowercase(tokenizer),
        "special_tokens": {key: {"token": token, "id": special[key]}
                           for key, token in zip(SPECIAL_KEYS, SPECIAL_TOKENS)},
        "tokenizer": "tokenizer.json",
        "vocab": "vocab.txt",
    }


def base_manifest(source, *, opset: int, max_batch: int, max_length: int, export_example: dict) -> Manifest:
    """The typed manifest with every key but ``graphs``, ``files`` and ``parity`` (filled in as the export
    proceeds, ``dataclasses.replace``)."""
    cfg = source.config
    return Manifest.from_json({
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat(),
        "model": {"preset": cfg.preset, **source.provenance, "config": cfg.to_dict(),
                  "attention_blocks": cfg.num_attention_blocks},
        "labels": list(source.labels),
        "preprocess": preprocess_section(cfg, source.tokenizer, source.special, min(max_length, cfg.max_length)),
        "io": io_manifest(cfg),
        "limits": {"max_batch": max_batch, "max_length": max_length},
        "opset": opset,
        "export": {"exporter": "torch.onnx.export(dynamo=True)", "example": export_example},
        "graphs": {},
        "files": {},
        "tools": tool_versions(),
        "parity": {},
    })
