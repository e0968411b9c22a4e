"""Quantize a Concat's inputs instead of its output: the QDQ graph OpenVINO compiles, unchanged for ONNX Runtime.

``quantize_static`` leaves ``Concat -> QuantizeLinear -> DequantizeLinear -> MatMul`` where a Concat joins
MMF's null token (plain float) with the image tokens (a DequantizeLinear output) along an axis of fixed
size (1 + 4 slots x 16 tokens = 65). OpenVINO 2026.4's low-precision transformations then move the
fake-quantize above the Concat, build one zero point per token ``u8[1,65,1]`` and fail to broadcast it
in the MatMul ("Input shape dimension equal 65 cannot be broadcasted"). Quantizing each input with the
same scale and zero point and concatenating the integers is the same arithmetic (quantizing a
concatenation is concatenating the quantized parts): ONNX Runtime's logits are bit-identical, and OpenVINO
compiles the graph with every MatMul in int8.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper


def quantize_concat_inputs(model: onnx.ModelProto | str) -> tuple[onnx.ModelProto, list[str]]:
    """Rewrite every ``x_0..x_n -> Concat -> QuantizeLinear(s, z) -> T`` (per-tensor ``s, z``; the Concat
    read only by that Q) into ``x_i -> QuantizeLinear(s, z) -> Concat (uint8/int8) -> T``, using ``q_i``
    directly where ``x_i = DequantizeLinear(q_i; s, z)`` with the same ``s, z``. Returns the new model
    and the names of the rewritten Concats (module doc: why)."""
    model = onnx.load(model) if isinstance(model, str) else onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    inits = {t.name: t for t in g.initializer}
    producer = {o: n for n in g.node for o in n.output}
    readers: dict[str, list[onnx.NodeProto]] = {}
    for n in g.node:
        for i in n.input:
            readers.setdefault(i, []).append(n)
    graph_outputs = {o.name for o in g.output}

    def const(name):
        return numpy_helper.to_array(inits[name]) if name in inits else None

    def same(a, b):
        x, y = const(a), const(b)
        return a == b or (x is not None and y is not None and x.dtype == y.dtype and x.shape == y.shape
                          and np.array_equal(x, y))

    before: dict[int, list[onnx.NodeProto]] = {}   # id(old Concat) -> nodes that replace it
    drop: set[int] = set()
    done: list[str] = []
    for n in g.node:
        if n.op_type != "Concat" or n.output[0] in graph_outputs:
            continue
        rd = readers.get(n.output[0], [])
        if len(rd) != 1 or rd[0].op_type != "QuantizeLinear" or len(rd[0].input) < 3:
            continue
        q = rd[0]
        s, z = const(q.input[1]), const(q.input[2])
        if s is None or z is None or s.size != 1 or z.size != 1:
            continue  # per-tensor, initializer-valued Q only
        q_attrs = {a.name: helper.get_attribute_value(a) for a in q.attribute}
        new_inputs, new_nodes = [], []
        for k, x in enumerate(n.input):
            src = producer.get(x)
            if (src is not None and src.op_type == "DequantizeLinear" and len(src.input) >= 3
                    and same(src.input[1], q.input[1]) and same(src.input[2], q.input[2])):
                new_inputs.append(src.input[0])  # already quantized with (s, z)
            else:
                t = f"{n.output[0]}__quantized_in{k}"
                new_nodes.append(helper.make_node("QuantizeLinear", [x, q.input[1], q.input[2]], [t],
                                                  name=f"{n.name}__quantize_in{k}", **q_attrs))
                new_inputs.append(t)
        axis = next(helper.get_attribute_value(a) for a in n.attribute if a.name == "axis")
        new_nodes.append(helper.make_node("Concat", new_inputs, [q.output[0]], name=n.name, axis=axis))
        before[id(n)] = new_nodes
        drop.update({id(n), id(q)})
        done.append(n.name)

    nodes = []
    for n in g.node:
        nodes.extend(before.get(id(n), []))
        if id(n) not in drop:
            nodes.append(n)
    # drop DequantizeLinear nodes nobody reads any more
    while True:
        used = {i for n in nodes for i in n.input} | graph_outputs
        dead = [n for n in nodes if n.op_type == "DequantizeLinear" and n.output[0] not in used]
        if not dead:
            break
        nodes = [n for n in nodes if n not in dead]
    del g.node[:]
    g.node.extend(nodes)
    live = {t for n in nodes for t in list(n.input) + list(n.output)}
    keep = [v for v in g.value_info if v.name in live]
    del g.value_info[:]
    g.value_info.extend(keep)
    return model, done
