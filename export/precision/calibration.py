"""Calibration data and ranges for static INT8: real MNRE sentences through the inference preprocessing.

- :func:`mnre_feeds` turns MNRE records into padded graph feeds with the runtime's own preprocessing
  (``dfma.contract.features.Preprocessor`` on the bundle's tokenizer and constants), images from a folder
  when one is given, else every image slot declared absent (zeros, mask 0).
- :class:`MNRECalibrationReader` is an ``onnxruntime.quantization.CalibrationDataReader`` over such feeds,
  with a progress bar.
- :func:`calibrate` computes per-tensor ranges (minmax, entropy or percentile) batch by batch (ORT's
  calibrators, fed one batch per call so that memory stays flat), and :func:`save_cache` /
  :func:`load_cache` keep them as JSON (``calibration.json`` in the bundle: tensor -> [min, max]).
"""
from __future__ import annotations

import json
import os
import sys
import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dfma.contract.errors import DataError, ExportError
from dfma.progress import bar as progress_bar

METHODS = ("minmax", "entropy", "percentile")
CACHE_FORMAT, CACHE_VERSION = "dfma-calibration", 1
DEFAULT_BATCH = 8


@dataclass
class FeedSet:
    """Padded feed batches for a list of MNRE samples, with their gold label ids."""

    batches: list[dict[str, np.ndarray]]
    labels: np.ndarray
    source: dict = field(default_factory=dict)  # file, samples, seed, images: for the manifest

    def __len__(self) -> int:
        return int(self.labels.size)


def _select(n_total: int, n: int | None, seed: int) -> np.ndarray:
    """Indices of ``n`` samples drawn without replacement (seeded); all, in order, when ``n`` is None/0/>= total."""
    if not n or n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).choice(n_total, size=n, replace=False))


def mnre_feeds(bundle: Path, manifest: dict, data_file: Path, n: int | None, *, seed: int = 0,
               batch_size: int = DEFAULT_BATCH, images: Path | None = None, crops: Path | None = None,
               photos: bool = False) -> FeedSet:
    """Read ``data_file`` (MNRE format), draw ``n`` samples (seeded; all when ``n`` is None or 0) and build
    feeds exactly as inference does. With ``images``, only samples whose image file exists are drawn;
    without, ``photos`` gives every sample a real photograph and object crops of it
    (:mod:`dfma.export.photos`, seeded), else every image slot is absent.

    Raises DataError (bad file or record) or ExportError (no usable sample, bad folder).
    """
    from dfma.contract.features import Preprocessor
    from dfma.contract.images import find_crops, find_image
    from dfma.contract.labels import LabelMap
    from dfma.contract.manifest import Manifest
    from dfma.mnre import read_mnre
    from dfma.contract.samples import Sample
    from dfma.contract.tokenizer import load_tokenizer

    manifest = Manifest.from_json(manifest)
    labels = LabelMap.from_list(manifest.labels)
    samples = read_mnre(data_file, labels)
    for name, folder in (("--images", images), ("--crops", crops)):
        if folder is not None and not Path(folder).is_dir():
            raise ExportError(f"{name} {folder}: not a folder")
    if images is not None:
        with_image = [s for s in samples if find_image(images, s.img_id) is not None]
        if not with_image:
            raise ExportError(f"--images {images}: none of the {len(samples)} images of {data_file} is there")
        pool = with_image
    else:
        pool = samples
    if not pool:
        raise DataError("no samples", file=str(data_file))
    chosen = [pool[i] for i in _select(len(pool), n, seed)]
    pre = Preprocessor.from_manifest(manifest.preprocess, load_tokenizer(bundle))  # exactly what inference does
    num_crops = pre.num_crops
    drawn = []
    if images is None and photos:
        from dfma.export import photos as photo_source

        drawn = photo_source.photo_slots(len(chosen), num_crops, seed=seed + 1)
    batches, found = [], 0
    for start in range(0, len(chosen), batch_size):
        part = []
        for i, s in enumerate(chosen[start:start + batch_size], start):
            image = find_image(images, s.img_id) if images is not None else None
            slots = find_crops(crops, s.img_id, num_crops) if crops is not None else []
            if drawn:
                image, slots = drawn[i]
            part.append(pre.prepare(Sample.from_words(s.words, s.head, s.tail, image=image, crops=slots)))
            found += int(part[-1].image_mask.sum())
        batches.append(pre.collate(part))
    gold = np.asarray([labels.id(s.relation) for s in chosen], dtype=np.int64)
    source = {"file": Path(data_file).name, "samples": len(chosen), "of": len(samples), "seed": seed,
              "images_kind": "folder" if images is not None else "photos" if drawn else "absent",
              "batch_size": batch_size,
              "images": (f"{found} image slots from {Path(images).name}/" + (f" and {Path(crops).name}/" if crops else ""))
              if images is not None else f"{found} image slots from {photo_source.source()}" if drawn
              else "absent (no images folder: every image slot masked)"}
    return FeedSet(batches, gold, source)


class MNRECalibrationReader:
    """``CalibrationDataReader`` over feed batches (ORT's ABC is duck-typed: ``get_next`` returns a feed
    dict or None), restricted to the inputs the graph has; a progress bar (:func:`dfma.progress.bar`) when ``progress``."""

    def __init__(self, batches: Sequence[dict], input_names: Sequence[str] | None = None, *,
                 progress: bool = True, desc: str = "calibrating"):
        """Iterate once over ``batches``."""
        self.batches = list(batches)
        self.names = list(input_names) if input_names else None
        self._it: Iterator = iter(self.batches)
        self._bar = progress_bar(total=len(self.batches), desc=desc, unit="batch", enabled=progress)

    def get_next(self) -> dict | None:
        """The next feed dict, or None at the end."""
        feeds = next(self._it, None)
        if feeds is None:
            self._bar.close()
            return None
        self._bar.update(1)
        return {k: v for k, v in feeds.items() if self.names is None or k in self.names}

    def __iter__(self):
        return iter(self.get_next, None)

    def __len__(self) -> int:
        return len(self.batches)

    def rewind(self) -> None:
        """Start again from the first batch."""
        self._it = iter(self.batches)


def calibration_tensors(model, op_types: Sequence[str], nodes: set[str] | None = None) -> list[str]:
    """Float activations read or written by the ``op_types`` nodes (only ``nodes`` when given): what
    static quantization needs a range for."""
    from dfma.export.fp16 import tensor_types
    from onnx import TensorProto

    types = tensor_types(model)
    inits = {t.name for t in model.graph.initializer}
    out = []
    for node in model.graph.node:
        if node.op_type in op_types and (nodes is None or node.name in nodes):
            out += [t for t in [*node.input, *node.output]
                    if t and t not in inits and types.get(t) == TensorProto.FLOAT and t not in out]
    return out


def calibrate(model_path: Path, reader: MNRECalibrationReader, method: str, *,
              op_types: Sequence[str] = ("MatMul", "Gemm", "Conv"), nodes: set[str] | None = None,
              percentile: float = 99.999) -> dict[str, list[float]]:
    """Ranges ``tensor -> [min, max]`` of the activations of the nodes to quantize, over every batch.

    ``minmax``: observed extremes; ``entropy``: KL-optimal threshold (ONNX Runtime's histogram collector,
    2048 bins, 128 levels); ``percentile``: the two-sided ``percentile`` of the values (2048 bins).
    Only the tensors of ``nodes`` (default: every ``op_types`` node) are observed, one batch at a time.
    """
    if method not in METHODS:
        raise ExportError(f"--calibration-method {method!r}: choose one of {list(METHODS)}")
    import onnx
    from onnxruntime.quantization.calibrate import HistogramCollector

    from dfma.backends.ort_runner import OrtRunner

    model = onnx.load(str(model_path))
    tensors = calibration_tensors(model, op_types, nodes)
    if not tensors:
        raise ExportError(f"{Path(model_path).name}: no activation to calibrate (op types {list(op_types)})")
    known = {o.name for o in model.graph.output}
    for name in tensors:
        if name not in known:
            model.graph.output.append(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None))
    collector = None if method == "minmax" else HistogramCollector(
        method=method, symmetric=False, num_bins=2048, num_quantized_bins=128, percentile=percentile, scenario="same")
    lo = {t: np.inf for t in tensors}
    hi = {t: -np.inf for t in tensors}
    with tempfile.TemporaryDirectory(prefix="dfma-calib-") as tmp:
        probe = Path(tmp) / "probe.onnx"
        onnx.save(model, str(probe))
        del model
        runner = OrtRunner(probe, optimization="none", outputs=tensors).open()  # every tensor name kept
        for feeds in reader:
            arrays = runner.infer(feeds)
            for name, arr in arrays.items():
                if arr.size:
                    lo[name], hi[name] = min(lo[name], float(np.nanmin(arr))), max(hi[name], float(np.nanmax(arr)))
            if collector is not None:
                with _Silence():
                    collector.collect(arrays)
        runner.close()
    if collector is None:
        ranges = {t: [lo[t], hi[t]] for t in tensors if np.isfinite(lo[t])}
    else:
        with _Silence():
            result = collector.compute_collection_result()
        ranges = {}
        for name, value in result.items():
            a, b = value.range_value if hasattr(value, "range_value") else value[:2]
            ranges[name] = [float(np.asarray(a).min()), float(np.asarray(b).max())]
    return dict(sorted(ranges.items()))


class _Silence:
    """Swallow ONNX Runtime's histogram collector prints ("Collecting tensor data ...") on stdout."""

    def __enter__(self):
        self._old, sys.stdout = sys.stdout, open(os.devnull, "w")

    def __exit__(self, *exc):
        sys.stdout.close()
        sys.stdout = self._old


def save_cache(path: Path, ranges: dict[str, list[float]], *, method: str, source: dict, graph: str,
               graph_sha256: str, op_types: Sequence[str]) -> dict:
    """Write the calibration cache JSON; returns the document written."""
    doc = {"format": CACHE_FORMAT, "format_version": CACHE_VERSION, "method": method, "graph": graph,
           "graph_sha256": graph_sha256, "op_types": list(op_types), "source": source,
           "ranges": {k: [float(v[0]), float(v[1])] for k, v in ranges.items()}}
    Path(path).write_text(json.dumps(doc, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return doc


def load_cache(path: Path) -> dict:
    """Read and validate a calibration cache; raises DataError naming the file and the field."""
    path = Path(path)
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise DataError("calibration cache not found", file=str(path)) from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DataError(f"unreadable calibration cache ({exc})", file=str(path)) from None
    if not isinstance(doc, dict) or doc.get("format") != CACHE_FORMAT:
        raise DataError(f"not a {CACHE_FORMAT} file", file=str(path), field="format")
    if doc.get("format_version") != CACHE_VERSION:
        raise DataError(f"version {doc.get('format_version')!r}, this reader understands {CACHE_VERSION}",
                        file=str(path), field="format_version")
    if doc.get("method") not in METHODS:
        raise DataError(f"unknown method {doc.get('method')!r}", file=str(path), field="method")
    ranges = doc.get("ranges")
    if not isinstance(ranges, dict) or not ranges:
        raise DataError("no ranges", file=str(path), field="ranges")
    for name, pair in ranges.items():
        if (not isinstance(pair, list) or len(pair) != 2 or not all(isinstance(v, (int, float)) for v in pair)
                or not pair[0] <= pair[1]):
            raise DataError(f"range of {name!r} must be [min, max] numbers with min <= max, got {pair!r}",
                            file=str(path), field="ranges")
    return doc
