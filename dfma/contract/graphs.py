"""The graph catalogue: one row per kind of graph a bundle can hold (contract section 4).

Every part of the project that names a graph file or decides which graph runs where reads this table:
the exporter and the precision step (file names, what each graph is derived from), the runners and the
runtime (which graphs a backend can run, in which order of preference), the benchmarks (one row per
graph), Triton (what it serves) and the docs. A new precision is one row here plus its builder.

Columns:

- ``key``: the manifest ``graphs`` key; ``file``: the bundle file; ``precision``: what ``load(...,
  precision=...)`` calls it (two fp32 graphs share ``fp32``; runners choose by ``ops``);
- ``kind``: the manifest ``kind`` (``portable`` = standard ONNX ops, ``onnxruntime`` = com.microsoft ops);
- ``ops``: ``onnx`` (standard domains only: any ONNX consumer) or ``com.microsoft`` (ONNX Runtime only);
- ``devices``: ``cpu`` and/or ``gpu`` (ONNX Runtime has kernels for it there);
- ``derived_from``: the key of the graph it is built from (None for the export's first graph);
- ``tensorrt``: the engine precision TensorRT compiles from this graph (None: not an engine source);
- ``cpu_classes``: the CPU classes (``dfma.host``) the graph is meant for, None for any. The INT8
  graphs come in two recipes: U8 activations x S8 weights at full range (exact where the CPU has INT8 dot
  products: VNNI, AMX, ARM dot product) and the same with 7-bit weights (``reduce_range``), whose 16-bit
  intermediate cannot saturate in AVX2's ``VPMADDUBSW``: its integer products are exact on every x86 CPU
  (only the fp32 parts round by ulps per ISA), so its guard, measured anywhere, holds on all of them. Runners prefer the row meant for the host.

Two-stage graphs: every ONNX row may carry, in its manifest entry's ``stages``, the same graph cut in two
at the ``image_features`` tensor (``dfma.contract.io_spec``): ``vision`` (pixels -> features) and ``text``
(text + features -> logits), files named by :func:`stage_file` (``model.int8.onnx`` ->
``model.int8.vision.onnx`` / ``model.int8.text.onnx``). They are cut from the whole graph node for node, so
they share its precision, kind, ops and guard; a runtime that serves them encodes each image once.

TensorRT engines are rows of their own made by :func:`engine_row` (``engines/<precision>-<gpu>.plan``),
one per GPU model and precision.

What a manifest holds (the graphs present, their rows, stage files, engines, the recorded ``auto``
defaults) is read through its typed view, ``dfma.contract.manifest.Manifest`` (``present()``,
``stage_files(key)``, ``engines()``, ``recorded_default(scope)``, ``resolve_precision(...)``,
``GraphEntry.row(key)``); :func:`row_of` is the row of an entry given as JSON.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from dfma.contract.errors import BundleError


@dataclass(frozen=True)
class GraphKind:
    """One row of the catalogue (module doc)."""

    key: str
    file: str
    precision: str
    kind: str
    ops: str
    devices: tuple[str, ...]
    derived_from: str | None
    tensorrt: str | None
    doc: str
    cpu_classes: tuple[str, ...] | None = None

    def manifest_fields(self) -> dict:
        """The catalogue's columns as a manifest ``graphs`` entry starts them."""
        return {"file": self.file, "precision": self.precision, "kind": self.kind, "ops": self.ops,
                "devices": list(self.devices),
                "cpu_classes": list(self.cpu_classes) if self.cpu_classes is not None else None,
                **({"derived_from": CATALOGUE[self.derived_from].file} if self.derived_from else {})}

    def host_rank(self, cpu_class: str) -> int:
        """0: meant for this CPU class; 1: for any class; 2: meant for other classes."""
        if self.cpu_classes is None:
            return 1
        return 0 if cpu_class in self.cpu_classes else 2


NO_DOT_PRODUCT = ("x86-avx2", "x86-avx512", "x86")  # x86 classes whose U8xS8 GEMM may saturate (host.py)
_ROWS = (
    GraphKind("portable", "model.onnx", "fp32", "portable", "onnx", ("cpu", "gpu"), None, "fp32",
              "fp32, standard ONNX ops (opset 23 Attention): any ONNX consumer, TensorRT, OpenVINO"),
    GraphKind("ort", "model.ort.onnx", "fp32", "onnxruntime", "com.microsoft", ("cpu", "gpu"), "portable", None,
              "fp32, ONNX Runtime fused kernels (MultiHeadAttention, SkipLayerNorm, BiasGelu)"),
    GraphKind("fp16", "model.fp16.onnx", "fp16", "portable", "onnx", ("cpu", "gpu"), "portable", "fp16",
              "fp16 weights and math; LayerNorm, Softmax and reductions fp32; fp32 inputs and outputs"),
    GraphKind("int8", "model.int8.onnx", "int8", "portable", "onnx", ("cpu", "gpu"), "portable", "int8",
              "static INT8 (QDQ): per-channel S8 weights, U8 activations calibrated on MNRE"),
    GraphKind("int8-dynamic", "model.int8-dynamic.onnx", "int8-dynamic", "onnxruntime", "com.microsoft", ("cpu",),
              "ort", None, "dynamic INT8 (MatMulInteger) from the fused graph; ONNX Runtime CPU kernels only"),
    GraphKind("int8-avx2", "model.int8-avx2.onnx", "int8", "portable", "onnx", ("cpu",), "portable", None,
              "static INT8 as int8, weights at 7 bits (reduce_range): exact on x86 CPUs without VNNI",
              NO_DOT_PRODUCT),
    GraphKind("int8-dynamic-avx2", "model.int8-dynamic-avx2.onnx", "int8-dynamic", "onnxruntime", "com.microsoft",
              ("cpu",), "ort", None, "dynamic INT8 as int8-dynamic, weights at 7 bits: exact on x86 CPUs without VNNI",
              NO_DOT_PRODUCT),
)
CATALOGUE: dict[str, GraphKind] = {row.key: row for row in _ROWS}
PRECISIONS: tuple[str, ...] = tuple(dict.fromkeys(row.precision for row in _ROWS))
AUTO = "auto"
STAGES = ("vision", "text")
ENGINE_KIND = "tensorrt"
ENGINE_DIR = "engines"


def graph_kind(key: str) -> GraphKind:
    """The row of ``key``; BundleError listing the known keys."""
    if key not in CATALOGUE:
        raise BundleError(f"unknown graph kind {key!r}; the catalogue has {sorted(CATALOGUE)}")
    return CATALOGUE[key]


def file_of(key: str) -> str:
    """The bundle file of graph ``key``."""
    return graph_kind(key).file


def of_precision(precision: str) -> list[GraphKind]:
    """Rows of one precision, in catalogue order; BundleError for an unknown precision."""
    rows = [row for row in _ROWS if row.precision == precision]
    if not rows:
        raise BundleError(f"unknown precision {precision!r}; choose one of {[AUTO, *PRECISIONS]}")
    return rows


def stage_file(file: str, stage: str) -> str:
    """The file of one stage of a whole graph: ``model.int8.onnx`` -> ``model.int8.vision.onnx``."""
    if stage not in STAGES:
        raise BundleError(f"unknown stage {stage!r}; the stages are {list(STAGES)}")
    if not file.endswith(".onnx"):
        raise BundleError(f"{file}: only ONNX graphs are cut into stages")
    return f"{file[:-len('.onnx')]}.{stage}.onnx"


def gpu_slug(text: str) -> str:
    """``NVIDIA H100 80GB HBM3`` -> ``nvidia-h100-80gb-hbm3`` (for engine file names)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-") or "gpu"


def engine_sources() -> dict[str, str]:
    """Engine precision -> key of the ONNX graph TensorRT compiles it from."""
    return {row.tensorrt: row.key for row in _ROWS if row.tensorrt}


def engine_row(precision: str, gpu: str) -> GraphKind:
    """The row of a TensorRT engine of ``precision`` built on GPU model ``gpu``
    (key ``tensorrt-<precision>-<gpu>``, file ``engines/<precision>-<gpu>.plan``)."""
    sources = engine_sources()
    if precision not in sources:
        raise BundleError(f"no graph is a TensorRT source for precision {precision!r}; choose one of {list(sources)}")
    slug = gpu_slug(gpu)
    return GraphKind(f"{ENGINE_KIND}-{precision}-{slug}", f"{ENGINE_DIR}/{precision}-{slug}.plan", precision,
                     ENGINE_KIND, "tensorrt", ("gpu",), sources[precision], None, f"TensorRT {precision} engine for {gpu}")


def is_engine_file(kind: object, file: object) -> bool:
    """Whether a graph of this manifest ``kind`` and ``file`` is a TensorRT engine."""
    return str(kind or "").lower() == ENGINE_KIND or str(file or "").endswith(".plan")


def row_of(key: str, entry: Mapping) -> GraphKind:
    """The catalogue row of a manifest ``graphs`` entry given as JSON (typed: ``GraphEntry.row``, which
    calls this); the entry's own columns win over the catalogue's (engines get a row from their entry)."""
    if is_engine_file(entry.get("kind"), entry.get("file")):
        return GraphKind(key, str(entry.get("file")), str(entry.get("precision", "fp32")), ENGINE_KIND, "tensorrt",
                         ("gpu",), None, None, "TensorRT engine")
    base = CATALOGUE.get(key)
    if base is None:
        raise BundleError(f"manifest.json: graphs[{key!r}] is not a graph kind this reader knows "
                          f"({sorted(CATALOGUE)} or a TensorRT engine)", field=f"graphs.{key}")
    classes = entry.get("cpu_classes", base.cpu_classes)
    return GraphKind(key, str(entry.get("file", base.file)), str(entry.get("precision", base.precision)),
                     str(entry.get("kind", base.kind)), str(entry.get("ops", base.ops)),
                     tuple(entry.get("devices", base.devices)), base.derived_from, base.tensorrt, base.doc,
                     tuple(classes) if classes is not None else None)
