"""Triton ``config.pbtxt`` files for a DFMA bundle, generated from its manifest (no Triton needed).

Four kinds of model make up a repository (``export/to_triton.py``):

- the network: ``onnxruntime_onnx`` or ``tensorrt_plan``, its inputs/outputs copied from the manifest's
  ``io`` section (names, dtypes, dims without the batch axis, ``-1`` for dynamic axes), with
  ``max_batch_size``, ``dynamic_batching`` and ``instance_group``; or, in the two-stage layout, two such
  models, ``vision`` and ``text``, their IO from the manifest's ``stages`` section, meeting at
  ``image_features``, each with its own dynamic batcher (vision forms larger batches: :func:`stage_batching`);
- ``<name>_preprocess`` (Python backend): raw request tensors (:data:`RAW_INPUTS`) -> the network inputs;
- ``<name>_postprocess`` (Python backend): ``logits`` -> :data:`RESULT_OUTPUTS`;
- ``<name>`` (ensemble): raw request -> preprocess -> network(s) -> postprocess -> result.

Configs are built as nested dicts and written by :func:`to_pbtxt` (protobuf text format); tests parse
them with Triton's own schema (``tritonclient.grpc.model_config_pb2``), and :func:`validate_pbtxt` does
so at export time when ``tritonclient`` is installed.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from dfma.contract.errors import BundleError, ExportError
from dfma.contract.graphs import STAGES
from dfma.contract.io_spec import FEATURES_NAME
from dfma.contract.manifest import IoSpec, Manifest

BATCH_AXIS = "batch"
DTYPES = {  # manifest dtype -> Triton data type
    "bool": "TYPE_BOOL", "uint8": "TYPE_UINT8", "int8": "TYPE_INT8", "int16": "TYPE_INT16",
    "int32": "TYPE_INT32", "int64": "TYPE_INT64", "float16": "TYPE_FP16", "float32": "TYPE_FP32",
    "float64": "TYPE_FP64", "bfloat16": "TYPE_BF16", "string": "TYPE_STRING", "bytes": "TYPE_STRING",
}
DEFAULT_QUEUE_DELAY_US = 1000
PAD_PARAMETER = "pad_to_max_length"


@dataclass(frozen=True)
class Enum:
    """A protobuf enum value (written unquoted)."""

    name: str


@dataclass(frozen=True)
class RawTensor:
    """One tensor of the ensemble's request/response interface (dims exclude the batch axis)."""

    name: str
    data_type: str
    dims: tuple[int, ...]
    optional: bool = False
    doc: str = ""

    def config(self) -> dict:
        """The ``input``/``output`` entry."""
        out: dict[str, Any] = {"name": self.name, "data_type": Enum(self.data_type), "dims": list(self.dims)}
        if self.optional:
            out["optional"] = True
        return out


RAW_INPUTS = (
    RawTensor("TOKENS", "TYPE_STRING", (-1,), doc="the sentence's words, UTF-8 (MNRE 'token'); rows of a "
              "multi-sample request are right-padded with empty strings, which are ignored"),
    RawTensor("HEAD", "TYPE_INT64", (2,), doc="head entity word span [start, end), end exclusive"),
    RawTensor("TAIL", "TYPE_INT64", (2,), doc="tail entity word span [start, end), end exclusive"),
    RawTensor("IMAGE", "TYPE_STRING", (1,), doc="the post's image file bytes (JPEG, PNG, ...); empty = no image"),
    RawTensor("CROPS", "TYPE_STRING", (-1,), optional=True,
              doc="up to num_crops object-crop file bytes; empty = that slot absent; the input may be left out"),
)
LOGITS_INPUT = "logits"


def result_outputs(num_labels: int) -> tuple[RawTensor, ...]:
    """The ensemble's (and the postprocess model's) outputs for ``num_labels`` relations."""
    return (
        RawTensor("LABEL", "TYPE_STRING", (1,), doc="the top-1 relation name, UTF-8"),
        RawTensor("PROBABILITY", "TYPE_FP32", (1,), doc="its softmax probability"),
        RawTensor("PROBABILITIES", "TYPE_FP32", (num_labels,), doc="every relation's probability, label order"),
    )


# ---------------------------------------------------------------- manifest io -> Triton tensors

def triton_dtype(dtype: Any, *, where: str) -> str:
    """The Triton ``TYPE_*`` of a manifest dtype; BundleError naming ``where`` for an unknown one."""
    if not isinstance(dtype, str) or dtype not in DTYPES:
        raise BundleError(f"manifest.json: {where}: dtype {dtype!r} has no Triton type "
                          f"(known: {sorted(DTYPES)})")
    return DTYPES[dtype]


def tensor_config(spec: Any, *, where: str) -> dict:
    """A manifest ``io`` entry as a batched Triton tensor: the batch axis dropped, other names -> -1.

    The first axis must be the symbolic ``batch`` (Triton's ``max_batch_size`` adds it back); every other
    axis is a positive int or a symbolic name. Raises BundleError naming the entry and the field.
    """
    if not isinstance(spec, Mapping):
        raise BundleError(f"manifest.json: {where}: expected an object with name, dtype and shape")
    name, shape = spec.get("name"), spec.get("shape")
    if not isinstance(name, str) or not name:
        raise BundleError(f"manifest.json: {where}: field 'name' must be a non-empty string, got {name!r}")
    if not isinstance(shape, list) or not shape:
        raise BundleError(f"manifest.json: {where} ({name}): field 'shape' must be a non-empty list, got {shape!r}")
    if shape[0] != BATCH_AXIS:
        raise BundleError(f"manifest.json: {where} ({name}): the first axis must be the dynamic "
                          f"{BATCH_AXIS!r} axis, got {shape[0]!r}")
    dims = []
    for i, d in enumerate(shape[1:], start=1):
        if isinstance(d, str) and d:
            dims.append(-1)
        elif isinstance(d, int) and not isinstance(d, bool) and d > 0:
            dims.append(d)
        else:
            raise BundleError(f"manifest.json: {where} ({name}): axis {i} is {d!r}; expected a positive int "
                              "or a symbolic name")
    return {"name": name, "data_type": Enum(triton_dtype(spec.get("dtype"), where=f"{where} ({name})")),
            "dims": dims}


def io_tensors(io: IoSpec | Mapping | None, *, section: str = "io") -> tuple[list[dict], list[dict]]:
    """``(inputs, outputs)`` Triton tensor configs of a manifest ``io`` section (typed, ``Manifest.io``, or
    its JSON), or of a stage's (``section="stages.vision"``); BundleError naming the section and field if
    malformed."""
    if isinstance(io, IoSpec):
        io = io.to_json()
    if not isinstance(io, Mapping):
        raise BundleError(f"manifest.json: field {section!r} must be an object with 'inputs' and 'outputs'")
    result = []
    for key in ("inputs", "outputs"):
        specs = io.get(key)
        if not isinstance(specs, list) or not specs:
            raise BundleError(f"manifest.json: {section}.{key} must be a non-empty list, got {specs!r:.80}")
        tensors = [tensor_config(s, where=f"{section}.{key}[{i}]") for i, s in enumerate(specs)]
        names = [t["name"] for t in tensors]
        if len(set(names)) != len(names):
            raise BundleError(f"manifest.json: {section}.{key} repeats a name: {names}")
        result.append(tensors)
    if len(result[1]) != 1:
        raise BundleError(f"manifest.json: {section}.outputs must hold exactly one tensor (the logits, or "
                          f"{FEATURES_NAME} for the vision stage), got {len(result[1])} outputs")
    return result[0], result[1]


def stages_io(manifest: Manifest | Mapping) -> dict[str, IoSpec]:
    """``{stage: io}`` of the manifest's ``stages`` section, checked for the two-stage layout: ``vision``
    takes contract inputs and gives ``image_features``; ``text`` takes contract inputs and those features
    (same dtype and dims) and gives the contract's logits. BundleError naming the field otherwise."""
    manifest = Manifest.from_json(manifest)
    stages = manifest.stages
    if stages is None:
        raise BundleError("manifest.json: field 'stages' (the two-stage graphs' io) is missing or not an object",
                          field="stages")
    contract_in, contract_out = io_tensors(manifest.io)
    known = {t["name"]: t for t in contract_in}
    tensors = {stage: io_tensors(stages.io(stage), section=f"stages.{stage}") for stage in STAGES}
    (v_in, v_out), (t_in, t_out) = tensors["vision"], tensors["text"]
    if v_out[0]["name"] != FEATURES_NAME:
        raise BundleError(f"manifest.json: stages.vision.outputs is {v_out[0]['name']!r}, expected {FEATURES_NAME!r}")
    features = {FEATURES_NAME: v_out[0]}
    for stage, ins, allowed in (("vision", v_in, known), ("text", t_in, {**known, **features})):
        for i, t in enumerate(ins):
            if t["name"] not in allowed:
                raise BundleError(f"manifest.json: stages.{stage}.inputs[{i}] ({t['name']}) is neither a contract "
                                  f"input (io.inputs) nor {FEATURES_NAME!r} from the vision stage")
            if t != allowed[t["name"]]:
                raise BundleError(f"manifest.json: stages.{stage}.inputs[{i}] ({t['name']}): dtype/dims "
                                  f"{t['data_type'].name} {t['dims']} differ from where it comes from "
                                  f"({allowed[t['name']]['data_type'].name} {allowed[t['name']]['dims']})")
    if FEATURES_NAME not in {t["name"] for t in t_in}:
        raise BundleError(f"manifest.json: stages.text.inputs lacks {FEATURES_NAME!r}")
    if t_out != contract_out:
        raise BundleError(f"manifest.json: stages.text.outputs ({t_out[0]['name']}) must be io.outputs "
                          f"({contract_out[0]['name']}), same dtype and dims")
    return {stage: stages.io(stage) for stage in STAGES}


# ---------------------------------------------------------------- model configs

def preferred_batch_sizes(max_batch: int) -> list[int]:
    """Batch sizes the dynamic batcher tries to form: a quarter, half and all of ``max_batch``."""
    return sorted({max(1, max_batch // 4), max(1, max_batch // 2), max_batch})


def stage_batching(stage: str, max_batch: int, queue_delay_us: int, vision_queue_delay_us: int) -> dict:
    """The ``dynamic_batching`` of a two-stage model. ``vision`` (the image encoder: most of the FLOPs, and
    its batches are free of the sequence length) waits longer for half or all of ``max_batch``; ``text``
    batches like the whole network (a quarter, half or all, ``queue_delay_us``)."""
    if stage not in STAGES:
        raise ExportError(f"unknown stage {stage!r}; the stages are {list(STAGES)}")
    if stage == "vision":
        return {"preferred_batch_size": sorted({max(1, max_batch // 2), max_batch}),
                "max_queue_delay_microseconds": vision_queue_delay_us}
    return {"preferred_batch_size": preferred_batch_sizes(max_batch), "max_queue_delay_microseconds": queue_delay_us}


def _instance_group(count: int, kind: str) -> list[dict]:
    if kind not in ("cpu", "gpu"):
        raise ExportError(f"--kind must be cpu or gpu, got {kind!r}")
    return [{"count": count, "kind": Enum("KIND_GPU" if kind == "gpu" else "KIND_CPU")}]


def network_config(name: str, io: IoSpec | Mapping, *, platform: str, filename: str, max_batch: int, instances: int,
                   kind: str, queue_delay_us: int = DEFAULT_QUEUE_DELAY_US, batching: Mapping | None = None,
                   section: str = "io") -> dict:
    """The ``onnxruntime_onnx`` / ``tensorrt_plan`` model: manifest IO (``io``, or a stage's, named by
    ``section``), dynamic batching (``batching``, default: :func:`preferred_batch_sizes`), instances."""
    if platform not in ("onnxruntime_onnx", "tensorrt_plan"):
        raise ExportError(f"unsupported platform {platform!r}")
    inputs, outputs = io_tensors(io, section=section)
    if batching is None:
        batching = {"preferred_batch_size": preferred_batch_sizes(max_batch),
                    "max_queue_delay_microseconds": queue_delay_us}
    return {
        "name": name, "platform": platform, "max_batch_size": max_batch,
        "input": inputs, "output": outputs,
        "dynamic_batching": dict(batching),
        "instance_group": _instance_group(instances, kind),
        "default_model_filename": filename,
    }


def _parameters(values: Mapping[str, str]) -> list[dict]:
    return [{"key": k, "value": {"string_value": v}} for k, v in values.items()]


def preprocess_config(name: str, io: IoSpec | Mapping, *, max_batch: int, instances: int,
                      pad_to_max_length: bool) -> dict:
    """The Python-backend model: :data:`RAW_INPUTS` -> the network's inputs (same names, dtypes, dims)."""
    inputs, _ = io_tensors(io)
    return {
        "name": name, "backend": "python", "max_batch_size": max_batch,
        "input": [t.config() for t in RAW_INPUTS], "output": inputs,
        "instance_group": _instance_group(instances, "cpu"),
        "parameters": _parameters({PAD_PARAMETER: "true" if pad_to_max_length else "false"}),
    }


def postprocess_config(name: str, io: IoSpec | Mapping, *, num_labels: int, max_batch: int, instances: int) -> dict:
    """The Python-backend model: the network's logits -> :func:`result_outputs`."""
    _, outputs = io_tensors(io)
    logits = outputs[0]
    if logits["dims"] != [num_labels] or logits["data_type"].name != "TYPE_FP32":
        raise BundleError(f"manifest.json: io.outputs[0] ({logits['name']}): expected float32 "
                          f"[batch, {num_labels}] for {num_labels} labels, got "
                          f"{logits['data_type'].name} dims {logits['dims']}")
    return {
        "name": name, "backend": "python", "max_batch_size": max_batch,
        "input": [logits], "output": [t.config() for t in result_outputs(num_labels)],
        "instance_group": _instance_group(instances, "cpu"),
    }


def ensemble_config(name: str, io: IoSpec | Mapping, *, num_labels: int, max_batch: int, preprocess: str,
                    networks: Sequence[tuple[str, Mapping]], postprocess: str) -> dict:
    """The ensemble wiring preprocess -> each network in order -> postprocess (no instance_group:
    ensembles take none). ``networks``: ``(model name, its io)``, e.g. ``[(onnx, io)]`` or
    ``[(vision, stages.vision), (text, stages.text)]``.

    Internal tensors carry the graphs' own input/output names; every network input must come from the
    preprocess model or an earlier network, and the last network must give the logits (ExportError).
    """
    inputs, outputs = io_tensors(io)

    def same(names: Sequence[str]) -> list[dict]:
        return [{"key": n, "value": n} for n in names]

    if not networks:
        raise ExportError("an ensemble needs at least one network model")
    raw = [t.name for t in RAW_INPUTS]
    results = [t.name for t in result_outputs(num_labels)]
    available = [t["name"] for t in inputs]
    steps = [{"model_name": preprocess, "model_version": -1, "input_map": same(raw), "output_map": same(available)}]
    for model, model_io in networks:
        n_in, n_out = io_tensors(model_io, section=f"io of {model}")
        missing = [t["name"] for t in n_in if t["name"] not in available]
        if missing:
            raise ExportError(f"ensemble {name}: {model} needs {missing}, which no earlier step produces "
                              f"(available: {available})")
        steps.append({"model_name": model, "model_version": -1, "input_map": same([t["name"] for t in n_in]),
                      "output_map": same([t["name"] for t in n_out])})
        available += [t["name"] for t in n_out]
    logits = outputs[0]["name"]
    if steps[-1]["output_map"] != same([logits]):
        raise ExportError(f"ensemble {name}: the last network ({networks[-1][0]}) must output {logits!r}")
    steps.append({"model_name": postprocess, "model_version": -1, "input_map": same([logits]),
                  "output_map": same(results)})
    return {
        "name": name, "platform": "ensemble", "max_batch_size": max_batch,
        "input": [t.config() for t in RAW_INPUTS],
        "output": [t.config() for t in result_outputs(num_labels)],
        "ensemble_scheduling": {"step": steps},
    }


# ---------------------------------------------------------------- text format

def _quote(text: str) -> str:
    out = []
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ord(ch) < 0x20 or ch == "\x7f":
            out.append(f"\\{ord(ch):03o}")
        else:
            out.append(ch)
    return '"' + "".join(out) + '"'


def _scalar(value: Any) -> str:
    if isinstance(value, Enum):
        return value.name
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ExportError(f"config value {value!r} is not finite")
        return repr(value)
    if isinstance(value, str):
        return _quote(value)
    raise ExportError(f"cannot write {type(value).__name__} {value!r} to a config.pbtxt")


def _lines(message: Mapping, indent: int) -> list[str]:
    pad, lines = "  " * indent, []
    for key, value in message.items():
        if isinstance(value, Mapping):
            lines += [f"{pad}{key} {{", *_lines(value, indent + 1), f"{pad}}}"]
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, Mapping) for v in value):
            lines.append(f"{pad}{key} [")
            for i, item in enumerate(value):
                lines += [f"{pad}  {{", *_lines(item, indent + 2), f"{pad}  }}{',' if i < len(value) - 1 else ''}"]
            lines.append(f"{pad}]")
        elif isinstance(value, (list, tuple)):
            lines.append(f"{pad}{key}: [ {', '.join(_scalar(v) for v in value)} ]")
        else:
            lines.append(f"{pad}{key}: {_scalar(value)}")
    return lines


def to_pbtxt(config: Mapping) -> str:
    """A config dict (scalars, :class:`Enum`, dicts, lists) in protobuf text format, newline-terminated."""
    return "\n".join(_lines(config, 0)) + "\n"


def validate_pbtxt(text: str, *, where: str) -> bool:
    """Parse ``text`` with Triton's ``ModelConfig`` schema when ``tritonclient`` is installed.

    Returns False when it is not (nothing checked); raises ExportError naming ``where`` on a parse error.
    """
    try:
        from google.protobuf import text_format
        from tritonclient.grpc import model_config_pb2
    except Exception:  # tritonclient or protobuf absent or incompatible: the tests check the schema
        return False
    try:
        text_format.Parse(text, model_config_pb2.ModelConfig())
    except text_format.ParseError as e:
        raise ExportError(f"{where}: generated config does not match Triton's schema ({e})") from None
    return True
