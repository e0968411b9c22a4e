"""Fine-tune DFMA on MNRE: `python -m dfma.train --preset tiny --out checkpoints/tiny-mnre`.

AdamW with linear warmup and decay, gradient clipping, a fixed seed, a progress bar, validation micro-F1
after every epoch and the best checkpoint kept (written atomically). Lines that cannot be used are
counted and reported with their reasons, never dropped silently.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from dfma.progress import bar as progress_bar

from dfma.checkpoint import META_FILE, save_checkpoint
from dfma.config import preset
from dfma.contract.images import ImagePreprocessor
from dfma.contract.labels import LabelMap
from dfma.metrics import micro_prf
from dfma.mnre import error_summary, read_mnre
from dfma.contract.text import TextEncoder
from dfma.contract.tokenizer import (
    load_tokenizer,
    special_ids,
    tokenizer_from_bert_vocab,
    train_wordpiece,
)
from dfma.data import MNREDataset, collate
from dfma.evaluate import predict_dataset
from dfma.model import DFMAModel
from dfma.weights import config_from_bert, load_bert, load_resnet

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "mnre"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options of the trainer."""
    p = argparse.ArgumentParser(prog="python -m dfma.train", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--preset", default="tiny", choices=["tiny", "base"], help="model size (default: tiny)")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA,
                   help="folder with mnre_train.txt, mnre_val.txt, rel2id.json (default: ../shared/data/mnre)")
    p.add_argument("--images", type=Path, help="folder of post images (img_id file names); absent: text only")
    p.add_argument("--crops", type=Path, help="folder of object crops named <image stem>-<k>.<ext>")
    p.add_argument("--bert", type=Path, help="local Hugging Face BERT folder (config.json, weights, vocab.txt)")
    p.add_argument("--resnet", type=Path, help="local ResNet checkpoint (torchvision or transformers names)")
    p.add_argument("--tokenizer", type=Path, help="folder with tokenizer.json or vocab.txt to reuse")
    p.add_argument("--vocab-size", type=int, default=8000, help="WordPiece vocabulary trained when no tokenizer is given")
    p.add_argument("--out", type=Path, required=True, help="checkpoint folder to write (best epoch)")
    p.add_argument("--epochs", type=int, default=10)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-4, help="peak learning rate")
    p.add_argument("--weight-decay", type=float, default=0.01)
    p.add_argument("--warmup", type=float, default=0.1, help="fraction of steps with linear warmup")
    p.add_argument("--clip", type=float, default=1.0, help="gradient-norm clipping")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=os.cpu_count(), help="torch CPU threads")
    p.add_argument("--limit", type=int, help="use only the first N training samples (smoke runs)")
    p.add_argument("--weights-dtype", choices=["float32", "float16"], default="float32",
                   help="how the checkpoint stores its weights (float16: half the size, upcast on load)")
    p.add_argument("--max-minutes", type=float, help="stop after the epoch that passes this time budget")
    return p.parse_args(argv)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch."""
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def read_split(path: Path, labels: LabelMap, name: str):
    """Read one split, reporting every dropped line with its reason."""
    samples, errors = read_mnre(path, labels, on_error="collect")
    print(f"{name}: {len(samples)} samples from {path}" + (f"; dropped {len(errors)}: {error_summary(errors)}"
                                                            if errors else "; dropped 0"))
    return samples, len(errors)


def build_tokenizer(args, train_samples):
    """The tokenizer: reused, from a BERT vocab, or a WordPiece trained on the training sentences."""
    if args.tokenizer:
        return load_tokenizer(args.tokenizer)
    if args.bert:
        return tokenizer_from_bert_vocab(args.bert / "vocab.txt")
    print(f"training a WordPiece vocabulary of {args.vocab_size} on {len(train_samples)} sentences")
    return train_wordpiece((s.words for s in train_samples), vocab_size=args.vocab_size)


def build_model(args, tokenizer, labels: LabelMap) -> DFMAModel:
    """Config from the preset (or the BERT folder), vocabulary and markers from the tokenizer."""
    ids = special_ids(tokenizer)
    fields = dict(vocab_size=tokenizer.get_vocab_size(with_added_tokens=True), pad_token_id=ids["pad"],
                  head_marker_id=ids["head_open"], tail_marker_id=ids["tail_open"],
                  num_labels=len(labels), labels=labels.names)
    cfg = preset(args.preset, **fields)
    if args.bert:
        cfg = config_from_bert(args.bert, base=cfg, vocab_size=fields["vocab_size"])
    model = DFMAModel(cfg)
    if args.bert:
        print(load_bert(model, args.bert).summary())
    if args.resnet:
        print(load_resnet(model, args.resnet).summary())
    if cfg.freeze_vision:
        model.vision.requires_grad_(False)
    return model


def make_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over every trainable parameter; no decay on biases, norms and embeddings' position tables."""
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if p.requires_grad:
            (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    return torch.optim.AdamW([{"params": decay, "weight_decay": weight_decay},
                              {"params": no_decay, "weight_decay": 0.0}], lr=lr)


def warmup_linear(total: int, warmup: float):
    """LambdaLR factor: linear warmup over `warmup * total` steps, then linear decay to 0."""
    steps = max(1, int(total * warmup))
    return lambda step: (step + 1) / steps if step < steps else max(0.0, (total - step) / max(1, total - steps))


def train(args: argparse.Namespace) -> dict:
    """Run training; return the best validation scores."""
    seed_everything(args.seed)
    torch.set_num_threads(args.threads)
    labels = LabelMap.from_json(args.data_dir / "rel2id.json")
    train_samples, dropped_train = read_split(args.data_dir / "mnre_train.txt", labels, "train")
    val_samples, dropped_val = read_split(args.data_dir / "mnre_val.txt", labels, "val")
    if args.limit:
        train_samples = train_samples[: args.limit]
    tokenizer = build_tokenizer(args, train_samples)
    model = build_model(args, tokenizer, labels)
    cfg = model.config
    encoder = TextEncoder(tokenizer, cfg.max_length)
    images = ImagePreprocessor(cfg.image_size, cfg.resize_size, cfg.image_mean, cfg.image_std)
    make = lambda s: MNREDataset(s, encoder, labels, images, images_dir=args.images, crops_dir=args.crops,
                                 num_crops=cfg.num_crops)
    train_set, val_set = make(train_samples), make(val_samples)
    loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, collate_fn=collate,
                        generator=torch.Generator().manual_seed(args.seed))
    optimizer = make_optimizer(model, args.lr, args.weight_decay)
    total = args.epochs * len(loader)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, warmup_linear(total, args.warmup))
    best, history, start = {"f1": -1.0}, [], time.time()
    for epoch in range(1, args.epochs + 1):
        model.train()
        if cfg.freeze_vision:
            model.vision.eval()
        bar = progress_bar(loader, desc=f"epoch {epoch}/{args.epochs}", unit="batch", leave=True)
        losses = []
        for batch in bar:
            target = batch.pop("labels")
            loss = torch.nn.functional.cross_entropy(model(**batch), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip)
            optimizer.step()
            scheduler.step()
            losses.append(loss.item())
            bar.set_postfix(loss=f"{np.mean(losses[-50:]):.3f}", lr=f"{scheduler.get_last_lr()[0]:.2e}")
        gold, pred = predict_dataset(model, val_set, args.batch_size)
        p, r, f1 = micro_prf(gold, pred, labels.none_id)
        scores = dict(precision=p, recall=r, f1=f1, accuracy=float((gold == pred).mean()), epoch=epoch, train_loss=float(np.mean(losses)),
                      minutes=(time.time() - start) / 60)
        history.append(scores)
        print(f"epoch {epoch}: val micro P {scores['precision']:.4f} R {scores['recall']:.4f} "
              f"F1 {scores['f1']:.4f} (loss {scores['train_loss']:.3f}, {scores['minutes']:.1f} min)")
        if scores["f1"] > best["f1"]:
            best = scores
            meta = dict(command="python -m dfma.train " + " ".join(shlex.quote(a) for a in sys.argv[1:]),
                        best=best, history=history, seed=args.seed, dropped={"train": dropped_train, "val": dropped_val},
                        missing_images={"train": train_set.missing_images, "val": val_set.missing_images},
                        torch=torch.__version__)
            save_checkpoint(model, args.out, tokenizer=tokenizer, meta=meta,
                            weights_dtype=getattr(torch, args.weights_dtype))
            print(f"  saved best checkpoint to {args.out}")
        if args.max_minutes and (time.time() - start) / 60 > args.max_minutes:
            print(f"time budget of {args.max_minutes} min reached after epoch {epoch}")
            break
    meta_path = args.out / META_FILE  # the whole curve, epochs after the best one included
    meta = json.loads(meta_path.read_text())
    meta.update(history=history, minutes=(time.time() - start) / 60)
    meta_path.write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return best


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    args = parse_args(argv)
    best = train(args)
    print(json.dumps({k: best[k] for k in ("epoch", "precision", "recall", "f1")}, indent=None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
