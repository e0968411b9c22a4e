"""Declarative model inputs and outputs (contract section 1): one :class:`TensorSpec` per graph tensor.

The exporter derives the traced dynamic axes and the graphs' symbolic dimension names from these specs,
writes them into the manifest's ``io`` section, and every runner checks a loaded graph against them once
(:func:`check_graph_io`). ``cfg`` is any object with ``image_size``, ``num_images`` and ``num_labels``
(a :class:`dfma.config.DFMAConfig`); nothing here needs torch or onnx.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dfma.contract.errors import BundleError

BATCH, SEQUENCE = "batch", "sequence"
INPUT_NAMES = ("input_ids", "attention_mask", "pixel_values", "image_mask")
OUTPUT_NAME = "logits"
FEATURES_NAME = "image_features"  # the tensor between the two stages (contract section 4.2)
STAGE_INPUTS = {"vision": ("pixel_values", "image_mask"),
                "text": ("input_ids", "attention_mask", FEATURES_NAME, "image_mask")}


@dataclass(frozen=True)
class TensorSpec:
    """One named graph input or output."""

    name: str
    dtype: str
    shape: tuple[str | int, ...]
    doc: str

    def dynamic_axes(self) -> dict[int, str]:
        """Axis index -> symbolic name, for the axes that are not fixed."""
        return {i: d for i, d in enumerate(self.shape) if isinstance(d, str)}

    def concrete(self, batch: int, length: int) -> tuple[int, ...]:
        """The shape with ``batch`` and ``sequence`` filled in."""
        sizes = {BATCH: batch, SEQUENCE: length}
        return tuple(sizes[d] if isinstance(d, str) else d for d in self.shape)

    def to_manifest(self) -> dict:
        """The manifest's ``io`` entry."""
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape), "doc": self.doc}


def input_specs(cfg: Any) -> list[TensorSpec]:
    """The four graph inputs, in graph order."""
    s, n = cfg.image_size, cfg.num_images
    return [
        TensorSpec("input_ids", "int64", (BATCH, SEQUENCE),
                   "word-piece ids: [CLS] ... [SEP], right-padded with [PAD] (id 0); each row holds the "
                   "markers <s> and <o> (their first occurrence marks head and tail)"),
        TensorSpec("attention_mask", "int64", (BATCH, SEQUENCE), "1 for real pieces, 0 for padding"),
        TensorSpec("pixel_values", "float32", (BATCH, n, 3, s, s),
                   f"slot 0 the post's image, slots 1..{n - 1} object crops; {s}x{s}, ImageNet-normalised"),
        TensorSpec("image_mask", "int64", (BATCH, n),
                   "1 = image slot present, 0 = absent (its pixels are ignored, even NaN)"),
    ]


def output_specs(cfg: Any) -> list[TensorSpec]:
    """The graph output."""
    return [TensorSpec(OUTPUT_NAME, "float32", (BATCH, cfg.num_labels),
                       "unnormalised scores over the label map (manifest 'labels', index = class id)")]


def feature_spec(cfg: Any) -> TensorSpec:
    """The pixel-only image features the vision stage hands to the text stage (``cfg`` also needs
    ``tokens_per_image`` and ``hidden_size``)."""
    return TensorSpec(FEATURES_NAME, "float32", (BATCH, cfg.num_images, cfg.tokens_per_image, cfg.hidden_size),
                      "pyramid tokens of every image slot (ResNet stages pooled, projected and normalised); "
                      "they depend on the pixels alone, so they are computed once per image and reused")


def stage_specs(cfg: Any) -> dict[str, tuple[list[TensorSpec], list[TensorSpec]]]:
    """``stage -> (inputs, outputs)`` of the two-stage graphs: ``vision`` (pixels -> features) and
    ``text`` (text + features -> logits)."""
    by_name = {t.name: t for t in input_specs(cfg)} | {FEATURES_NAME: feature_spec(cfg)}
    return {"vision": ([by_name[n] for n in STAGE_INPUTS["vision"]], [feature_spec(cfg)]),
            "text": ([by_name[n] for n in STAGE_INPUTS["text"]], output_specs(cfg))}


def stages_manifest(cfg: Any) -> dict:
    """The manifest's ``stages`` section: the boundary tensor and each stage's ``io``."""
    return {"features": feature_spec(cfg).to_manifest(),
            **{stage: {"inputs": [t.to_manifest() for t in ins], "outputs": [t.to_manifest() for t in outs]}
               for stage, (ins, outs) in stage_specs(cfg).items()}}


def io_manifest(cfg: Any) -> dict:
    """The manifest's ``io`` section."""
    return {"inputs": [t.to_manifest() for t in input_specs(cfg)],
            "outputs": [t.to_manifest() for t in output_specs(cfg)]}


def dynamic_dims(specs: Sequence[TensorSpec]) -> dict[str, dict[int, str]]:
    """``{input name: {axis: symbolic name}}`` of the dynamic axes (what the exporter traces as dynamic)."""
    return {s.name: s.dynamic_axes() for s in specs if s.dynamic_axes()}


def _declared(expected: Any, section: str) -> dict[str, tuple[str, list]]:
    """``name -> (dtype, shape)`` of a manifest ``io``-like section: typed (``dfma.contract.manifest.IoSpec``,
    anything with ``section(name)`` listing tensors) or its JSON."""
    if isinstance(expected, Mapping):
        return {s["name"]: (s["dtype"], list(s["shape"])) for s in expected.get(section, [])}
    return {t.name: (t.dtype, list(t.shape)) for t in expected.section(section)}


def check_graph_io(where: str, expected: Any, actual_inputs: Mapping[str, tuple[str, Sequence[Any]]],
                   actual_outputs: Mapping[str, tuple[str, Sequence[Any]]], *, section_name: str = "io") -> None:
    """Compare a loaded graph's inputs/outputs (``name -> (dtype, shape)``) with the manifest's ``io`` (or a
    ``stages.<stage>`` section, ``section_name`` in messages), typed or JSON: the one check of a graph's
    tensors against the manifest (the runners at open, ``to_triton`` on the files it copies).

    Names must match (every declared output must exist), ranks too; fixed dimensions must agree where both
    sides fix them; dtypes must agree where the graph reports one. Raises BundleError naming ``where`` (the
    graph file) and the tensor.
    """
    for section, actual in (("inputs", actual_inputs), ("outputs", actual_outputs)):
        wanted = _declared(expected, section)
        field = f"{section_name}.{section}"
        missing = sorted(set(wanted) - set(actual))
        if missing:
            raise BundleError(f"{where}: graph {section} lack {missing} (manifest {field}: "
                              f"{sorted(wanted)}; graph: {sorted(actual)})", field=field)
        if section == "inputs" and set(actual) - set(wanted):
            raise BundleError(f"{where}: graph needs inputs {sorted(set(actual) - set(wanted))} that the "
                              f"manifest's {field} do not declare", field=field)
        for name, (want_dtype, want_shape) in wanted.items():
            dtype, shape = actual[name]
            if len(shape) != len(want_shape):
                raise BundleError(f"{where}: {name} has rank {len(shape)}, manifest {field} says "
                                  f"{len(want_shape)} ({want_shape})", field=f"{field}.{name}.shape")
            for axis, (have, want) in enumerate(zip(shape, want_shape)):
                if isinstance(have, int) and have > 0 and isinstance(want, int) and have != want:
                    raise BundleError(f"{where}: {name} dimension {axis} is {have}, manifest {field} "
                                      f"says {want}", field=f"{field}.{name}.shape")
            if dtype and dtype != want_dtype:
                raise BundleError(f"{where}: {name} is {dtype}, manifest {field} says {want_dtype}",
                                  field=f"{field}.{name}.dtype")
