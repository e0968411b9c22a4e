"""INT8 graphs: static QDQ (per-channel S8 weights, U8 activations, ranges from a calibration cache) and
dynamic INT8 (CPU), plus the S8-symmetric rewrite that TensorRT needs.

Static: the portable fp32 graph -> ``quant_pre_process`` (ONNX Runtime's symbolic shape inference is
skipped: it mistakes the opset-23 ``Attention`` op for the com.microsoft one and asserts, with or
without ``auto_merge``; ONNX shape inference types every tensor instead) -> ``quantize_static`` in QDQ
format on MatMul / Gemm / Conv, weights per channel, ranges from :mod:`dfma.export.precision.calibration` (no
calibration pass here: the ranges are given). U8 activations / S8 weights is the fast static
configuration of ONNX Runtime on x86 (VNNI); TensorRT takes only symmetric S8, see :func:`to_symmetric_s8`.

Dynamic: ``quantize_dynamic`` on MatMul (weights S8 per channel, activations quantized at run time);
convolutions stay fp32 (ConvInteger is slow on CPU).
"""
from __future__ import annotations

import contextlib
import io
import logging
import tempfile
from collections import Counter
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from dfma.contract.errors import ExportError

STATIC_OPS = ("MatMul", "Gemm", "Conv")
DYNAMIC_OPS = ("MatMul",)
TEXT_INPUTS = ("input_ids", "attention_mask")
IMAGE_INPUTS = ("pixel_values",)


@contextlib.contextmanager
def _quiet():
    """Silence ONNX Runtime's quantization logging and prints (pre-processing advice, progress)."""
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        root.setLevel(level)


def preprocess(src: Path, dst: Path) -> Path:
    """``quant_pre_process`` (ORT basic optimizations + ONNX shape inference) of ``src`` into ``dst``."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    from dfma.contract.weight_store import external_refs
    from dfma.export.weight_store import inline_model

    source = Path(src)
    if external_refs(source):  # ONNX Runtime's optimizer re-saves the graph in a folder without the weight store
        source = Path(dst).with_name(f".{Path(dst).stem}.inline.onnx")
        source.write_bytes(inline_model(src).SerializeToString())
    try:
        with _quiet():
            quant_pre_process(str(source), str(dst), skip_symbolic_shape=True)
    except Exception as exc:
        raise ExportError(f"{Path(src).name}: quantization pre-processing failed: {str(exc)[:500]}") from None
    finally:
        if source != Path(src):
            source.unlink(missing_ok=True)
    return Path(dst)


def reachable_from(model: onnx.ModelProto, inputs: Iterable[str]) -> set[str]:
    """Names of the nodes that (transitively) read any of ``inputs``."""
    live, nodes = set(inputs), set()
    for node in model.graph.node:  # graphs are topologically sorted
        if any(t in live for t in node.input):
            nodes.add(node.name)
            live.update(node.output)
    return nodes


def image_only_nodes(model: onnx.ModelProto, op_types: Sequence[str] = STATIC_OPS) -> list[str]:
    """``op_types`` nodes that depend on the pixels but not on the text: the image encoder.

    Calibrated without images their ranges come from all-zero images and would clip every real one.
    """
    image = reachable_from(model, IMAGE_INPUTS)
    text = reachable_from(model, TEXT_INPUTS)
    return [n.name for n in model.graph.node if n.op_type in op_types and n.name in image and n.name not in text]


def weight_nodes(model: onnx.ModelProto, op_types: Sequence[str] = DYNAMIC_OPS) -> list[str]:
    """Names of the ``op_types`` nodes whose second input is a constant (what dynamic INT8 quantizes)."""
    inits = {t.name for t in model.graph.initializer}
    return [n.name for n in model.graph.node if n.op_type in op_types and len(n.input) > 1 and n.input[1] in inits]


def quantize_static_qdq(pre: Path, out: Path, ranges: dict[str, list[float]], *, exclude: Iterable[str] = (),
                        op_types: Sequence[str] = STATIC_OPS, per_channel: bool = True,
                        activation: str = "u8", reduce_range: bool = False) -> dict:
    """Static QDQ quantization of the pre-processed graph ``pre`` into ``out`` with the given ranges.

    ``exclude``: node names left in fp32. ``activation``: ``u8`` (fast ONNX Runtime CPU kernels) or
    ``s8`` (symmetric, TensorRT). Weights are S8 symmetric (per channel when ``per_channel``), at 7 bits
    with ``reduce_range`` (what CPUs without VNNI compute without saturating).
    Returns :func:`qdq_stats` of the result; raises ExportError when quantization fails.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.calibrate import TensorData, TensorsData, save_tensors_data

    act = {"u8": QuantType.QUInt8, "s8": QuantType.QInt8}[activation]
    data = TensorsData(CalibrationMethod.MinMax, {
        name: TensorData(lowest=np.float32(lo), highest=np.float32(hi)) for name, (lo, hi) in ranges.items()})
    extra = {"ActivationSymmetric": activation == "s8", "WeightSymmetric": True}
    with tempfile.TemporaryDirectory(prefix="dfma-quant-") as tmp:
        cache = Path(tmp) / "ranges.json"
        save_tensors_data(data, cache)
        try:
            with _quiet():
                quantize_static(str(pre), str(out), None, quant_format=QuantFormat.QDQ,
                                op_types_to_quantize=list(op_types), per_channel=per_channel,
                                reduce_range=reduce_range, activation_type=act, weight_type=QuantType.QInt8,
                                nodes_to_exclude=sorted(set(exclude)), calibrate_method=CalibrationMethod.MinMax,
                                calibration_cache_path=str(cache), extra_options=extra)
        except Exception as exc:
            raise ExportError(f"{Path(pre).name}: static quantization failed: {str(exc)[:500]}") from None
    from dfma.export.qdq_concat import quantize_concat_inputs

    model, rewritten = quantize_concat_inputs(str(out))  # the form OpenVINO compiles; exact for ONNX Runtime
    onnx.save(model, str(out))
    return {**qdq_stats(model, op_types), "concats_quantized_on_inputs": len(rewritten)}


def quantize_dynamic_int8(src: Path, out: Path, *, exclude: Iterable[str] = (), per_channel: bool = True,
                          op_types: Sequence[str] = DYNAMIC_OPS, reduce_range: bool = False) -> dict:
    """Dynamic INT8 (S8 weights, 7-bit with ``reduce_range``; activations quantized per call) of ``src``
    into ``out``, leaving the ``exclude`` nodes in fp32; returns stats."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    try:
        with _quiet():
            quantize_dynamic(str(src), str(out), op_types_to_quantize=list(op_types), per_channel=per_channel,
                             reduce_range=reduce_range, nodes_to_exclude=sorted(set(exclude)),
                             weight_type=QuantType.QInt8, extra_options={"MatMulConstBOnly": True})
    except Exception as exc:
        raise ExportError(f"{Path(src).name}: dynamic quantization failed: {str(exc)[:500]}") from None
    model = onnx.load(str(out))
    ops = Counter(n.op_type for n in model.graph.node)
    integer = {k: v for k, v in ops.items() if k in ("MatMulInteger", "DynamicQuantizeLinear", "ConvInteger",
                                                     "DynamicQuantizeMatMul", "MatMulIntegerToFloat")}
    return {"integer_ops": integer, "float_matmul_left": ops.get("MatMul", 0), "conv_fp32": ops.get("Conv", 0),
            "per_channel": per_channel, "weights": "int8 (S8)", "activations": "uint8, quantized at run time"}


def qdq_stats(model: onnx.ModelProto, op_types: Sequence[str] = STATIC_OPS) -> dict:
    """Counts of QuantizeLinear/DequantizeLinear, and which ``op_types`` nodes read dequantized inputs."""
    producer = {o: n for n in model.graph.node for o in n.output}
    inits = {t.name for t in model.graph.initializer}
    quantized, fp32 = Counter(), Counter()
    per_channel = 0
    for node in model.graph.node:
        if node.op_type not in op_types:
            continue
        src = producer.get(node.input[0])
        if src is not None and src.op_type == "DequantizeLinear":
            quantized[node.op_type] += 1
            w = producer.get(node.input[1]) if len(node.input) > 1 else None
            if w is not None and w.op_type == "DequantizeLinear" and w.input[1] in inits:
                scale = numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == w.input[1]))
                per_channel += int(scale.size > 1)
        else:
            fp32[node.op_type] += 1
    ops = Counter(n.op_type for n in model.graph.node)
    return {"quantize_linear": ops.get("QuantizeLinear", 0), "dequantize_linear": ops.get("DequantizeLinear", 0),
            "quantized": dict(quantized), "left_fp32": dict(fp32), "per_channel_weights": per_channel}


def quantized_node_names(model: onnx.ModelProto, op_types: Sequence[str] = STATIC_OPS) -> list[str]:
    """Names of the ``op_types`` nodes whose first input is dequantized (i.e. that run in int8)."""
    producer = {o: n for n in model.graph.node for o in n.output}
    return [n.name for n in model.graph.node if n.op_type in op_types and n.input
            and getattr(producer.get(n.input[0]), "op_type", "") == "DequantizeLinear"]


def to_symmetric_s8(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """Rewrite U8 activation Q/DQ pairs as symmetric S8 (zero point 0) covering the same real range.

    TensorRT accepts only zero-point-0 INT8; the range ``[(0 - zp) * s, (255 - zp) * s]`` becomes
    ``+-amax`` with scale ``amax / 127``. Returns the new model and the number of rewritten zero points.
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    inits = {t.name: t for t in model.graph.initializer}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) >= 3:
            readers.setdefault(node.input[2], []).append(node)
    done = 0
    new_scales: dict[tuple[str, str], str] = {}
    for zp_name, nodes in readers.items():
        zp = inits.get(zp_name)
        if zp is None or zp.data_type != TensorProto.UINT8:
            continue
        z = numpy_helper.to_array(zp).astype(np.float32)
        for node in nodes:
            scale_name = node.input[1]
            key = (scale_name, zp_name)
            if key not in new_scales:
                s = numpy_helper.to_array(inits[scale_name]).astype(np.float32)
                amax = np.maximum(np.abs(-z * s), np.abs((255.0 - z) * s))
                new = f"{scale_name}__s8_{zp_name}"
                model.graph.initializer.append(numpy_helper.from_array(
                    np.maximum(amax / 127.0, np.finfo(np.float32).tiny).astype(np.float32), new))
                new_scales[key] = new
            node.input[1] = new_scales[key]
            keep = [a for a in node.attribute if a.name != "output_dtype"]  # optional: the zero point types it
            del node.attribute[:]
            node.attribute.extend(keep)
        zp.CopyFrom(numpy_helper.from_array(np.zeros(z.shape, dtype=np.int8), zp_name))
        done += 1
    used = {t for n in model.graph.node for t in n.input}
    live = [t for t in model.graph.initializer if t.name in used]
    del model.graph.initializer[:]
    model.graph.initializer.extend(live)  # the replaced uint8 scales
    del model.graph.value_info[:]  # Q outputs changed from uint8 to int8
    return onnx.shape_inference.infer_shapes(model, strict_mode=False), done
