"""What gets exported: a trained checkpoint folder, or a preset with random weights.

Both give a :class:`ModelSource`: the eager model (eval mode), its config, the tokenizer, the label list
and a provenance record for the manifest. A preset takes its tokenizer from the committed tiny checkpoint
(``checkpoints/tiny-mnre``) unless ``tokenizer_dir`` says otherwise; the config's ``vocab_size`` and
marker ids are then set from that tokenizer, so the random model and the bundle's tokenizer agree.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from dfma.config import PRESETS, DFMAConfig, preset
from dfma.contract.errors import CheckpointError, DataError, ExportError

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_TOKENIZER_DIR = REPO_ROOT / "checkpoints" / "tiny-mnre"

# MNRE's rel2id.json, in id order: the label map of a preset export (a checkpoint carries its own).
MNRE_LABELS = (
    "None", "/per/per/parent", "/per/per/siblings", "/per/per/couple", "/per/per/neighbor", "/per/per/peer",
    "/per/per/charges", "/per/per/alumi", "/per/per/alternate_names", "/per/org/member_of",
    "/per/loc/place_of_residence", "/per/loc/place_of_birth", "/org/org/alternate_names",
    "/org/org/subsidiary", "/org/loc/locate_at", "/loc/loc/contain", "/per/misc/present_in",
    "/per/misc/awarded", "/per/misc/race", "/per/misc/religion", "/per/misc/nationality",
    "/misc/misc/part_of", "/misc/loc/held_on",
)


@dataclass
class ModelSource:
    """An eager model ready to export, with everything the bundle needs besides the graphs."""

    model: object  # dfma.model.DFMAModel, eval mode
    config: DFMAConfig
    tokenizer: object  # tokenizers.Tokenizer
    special: dict[str, int]
    labels: list[str]
    provenance: dict


def _load_tokenizer(folder: Path, what: str):
    from dfma.contract.tokenizer import load_tokenizer, special_ids

    try:
        tok = load_tokenizer(folder)
        return tok, special_ids(tok)
    except DataError as exc:
        raise CheckpointError(f"{what}: {exc}") from None


def _labels(cfg: DFMAConfig, where: str) -> list[str]:
    from dfma.contract.labels import LabelMap

    names = list(cfg.labels) or list(MNRE_LABELS)
    if len(names) != cfg.num_labels:
        raise CheckpointError(f"{where}: num_labels is {cfg.num_labels} but the config has no label list "
                              f"and the MNRE map has {len(MNRE_LABELS)} labels")
    try:
        return LabelMap(names, source=where).names
    except DataError as exc:
        raise CheckpointError(str(exc)) from None


def _check_tokenizer_fits(cfg: DFMAConfig, tok, special: dict[str, int], where: str) -> None:
    size = tok.get_vocab_size(with_added_tokens=True)
    problems = []
    if size > cfg.vocab_size:
        problems.append(f"tokenizer has {size} ids but config vocab_size is {cfg.vocab_size}")
    if special["head_open"] != cfg.head_marker_id:
        problems.append(f"<s> is id {special['head_open']} but config head_marker_id is {cfg.head_marker_id}")
    if special["tail_open"] != cfg.tail_marker_id:
        problems.append(f"<o> is id {special['tail_open']} but config tail_marker_id is {cfg.tail_marker_id}")
    if special["pad"] != cfg.pad_token_id:
        problems.append(f"[PAD] is id {special['pad']} but config pad_token_id is {cfg.pad_token_id}")
    if problems:
        raise CheckpointError(f"{where}: tokenizer and config disagree: " + "; ".join(problems))


def from_checkpoint(folder: str | Path) -> ModelSource:
    """Load a checkpoint folder (config.json, model.safetensors, tokenizer files); CheckpointError if bad."""
    from dfma.checkpoint import load_checkpoint
    from dfma.contract.bundle import sha256_file

    folder = Path(folder)
    if not folder.is_dir():
        raise CheckpointError(f"{folder}: checkpoint folder not found")
    try:
        ckpt = load_checkpoint(folder)
    except CheckpointError:
        raise
    except Exception as exc:  # a config with wrong value types, unreadable files, ...
        raise CheckpointError(f"{folder}: cannot load the checkpoint ({type(exc).__name__}: {exc})") from None
    tok, special = _load_tokenizer(folder, f"{folder} tokenizer")
    _check_tokenizer_fits(ckpt.config, tok, special, str(folder))
    provenance = {
        "source": "checkpoint", "checkpoint": folder.name,
        "config_sha256": sha256_file(folder / "config.json"),
        "weights_sha256": sha256_file(folder / "model.safetensors"),
        "training": ckpt.meta,
    }
    return ModelSource(ckpt.model, ckpt.config, tok, special, _labels(ckpt.config, str(folder / "config.json")),
                       provenance)


def from_preset(name: str, *, tokenizer_dir: str | Path | None = None, seed: int = 0) -> ModelSource:
    """A preset with random weights (seeded) and the tokenizer of ``tokenizer_dir`` (default: tiny-mnre)."""
    import torch

    from dfma.model import DFMAModel

    if name not in PRESETS:
        raise ExportError(f"unknown preset {name!r}; choose one of {sorted(PRESETS)}")
    folder = Path(tokenizer_dir) if tokenizer_dir is not None else DEFAULT_TOKENIZER_DIR
    if not folder.is_dir():
        raise ExportError(f"{folder}: tokenizer folder not found (a preset export takes its tokenizer from "
                          f"there; pass --tokenizer DIR with a tokenizer.json or vocab.txt)")
    tok, special = _load_tokenizer(folder, f"{folder} tokenizer")
    cfg = preset(name)
    cfg = replace(cfg, vocab_size=tok.get_vocab_size(with_added_tokens=True), pad_token_id=special["pad"],
                  head_marker_id=special["head_open"], tail_marker_id=special["tail_open"]).validate()
    torch.manual_seed(seed)
    model = DFMAModel(cfg).eval()
    provenance = {"source": "random", "preset": name, "seed": seed, "tokenizer_from": folder.name}
    return ModelSource(model, cfg, tok, special, _labels(cfg, f"preset {name}"), provenance)
