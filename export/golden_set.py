"""Build the bundle's golden set at export: real sentences (and photos) with the eager model's logits.

Rows: MNRE validation sentences when the annotations are there (else contract-valid random rows); the
first rows carry a scikit-image photo and object crops of it (else structured synthetic images), so the
image path is checked too. Sized so that a check stays fast: 32 rows for small models, 8 for large ones
(whose four image slots cost ~2.4 MB a row), at most 8 MB of pixels. The file and the manifest section
are described in :mod:`dfma.contract.golden`; every graph's expected result is measured on the export
host with :func:`expected_results`.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dfma.contract.golden import ERROR_FACTOR, ERROR_FLOOR, FORMAT, GOLDEN_FILE
from dfma.contract.tensor_file import write_tensors

PIXEL_BUDGET = 8 << 20
LARGE_ROW = 1 << 20  # a row whose image slots take more than this: a large model
MNRE_DIR = Path(os.environ.get("DFMA_MNRE_DIR", Path(__file__).resolve().parents[2] / "shared" / "data" / "mnre"))


def _synthetic_image(rng: np.random.Generator, height: int = 120, width: int = 160) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width]
    base = np.stack([x * 255 // (width - 1), y * 255 // (height - 1), (x + y) * 127 // (width + height - 2)], -1)
    return ((base + rng.integers(0, 64, size=(height, width, 3))) % 256).astype(np.uint8)


def build_golden(model, preprocess: dict, tokenizer, cfg, special: dict[str, int], out: Path, *,
                 seed: int = 0, mnre_dir: Path = MNRE_DIR) -> dict:
    """Write ``out`` (the golden file) and return the manifest's ``golden`` section (without ``expected``)."""
    from dfma.contract.features import Preprocessor
    from dfma.contract.samples import Sample
    from dfma.export import photos
    from dfma.model.runner import EagerRunner

    pre = Preprocessor.from_manifest(preprocess, tokenizer)
    slots, size = 1 + pre.num_crops, int(preprocess["image_size"])
    row_bytes = slots * 3 * size * size * 4
    rows = 8 if row_bytes > LARGE_ROW else 32
    with_images = max(1, min(rows // 3, PIXEL_BUDGET // row_bytes))
    rng = np.random.default_rng(seed)
    val = mnre_dir / "mnre_val.txt"
    if val.is_file():
        from dfma.mnre import read_mnre

        records = read_mnre(val)
        picks = [records[i] for i in sorted(rng.choice(len(records), size=min(rows, len(records)), replace=False))]
        texts = [(list(r.words), r.head, r.tail) for r in picks]
        text_source = f"{len(texts)} MNRE validation sentences ({val.name}, seed {seed})"
    else:
        texts = [(["golden", "sample", str(i), "about", "paris", "and", "london"], (0, 2), (4, 5)) for i in range(rows)]
        text_source = f"{rows} fixed synthetic sentences (MNRE annotations not found at {mnre_dir})"
    drawn = photos.photo_slots(with_images, pre.num_crops, seed=seed)
    if not drawn:
        drawn = [(_synthetic_image(rng), [_synthetic_image(rng, 64, 64)]) for _ in range(with_images)]
    image_source = photos.source() if photos.available() else "structured synthetic images (scikit-image not installed)"
    features = []
    for i, (words, head, tail) in enumerate(texts):
        image, crops = drawn[i] if i < len(drawn) else (None, [])
        features.append(pre.prepare(Sample.from_words(words, head, tail, image=image, crops=crops)))
    feeds = pre.collate(features)  # one length for every row: the longest
    with EagerRunner(model) as eager:
        logits = np.concatenate([eager.logits({k: v[i:i + 8] for k, v in feeds.items()})
                                 for i in range(0, len(features), 8)])
    write_tensors(out, {"input_ids": feeds["input_ids"], "attention_mask": feeds["attention_mask"],
                        "pixel_values": feeds["pixel_values"][:len(drawn)], "image_mask": feeds["image_mask"],
                        "logits": logits.astype(np.float32)},
                  {"format": FORMAT, "reference": "eager fp32"})
    return {"file": GOLDEN_FILE, "samples": len(features), "rows_with_images": len(drawn),
            "inputs": f"{text_source}; images in the first {len(drawn)} rows: {image_source}",
            "reference": "the eager model's fp32 logits at export",
            "tolerance": {"agreement_drop": round(1.0 / len(features), 6), "error_factor": ERROR_FACTOR,
                          "error_floor": ERROR_FLOOR},
            "expected": {}}


def expected_results(golden_file: Path, manifest: dict, graphs: dict[str, Path],
                     backend: str = "onnxruntime-cpu") -> dict:
    """``graph key -> golden result on this host`` (the manifest's ``golden.expected`` entries)."""
    from dfma.backends.golden_check import run_golden
    from dfma.backends.registry import backend as backend_row
    from dfma.contract.golden import read_golden
    from dfma.contract.manifest import Manifest, row_of
    from dfma.host import host_info

    golden = read_golden(golden_file)
    host = {**host_info(), "onnxruntime": _ort_version()}
    manifest, out = Manifest.from_json(manifest), {}
    for key, path in graphs.items():
        with backend_row(backend).build(path, graph=row_of(key, manifest.graphs[key]), io=manifest.io) as runner:
            out[key] = {**run_golden(runner, golden), "backend": backend, "host": host}
    return out


def _ort_version() -> str:
    import onnxruntime

    return onnxruntime.__version__
