"""Our checkpoint format: a folder with config.json, model.safetensors and the tokenizer files.

No pickles anywhere: weights are safetensors, everything else JSON or text. Saving is atomic (the
folder is written beside the target and renamed into place), so a crash leaves no half checkpoint.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from dfma.config import DFMAConfig
from dfma.contract.atomic import AtomicFolder
from dfma.contract.errors import CheckpointError

CONFIG_FILE, WEIGHTS_FILE, META_FILE = "config.json", "model.safetensors", "training.json"


@dataclass
class Checkpoint:
    """A loaded checkpoint: the model (eval mode), its config, the folder, and its training metadata."""

    model: torch.nn.Module
    config: DFMAConfig
    folder: Path
    meta: dict


def save_checkpoint(model: torch.nn.Module, folder: str | Path, *, tokenizer=None, meta: dict | None = None,
                    overwrite: bool = True, weights_dtype: torch.dtype = torch.float32) -> Path:
    """Write config, weights, tokenizer (tokenizer.json + vocab.txt) and metadata to `folder` atomically.

    `weights_dtype=torch.float16` stores floating tensors in half precision (half the size in git);
    :func:`load_checkpoint` upcasts them to the model's float32.
    """
    from dfma.contract.tokenizer import save_tokenizer

    folder = Path(folder)
    if folder.exists() and not overwrite:
        raise CheckpointError(f"{folder}: already exists")
    with AtomicFolder(folder, force=True) as out:  # built beside the target, swapped into place (shared modes)
        tmp = out.tmp
        model.config.save(tmp / CONFIG_FILE)
        state = {k: stored(v.detach().contiguous().cpu(), weights_dtype) for k, v in model.state_dict().items()}
        save_file(state, str(tmp / WEIGHTS_FILE), metadata={"format": "pt", "stored_dtype": str(weights_dtype)})
        if tokenizer is not None:
            save_tokenizer(tokenizer, tmp)
        (tmp / META_FILE).write_text(json.dumps(meta or {}, indent=2, default=str) + "\n")
        out.commit()  # safetensors writes 0600: commit gives every file the umask's (shared) modes
    return folder


def stored(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """`t` as it is written: floating tensors in `dtype`, integer ones (counters) unchanged."""
    return t.to(dtype) if t.is_floating_point() else t


def load_state(folder: Path) -> dict[str, torch.Tensor]:
    """Read model.safetensors, naming the file when it is missing or corrupt."""
    path = folder / WEIGHTS_FILE
    if not path.is_file():
        raise CheckpointError(f"{path}: weights file missing")
    try:
        return load_file(str(path))
    except Exception as exc:  # noqa: BLE001 - safetensors raises several types for corrupt files
        raise CheckpointError(f"{path}: cannot read safetensors ({exc})") from None


def load_checkpoint(folder: str | Path) -> Checkpoint:
    """Load a checkpoint folder; every missing, unexpected or mis-shaped tensor is an error naming it."""
    from dfma.model import DFMAModel

    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: checkpoint folder not found")
    config = DFMAConfig.load(folder / CONFIG_FILE)
    model = DFMAModel(config)
    state = load_state(folder)
    expected = model.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    shapes = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(v.shape)}"
              for k, v in expected.items() if k in state and state[k].shape != v.shape]
    if missing or unexpected or shapes:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} tensor(s), e.g. {missing[:3]}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} tensor(s), e.g. {unexpected[:3]}")
        if shapes:
            parts.append(f"shape mismatch: {shapes[:3]}")
        raise CheckpointError(f"{folder / WEIGHTS_FILE} does not match {folder / CONFIG_FILE}: " + "; ".join(parts))
    wrong = [k for k, v in state.items() if v.dtype != expected[k].dtype and not v.is_floating_point()]
    if wrong:
        raise CheckpointError(f"{folder / WEIGHTS_FILE}: integer tensor(s) of the wrong type, e.g. {wrong[:3]}")
    model.load_state_dict({k: v.to(expected[k].dtype) for k, v in state.items()})  # fp16-stored weights upcast
    meta_path = folder / META_FILE
    meta = json.loads(meta_path.read_text()) if meta_path.is_file() else {}
    return Checkpoint(model.eval(), config, folder, meta)
