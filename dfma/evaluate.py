"""Evaluate a checkpoint on MNRE: `python -m dfma.evaluate CHECKPOINT [--split val]`.

Prints micro precision / recall / F1 over non-"None" labels (the MNRE metric) and a per-relation table.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from dfma.progress import bar as progress_bar

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnre"


@torch.no_grad()
def predict_dataset(model: torch.nn.Module, dataset, batch_size: int = 64, progress: bool = True):
    """(gold labels, predicted labels) as int arrays over a `MNREDataset`, model in eval mode."""
    from dfma.data import collate

    model.eval()
    gold, pred = [], []
    for batch in progress_bar(DataLoader(dataset, batch_size=batch_size, collate_fn=collate), desc="evaluating",
                              unit="batch", enabled=progress):
        gold.append(batch.pop("labels").numpy())
        pred.append(model(**batch).argmax(-1).numpy())
    return np.concatenate(gold), np.concatenate(pred)


def evaluate_checkpoint(checkpoint: Path, data: Path, images: Path | None = None, crops: Path | None = None,
                        batch_size: int = 64) -> dict:
    """Load a checkpoint, run it over an MNRE file; return {"report": metrics.Report, "missing_images": n}."""
    from dfma.checkpoint import load_checkpoint
    from dfma.data import MNREDataset
    from dfma.contract.images import ImagePreprocessor
    from dfma.contract.labels import LabelMap
    from dfma.metrics import evaluate
    from dfma.mnre import read_mnre
    from dfma.contract.text import TextEncoder
    from dfma.contract.tokenizer import load_tokenizer

    ckpt = load_checkpoint(checkpoint)
    cfg = ckpt.config
    labels = LabelMap.from_list(cfg.labels)
    samples = read_mnre(data, labels)
    encoder = TextEncoder(load_tokenizer(checkpoint), cfg.max_length)
    images_pre = ImagePreprocessor(cfg.image_size, cfg.resize_size, cfg.image_mean, cfg.image_std)
    dataset = MNREDataset(samples, encoder, labels, images_pre, images_dir=images, crops_dir=crops,
                          num_crops=cfg.num_crops)
    gold, pred = predict_dataset(ckpt.model, dataset, batch_size)
    return {"report": evaluate(gold, pred, labels), "missing_images": dataset.missing_images}


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    from dfma.metrics import format_report

    p = argparse.ArgumentParser(prog="python -m dfma.evaluate", description=__doc__)
    p.add_argument("checkpoint", type=Path, help="checkpoint folder (config.json, model.safetensors, tokenizer)")
    p.add_argument("--data", type=Path, default=DEFAULT_DATA / "mnre_val.txt", help="MNRE-format file")
    p.add_argument("--images", type=Path, help="folder of post images")
    p.add_argument("--crops", type=Path, help="folder of object crops")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--json", type=Path, help="also write the report as JSON here")
    args = p.parse_args(argv)
    result = evaluate_checkpoint(args.checkpoint, args.data, args.images, args.crops, args.batch_size)
    print(format_report(result["report"]))
    if result["missing_images"]:
        print(f"{result['missing_images']} image(s) missing: evaluated with those slots masked")
    if args.json:
        args.json.write_text(json.dumps({**result["report"].to_dict(), "missing_images": result["missing_images"]},
                                        indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
