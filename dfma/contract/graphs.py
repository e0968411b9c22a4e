"""The graph catalogue: one row per kind of graph a bundle can hold (contract section 4).

Every part of the project that names a graph file or decides which graph runs where reads this table:
the exporter and the precision step (file names, what each graph is derived from), the runners and the
runtime (which graphs a backend can run, in which order of preference), the benchmarks (one row per
graph), Triton (what it serves) and the docs. A new precision is one row here plus its builder.

Columns:

- ``key``: the manifest ``graphs`` key; ``file``: the bundle file; ``precision``: what ``load(...,
  precision=...)`` calls it (two fp32 graphs share ``fp32``; runners choose by ``ops``);
- ``format``: what runs it, written as the manifest's ``kind`` field (``portable`` = standard ONNX ops,
  ``onnxruntime`` = com.microsoft ops, ``tensorrt`` = an engine);
- ``ops``: ``onnx`` (standard domains only: any ONNX consumer) or ``com.microsoft`` (ONNX Runtime only);
- ``devices``: ``cpu`` and/or ``gpu`` (ONNX Runtime has kernels for it there);
- ``derived_from``: the key of the graph it is built from (None for the export's first graph);
- ``tensorrt``: the engine precision TensorRT compiles from this graph (None: not an engine source);
- ``cpu_classes``: the CPU classes (``dfma.host``) the graph is meant for, None for any. The INT8
  graphs come in two recipes: U8 activations x S8 weights at full range (exact where the CPU has INT8 dot
  products: VNNI, AMX, ARM dot product) and the same with 7-bit weights (``reduce_range``), whose 16-bit
  intermediate cannot saturate in AVX2's ``VPMADDUBSW``: its integer products are exact on every x86 CPU
  (only the fp32 parts round by ulps per ISA), so its guard, measured anywhere, holds on all of them. Runners prefer the row meant for the host;
- ``exact_on``: the CPU classes on which the graph computes what its guard measured, whichever of them the
  guard ran on (None: every class). The full-range INT8 rows hold on the classes with INT8 dot products
  (:data:`DOT_PRODUCT`); their 7-bit twins and the float rows on every class. What a slimmed bundle serves
  (``export/slim_bundle.py``, the manifest's ``slimmed.cpu_classes``) is read from it (:meth:`GraphKind.serves`);
- ``cpu_kernels``: False where ONNX Runtime's CPU provider casts the graph's math back to fp32 (fp16): a
  CPU deployment leaves it out; ``companions``: bundle files that serve only this graph (slimmed with it);
- ``recipe``: the name of the precision step's recipe that builds the graph (``export/recipes/``: a module
  name, ``.reduce_range`` for the 7-bit twin it also builds), None for the export's own graphs.

Two-stage graphs: every ONNX row may carry, in its manifest entry's ``stages``, the same graph cut in two
at the ``image_features`` tensor (``dfma.contract.io_spec``): ``vision`` (pixels -> features) and ``text``
(text + features -> logits), files named by :func:`stage_file` (``model.int8.onnx`` ->
``model.int8.vision.onnx`` / ``model.int8.text.onnx``). They are cut from the whole graph node for node, so
they share its precision, format, ops and guard; a runtime that serves them encodes each image once.

TensorRT engines are rows of their own made by :func:`engine_row` (``engines/<precision>-<gpu>.plan``),
one per GPU model and precision.

What a manifest holds (the graphs present, their rows, stage files, engines, the recorded ``auto``
defaults) is read through its typed view, ``dfma.contract.manifest.Manifest`` (``present()``,
``stage_files(key)``, ``engines()``, ``recorded_default(scope)``, ``resolve_precision(...)``,
``GraphEntry.row(key)``); :func:`row_of` is the row of an entry given as JSON.
"""
from __future__ import annotations

import dataclasses
import re
from collections.abc import Mapping
from dataclasses import dataclass

from dfma.contract.errors import BundleError


@dataclass(frozen=True, kw_only=True)
class GraphKind:
    """One row of the catalogue (module doc). Built with keywords only."""

    key: str
    file: str
    precision: str
    format: str  # the manifest's "kind" field: portable, onnxruntime or tensorrt
    ops: str
    devices: tuple[str, ...]
    derived_from: str | None
    tensorrt: str | None
    doc: str
    cpu_classes: tuple[str, ...] | None = None
    cpu_kernels: bool = True  # False: ONNX Runtime's CPU provider would cast its math back to fp32
    companions: tuple[str, ...] = ()  # bundle files that serve only this graph (slimmed with it)
    recipe: str | None = None  # the precision step's recipe that builds it (export/recipes/), None: the export's
    exact_on: tuple[str, ...] | None = None  # CPU classes where its guard holds wherever it was measured; None: all
    opt_in: bool = False  # built only when asked for (its recipe's switch), not by a precision step without switches

    def manifest_fields(self) -> dict:
        """The catalogue's columns as a manifest ``graphs`` entry starts them (``format`` is written as
        the manifest's ``kind`` field, the name readers, the C++ runtime included, know it by)."""
        return {"file": self.file, "precision": self.precision, "kind": self.format, "ops": self.ops,
                "devices": list(self.devices),
                "cpu_classes": list(self.cpu_classes) if self.cpu_classes is not None else None,
                **({"derived_from": CATALOGUE[self.derived_from].file} if self.derived_from else {})}

    def host_rank(self, cpu_class: str) -> int:
        """0: meant for this CPU class; 1: for any class; 2: meant for other classes."""
        if self.cpu_classes is None:
            return 1
        return 0 if cpu_class in self.cpu_classes else 2

    def serves(self, cpu_class: str) -> bool:
        """Whether the graph computes on a CPU of this class what its guard measured (``exact_on``)."""
        return self.exact_on is None or cpu_class in self.exact_on


NO_DOT_PRODUCT = ("x86-avx2", "x86-avx512", "x86")  # x86 classes whose U8xS8 GEMM may saturate (host.py)
X86_DOT_PRODUCT = ("x86-amx", "x86-avx512-vnni", "x86-avx2-vnni")  # x86 classes with INT8 dot products (VNNI, AMX)
DOT_PRODUCT = (*X86_DOT_PRODUCT, "arm-dotprod")  # where the full-range U8xS8 products are exact
X86_CLASSES = (*X86_DOT_PRODUCT, "x86-avx512", "x86-avx2", "x86")  # every x86 class of dfma.host, best first
CPU_CLASSES = (*X86_CLASSES, "arm-dotprod", "arm", "other")  # every class dfma.host names
PORTABLE, ONNXRUNTIME = "portable", "onnxruntime"  # graph formats: standard ONNX ops / com.microsoft ops
CALIBRATION_FILE = "calibration.json"  # the static INT8 graph's activation ranges (its companion file)
# the built-in rows' precisions (each also the key of the first row of that precision); other modules import
# these names rather than spell a precision, and a registered row brings its own
FP32, FP16, INT8, INT8_DYNAMIC = "fp32", "fp16", "int8", "int8-dynamic"
_ROWS = (
    GraphKind(key="portable", file="model.onnx", precision=FP32, format=PORTABLE, ops="onnx",
              devices=("cpu", "gpu"), derived_from=None, tensorrt=FP32,
              doc="fp32, standard ONNX ops (opset 23 Attention): any ONNX consumer, TensorRT, OpenVINO"),
    GraphKind(key="ort", file="model.ort.onnx", precision=FP32, format=ONNXRUNTIME, ops="com.microsoft",
              devices=("cpu", "gpu"), derived_from="portable", tensorrt=None,
              doc="fp32, ONNX Runtime fused kernels (MultiHeadAttention, SkipLayerNorm, BiasGelu)"),
    GraphKind(key=FP16, file="model.fp16.onnx", precision=FP16, format=PORTABLE, ops="onnx",
              devices=("cpu", "gpu"), derived_from="portable", tensorrt=FP16, cpu_kernels=False, recipe="fp16",
              doc="fp16 weights and math; LayerNorm, Softmax and reductions fp32; fp32 inputs and outputs"),
    GraphKind(key=INT8, file="model.int8.onnx", precision=INT8, format=PORTABLE, ops="onnx",
              devices=("cpu", "gpu"), derived_from="portable", tensorrt=INT8, companions=(CALIBRATION_FILE,),
              recipe="int8_static", exact_on=DOT_PRODUCT,
              doc="static INT8 (QDQ): per-channel S8 weights, U8 activations calibrated on MNRE"),
    GraphKind(key=INT8_DYNAMIC, file="model.int8-dynamic.onnx", precision=INT8_DYNAMIC, format=ONNXRUNTIME,
              ops="com.microsoft", devices=("cpu",), derived_from="ort", tensorrt=None, recipe="int8_dynamic",
              exact_on=DOT_PRODUCT,
              doc="dynamic INT8 (MatMulInteger) from the fused graph; ONNX Runtime CPU kernels only"),
    GraphKind(key="int8-avx2", file="model.int8-avx2.onnx", precision=INT8, format=PORTABLE, ops="onnx",
              devices=("cpu",), derived_from="portable", tensorrt=None, cpu_classes=NO_DOT_PRODUCT,
              recipe="int8_static.reduce_range",
              doc="static INT8 as int8, weights at 7 bits (reduce_range): exact on x86 CPUs without VNNI"),
    GraphKind(key="int8-dynamic-avx2", file="model.int8-dynamic-avx2.onnx", precision=INT8_DYNAMIC,
              format=ONNXRUNTIME, ops="com.microsoft", devices=("cpu",), derived_from="ort", tensorrt=None,
              cpu_classes=NO_DOT_PRODUCT, recipe="int8_dynamic.reduce_range",
              doc="dynamic INT8 as int8-dynamic, weights at 7 bits: exact on x86 CPUs without VNNI"),
    GraphKind(key="int8-smooth", file="model.int8-smooth.onnx", precision=INT8, format=PORTABLE, ops="onnx",
              devices=("cpu",), derived_from="portable", tensorrt=None, recipe="int8_smooth", opt_in=True,
              doc="static INT8 (QDQ) by NNCF with SmoothQuant: S8 per-channel weights, U8 activations; "
                  "opt-in (export/to_precision.py --int8-smooth, needs nncf)"),
    GraphKind(key="int8-smooth-avx2", file="model.int8-smooth-avx2.onnx", precision=INT8, format=PORTABLE,
              ops="onnx", devices=("cpu",), derived_from="portable", tensorrt=None, cpu_classes=NO_DOT_PRODUCT,
              recipe="int8_smooth.reduce_range", opt_in=True,
              doc="int8-smooth with every layer's weights at 7 bits (NNCF overflow fix): for x86 CPUs without VNNI"),
)
CATALOGUE: dict[str, GraphKind] = {row.key: row for row in _ROWS}
PRECISIONS: tuple[str, ...] = tuple(dict.fromkeys(row.precision for row in _ROWS))  # the built-in rows'
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


def register(row: GraphKind) -> GraphKind:
    """Add a row to the catalogue (an extension's precision, or a test's throw-away one); BundleError when
    its key is taken or it derives from a key the catalogue lacks. Returns the row."""
    if row.key in CATALOGUE:
        raise BundleError(f"graph kind {row.key!r} is already in the catalogue")
    if row.derived_from is not None and row.derived_from not in CATALOGUE:
        raise BundleError(f"graph kind {row.key!r}: derived_from {row.derived_from!r} is not in the catalogue")
    CATALOGUE[row.key] = row
    return row


def precisions() -> tuple[str, ...]:
    """Every precision of the catalogue as it is now (registered rows included), in catalogue order."""
    return tuple(dict.fromkeys(row.precision for row in CATALOGUE.values()))


def derived_from(key: str) -> list[GraphKind]:
    """The rows built from graph ``key``, in catalogue order."""
    return [row for row in CATALOGUE.values() if row.derived_from == key]


def of_recipe(name: str) -> GraphKind:
    """The row a precision-step recipe builds; BundleError naming the recipes the catalogue knows."""
    rows = [row for row in CATALOGUE.values() if row.recipe == name]
    if len(rows) != 1:
        known = sorted(r.recipe for r in CATALOGUE.values() if r.recipe)
        raise BundleError(f"recipe {name!r}: {len(rows)} catalogue rows name it (one must); the rows' recipes "
                          f"are {known}")
    return rows[0]


def fp32_rows() -> list[GraphKind]:
    """The fp32 rows (the export's graphs, what every other row is built from), in catalogue order."""
    return [row for row in CATALOGUE.values() if row.precision == FP32]


def of_precision(precision: str) -> list[GraphKind]:
    """Rows of one precision, in catalogue order; BundleError for an unknown precision."""
    rows = [row for row in CATALOGUE.values() if row.precision == precision]
    if not rows:
        raise BundleError(f"unknown precision {precision!r}; choose one of {[AUTO, *precisions()]}")
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
    return {row.tensorrt: row.key for row in CATALOGUE.values() if row.tensorrt}


def engine_row(precision: str, gpu: str) -> GraphKind:
    """The row of a TensorRT engine of ``precision`` built on GPU model ``gpu``
    (key ``tensorrt-<precision>-<gpu>``, file ``engines/<precision>-<gpu>.plan``)."""
    sources = engine_sources()
    if precision not in sources:
        raise BundleError(f"no graph is a TensorRT source for precision {precision!r}; choose one of {list(sources)}")
    slug = gpu_slug(gpu)
    return GraphKind(key=f"{ENGINE_KIND}-{precision}-{slug}", file=f"{ENGINE_DIR}/{precision}-{slug}.plan",
                     precision=precision, format=ENGINE_KIND, ops="tensorrt", devices=("gpu",),
                     derived_from=sources[precision], tensorrt=None, doc=f"TensorRT {precision} engine for {gpu}")


def is_engine_file(kind: object, file: object) -> bool:
    """Whether a graph of this manifest ``kind`` and ``file`` is a TensorRT engine."""
    return str(kind or "").lower() == ENGINE_KIND or str(file or "").endswith(".plan")


def row_of(key: str, entry: Mapping) -> GraphKind:
    """The catalogue row of a manifest ``graphs`` entry given as JSON (typed: ``GraphEntry.row``, which
    calls this); the entry's own columns win over the catalogue's (engines get a row from their entry)."""
    if is_engine_file(entry.get("kind"), entry.get("file")):
        return GraphKind(key=key, file=str(entry.get("file")), precision=str(entry.get("precision", FP32)),
                         format=ENGINE_KIND, ops="tensorrt", devices=("gpu",), derived_from=None, tensorrt=None,
                         doc="TensorRT engine")
    base = CATALOGUE.get(key)
    if base is None:
        raise BundleError(f"manifest.json: graphs[{key!r}] is not a graph kind this reader knows "
                          f"({sorted(CATALOGUE)} or a TensorRT engine)", field=f"graphs.{key}")
    classes = entry.get("cpu_classes", base.cpu_classes)
    return dataclasses.replace(base, file=str(entry.get("file", base.file)),
                               precision=str(entry.get("precision", base.precision)),
                               format=str(entry.get("kind", base.format)), ops=str(entry.get("ops", base.ops)),
                               devices=tuple(entry.get("devices", base.devices)),
                               cpu_classes=tuple(classes) if classes is not None else None)

