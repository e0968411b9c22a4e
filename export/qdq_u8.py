"""Rewrite a QDQ graph's S8 activation Q/DQ pairs as U8 over exactly the same values.

NNCF writes activations as INT8 with an asymmetric zero point. ONNX Runtime's CPU kernels want U8
activations and convert S8 ones itself, and on NNCF's opset-23 output that conversion leaves a
``QuantizeLinear`` whose ``output_dtype`` (INT8) contradicts its new UINT8 zero point, so the session fails to
load ("output_dtype INT8 does not match y_zero_point type UINT8"). Written as U8 in the file, the graph loads
and keeps ONNX Runtime's QDQ fusions.

The rewrite is exact: with ``zp' = zp + 128`` (an INT8 zero point in [-128, 127] becomes a UINT8 one in
[0, 255]), ``QuantizeLinear`` gives ``clip(round(x / s) + zp + 128, 0, 255) = q + 128`` and
``DequantizeLinear`` gives ``(q + 128 - zp') * s = (q - zp) * s``: every dequantized value is the same.
Weights (constant INT8 tensors read by a ``DequantizeLinear`` alone) stay S8.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import TensorProto, numpy_helper

from dfma.contract.errors import ExportError

Q, DQ = "QuantizeLinear", "DequantizeLinear"


@dataclass(frozen=True)
class U8Rewrite:
    """What :func:`activations_to_u8` changed."""

    pairs: int  # activation QuantizeLinear nodes rewritten (with every DequantizeLinear reading them)
    dequantize: int  # DequantizeLinear nodes rewritten
    already_u8: int  # activation QuantizeLinear nodes that were U8 already (left as they are)


def _zero_point(inits: dict, node: onnx.NodeProto) -> TensorProto | None:
    if len(node.input) < 3 or not node.input[2]:
        return None
    zp = inits.get(node.input[2])
    if zp is None:
        raise ExportError(f"node {node.name!r} ({node.op_type}): zero point {node.input[2]!r} is not a constant "
                          "initializer; cannot rewrite it to U8")
    return zp


def _u8(inits: dict, model: onnx.ModelProto, zp: TensorProto, made: dict) -> str:
    """The name of a UINT8 initializer holding ``zp + 128`` (made once per INT8 zero point)."""
    if zp.name not in made:
        values = numpy_helper.to_array(zp).astype(np.int16) + 128
        name = f"{zp.name}__u8"
        while name in inits:
            name += "_"
        tensor = numpy_helper.from_array(values.astype(np.uint8), name)
        model.graph.initializer.append(tensor)
        inits[name] = tensor
        made[zp.name] = name
    return made[zp.name]


def activations_to_u8(model: onnx.ModelProto) -> tuple[onnx.ModelProto, U8Rewrite]:
    """A copy of ``model`` with every INT8 activation Q/DQ pair written as UINT8 (module doc: exact).

    An activation ``QuantizeLinear`` is one whose input is not an initializer; each ``DequantizeLinear`` reading
    its output is rewritten with it (its own zero point + 128). An ``output_dtype`` attribute on the quantize
    node is set to UINT8, and the quantized tensor's recorded type too. ExportError when such a quantized tensor
    is read by anything but ``DequantizeLinear`` or a zero point is not a constant.
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    graph = model.graph
    inits = {t.name: t for t in graph.initializer}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            readers.setdefault(name, []).append(node)
    graph_outputs = {o.name for o in graph.output}
    made: dict[str, str] = {}
    pairs = dequantize = already = 0
    retyped: set[str] = set()
    for node in list(graph.node):
        if node.op_type != Q or node.input[0] in inits:
            continue
        zp = _zero_point(inits, node)
        if zp is None or zp.data_type == TensorProto.UINT8:
            already += 1
            continue
        if zp.data_type != TensorProto.INT8:
            continue  # 16-bit or other activations: not this rewrite's business
        out = node.output[0]
        consumers = readers.get(out, [])
        bad = [c for c in consumers if c.op_type != DQ]
        if bad or out in graph_outputs:
            raise ExportError(f"node {node.name!r}: its quantized output {out!r} is read by "
                              f"{[c.op_type + ' ' + c.name for c in bad] or ['the graph output']}, not only by "
                              "DequantizeLinear; cannot rewrite the pair to U8")
        node.input[2] = _u8(inits, model, zp, made)
        for attr in node.attribute:
            if attr.name == "output_dtype":
                attr.i = TensorProto.UINT8
        retyped.add(out)
        for dq in consumers:
            dq_zp = _zero_point(inits, dq)
            if dq_zp is None or dq_zp.data_type != TensorProto.INT8:
                raise ExportError(f"node {dq.name!r}: dequantizes the INT8 tensor {out!r} with zero point "
                                  f"{dq.input[2] if len(dq.input) > 2 else '(none)'} that is not INT8")
            dq.input[2] = _u8(inits, model, dq_zp, made)
            dequantize += 1
        pairs += 1
    for info in graph.value_info:
        if info.name in retyped and info.type.HasField("tensor_type"):
            info.type.tensor_type.elem_type = TensorProto.UINT8
    used = {name for node in graph.node for name in node.input}
    for name in list(made):  # the INT8 zero points no node reads any more
        if name not in used:
            graph.initializer.remove(inits[name])
    return model, U8Rewrite(pairs, dequantize, already)


def qdq_types(model: onnx.ModelProto) -> dict[str, dict[str, int]]:
    """Counts of Q/DQ zero-point types: ``{"activations": {"uint8": n, ...}, "weights": {"int8": n, ...}}``
    (activation: a ``QuantizeLinear`` of a computed tensor; weight: a ``DequantizeLinear`` of an initializer)."""
    inits = {t.name: t for t in model.graph.initializer}
    out: dict[str, dict[str, int]] = {"activations": {}, "weights": {}}
    for node in model.graph.node:
        if node.op_type == Q and node.input[0] not in inits:
            part = "activations"
        elif node.op_type == DQ and node.input[0] in inits:
            part = "weights"
        else:
            continue
        zp = inits.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
        kind = TensorProto.DataType.Name(zp.data_type).lower() if zp is not None else "none"
        out[part][kind] = out[part].get(kind, 0) + 1
    return out
