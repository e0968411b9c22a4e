"""FP16 graph from the portable fp32 graph, with overflow-prone ops kept in fp32 (onnx + numpy only).

Rules (the result is a strongly typed graph: every precision change is an explicit ``Cast``):

- a node runs in fp16 when its op type is in :data:`FP16_OPS` (ops whose float inputs and outputs share one
  type), it is not blocked by op type (:data:`DEFAULT_FP32_OPS`: LayerNormalization, Softmax, every
  Reduce*, CumSum, Exp/Log/Pow/Sqrt, ...) or by name, and it touches a float32 tensor;
- every other node keeps fp32 (its reason is recorded: blocked op, blocked node, op not known to be fp16-safe);
- graph inputs and outputs stay float32 (``Cast`` at the boundary);
- float32 initializers used only by fp16 nodes are stored in fp16 (values outside the fp16 range are
  clipped to +-65504, e.g. the ``finfo(float32).min`` of attention masks, and counted); an initializer
  used by both kinds is kept in fp32 and gets an fp16 copy;
- ``Cast(to=FLOAT)`` feeding only fp16 nodes is retargeted to FLOAT16, so no Cast pair is left behind.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from dfma.contract.errors import ExportError

FP16_MAX = float(np.finfo(np.float16).max)

DEFAULT_FP32_OPS: tuple[str, ...] = (
    "LayerNormalization", "SimplifiedLayerNormalization", "RMSNormalization", "GroupNormalization",
    "InstanceNormalization", "BatchNormalization", "Softmax", "LogSoftmax",
    "ReduceSum", "ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1", "ReduceL2",
    "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare", "CumSum",
    "Exp", "Log", "Pow", "Sqrt", "Reciprocal",
)
"""Op types kept in fp32 by default: normalizations, softmax, reductions and overflow-prone math."""

FP16_OPS: frozenset[str] = frozenset({
    "Abs", "Add", "Attention", "AveragePool", "Cast", "Clip", "Concat", "Conv", "ConvTranspose", "Div",
    "Einsum", "Equal", "Erf", "Expand", "Flatten", "Gather", "GatherElements", "Gelu", "Gemm",
    "GlobalAveragePool", "Greater", "HardSigmoid", "Identity", "LeakyRelu", "Less", "MatMul", "Max",
    "MaxPool", "Min", "Mul", "Neg", "Pad", "Relu", "Reshape", "Shape", "Sigmoid", "Slice", "Split",
    "Squeeze", "Sub", "Tanh", "Tile", "Transpose", "Unsqueeze", "Where",
})
"""Ops whose float inputs/outputs all share one type T, so converting T is enough (others stay fp32)."""

FLOAT_TYPES = (TensorProto.FLOAT, TensorProto.FLOAT16)


@dataclass
class FP16Result:
    """The converted model and what was done to it (for the manifest)."""

    model: onnx.ModelProto
    fp16_nodes: list[str]
    kept_fp32: list[dict]  # {"node", "op", "module", "reason"}
    casts_inserted: int
    initializers_fp16: int
    clipped_values: dict[str, int] = field(default_factory=dict)

    def summary(self) -> dict:
        """Manifest-ready description (kept-fp32 list included)."""
        ops = defaultdict(int)
        for k in self.kept_fp32:
            ops[k["op"]] += 1
        return {"nodes_fp16": len(self.fp16_nodes), "nodes_kept_fp32": len(self.kept_fp32),
                "kept_fp32_by_op": dict(sorted(ops.items())), "kept_fp32": self.kept_fp32,
                "casts_inserted": self.casts_inserted, "initializers_fp16": self.initializers_fp16,
                "values_clipped_to_fp16_range": self.clipped_values, "io": "float32 (Cast at the boundary)"}


def module_of(node: onnx.NodeProto) -> str:
    """The PyTorch module a node came from (dynamo's ``pkg.torch.onnx.name_scopes``), or ``""``."""
    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            scopes = [s.strip(" '\"") for s in prop.value.strip("[]").split(",")]
            scopes = [s for s in scopes if s]
            return scopes[-2] if len(scopes) >= 2 else (scopes[0] if scopes else "")
    return ""


def tensor_types(model: onnx.ModelProto) -> dict[str, int]:
    """Element type of every typed tensor (inputs, outputs, initializers, value_info after inference)."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    except Exception as exc:  # onnx raises several kinds
        raise ExportError(f"ONNX shape inference failed on the fp32 graph: {str(exc)[:500]}") from None
    g = inferred.graph
    types = {vi.name: vi.type.tensor_type.elem_type for vi in [*g.input, *g.output, *g.value_info]
             if vi.type.HasField("tensor_type")}
    types.update({t.name: t.data_type for t in g.initializer})
    for node in g.node:
        if node.op_type == "Constant":
            for attr in node.attribute:
                if attr.name == "value":
                    types[node.output[0]] = attr.t.data_type
    return types


def _decide(model: onnx.ModelProto, types: dict[str, int], fp32_ops: set[str], fp32_nodes: set[str]):
    fp16, kept = set(), []
    for node in model.graph.node:
        names = [t for t in [*node.input, *node.output] if t]
        if not any(types.get(t) == TensorProto.FLOAT for t in names) or node.op_type == "Constant":
            continue  # no float tensor (shapes, ids, masks): precision does not apply
        reason = None
        if node.name in fp32_nodes:
            reason = "node blocked by name"
        elif node.op_type in fp32_ops:
            reason = f"{node.op_type} kept fp32 (overflow-prone)"
        elif node.op_type not in FP16_OPS or node.domain not in ("", "ai.onnx"):
            reason = f"{node.domain + '::' if node.domain else ''}{node.op_type} not known to be fp16-safe"
        elif any(t not in types for t in names):
            reason = "untyped tensor (shape inference gave no type)"
        elif node.op_type == "Cast" and not any(a.name == "to" and a.i == TensorProto.FLOAT for a in node.attribute):
            continue  # a Cast to int/bool reads any float type
        if reason:
            kept.append({"node": node.name, "op": node.op_type, "module": module_of(node), "reason": reason})
        else:
            fp16.add(node.name)
    return fp16, kept


def convert_to_fp16(model: onnx.ModelProto, *, fp32_ops=DEFAULT_FP32_OPS, fp32_nodes=()) -> FP16Result:
    """Convert a float32 ONNX model to mixed fp16/fp32 by the rules of this module; returns an FP16Result.

    ``fp32_ops``: op types kept in fp32; ``fp32_nodes``: node names kept in fp32. Raises ExportError when
    the input has no float32 graph or the result fails ``onnx.checker``.
    """
    model = onnx.ModelProto.FromString(model.SerializeToString())
    g = model.graph
    if any(a.type == onnx.AttributeProto.GRAPH for n in g.node for a in n.attribute):
        raise ExportError("fp16 conversion: graphs with control flow (If/Loop/Scan) are not supported")
    types = tensor_types(model)
    fp16, kept = _decide(model, types, set(fp32_ops), set(fp32_nodes))
    consumers: dict[str, list[onnx.NodeProto]] = defaultdict(list)
    for node in g.node:
        for t in node.input:
            consumers[t].append(node)
    graph_outputs = {o.name for o in g.output}

    # Cast(to=FLOAT) nodes whose consumers all run fp16 produce fp16 directly.
    for node in g.node:
        if node.name in fp16 and node.op_type == "Cast":
            out = node.output[0]
            if out in graph_outputs or not all(c.name in fp16 for c in consumers[out]):
                fp16.discard(node.name)  # stays a plain fp32 Cast: reads fp16 or fp32 alike
                continue
            for attr in node.attribute:
                if attr.name == "to":
                    attr.i = TensorProto.FLOAT16

    # precision of every float tensor: "16" or "32"
    prec: dict[str, str] = {}
    for node in g.node:
        for t in node.output:
            if types.get(t) == TensorProto.FLOAT or (node.op_type == "Cast" and node.name in fp16):
                prec[t] = "16" if node.name in fp16 else "32"
    for node in g.node:  # float Constants follow their consumers when all of them run fp16
        if node.op_type == "Constant" and types.get(node.output[0]) == TensorProto.FLOAT:
            if node.output[0] not in graph_outputs and all(c.name in fp16 for c in consumers[node.output[0]]):
                for attr in node.attribute:
                    if attr.name == "value":
                        attr.t.CopyFrom(numpy_helper.from_array(
                            _to_fp16(numpy_helper.to_array(attr.t), node.output[0], {}), node.output[0]))
                prec[node.output[0]] = "16"

    clipped: dict[str, int] = {}
    n_init = 0
    inits = {t.name: t for t in g.initializer}
    copies: dict[str, str] = {}
    for name, init in list(inits.items()):
        if init.data_type != TensorProto.FLOAT:
            continue
        users = consumers.get(name, [])
        if users and all(u.name in fp16 for u in users) and name not in graph_outputs:
            init.CopyFrom(numpy_helper.from_array(_to_fp16(numpy_helper.to_array(init), name, clipped), name))
            prec[name] = "16"
            n_init += 1
        else:
            prec[name] = "32"
            if any(u.name in fp16 for u in users):
                copy = f"{name}__fp16"
                g.initializer.append(numpy_helper.from_array(
                    _to_fp16(numpy_helper.to_array(init), name, clipped), copy))
                copies[name] = copy
                n_init += 1
    for inp in g.input:
        if inp.type.tensor_type.elem_type == TensorProto.FLOAT:
            prec[inp.name] = "32"

    new_nodes: list[onnx.NodeProto] = []
    cast_of: dict[tuple[str, str], str] = {}
    n_casts = 0
    for node in g.node:
        want = "16" if node.name in fp16 else "32"
        passthrough = node.op_type == "Cast"  # reads any type
        for i, t in enumerate(node.input):
            if not t or t not in prec or passthrough or prec[t] == want:
                continue
            if want == "16" and t in copies:
                node.input[i] = copies[t]
                continue
            key = (t, want)
            if key not in cast_of:
                out = f"{t}__to_fp{want}"
                new_nodes.append(helper.make_node(
                    "Cast", [t], [out], name=f"cast_{t}_to_fp{want}",
                    to=TensorProto.FLOAT16 if want == "16" else TensorProto.FLOAT))
                cast_of[key] = out
                n_casts += 1
            node.input[i] = cast_of[key]
        for j, t in enumerate(node.output):
            if t in graph_outputs and prec.get(t) == "16":
                node.output[j] = f"{t}__fp16"
                prec[t] = "32"  # later readers of the output name get the fp32 Cast
                new_nodes.append(node)
                new_nodes.append(helper.make_node("Cast", [f"{t}__fp16"], [t], name=f"cast_{t}_to_fp32",
                                                  to=TensorProto.FLOAT))
                n_casts += 1
                break
        else:
            new_nodes.append(node)
    del g.node[:]
    g.node.extend(new_nodes)
    del g.value_info[:]
    model = onnx.shape_inference.infer_shapes(model, strict_mode=False)
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"fp16 conversion produced an invalid graph: {str(exc)[:500]}") from None
    order = [n.name for n in model.graph.node if n.name in fp16]
    return FP16Result(model, order, kept, n_casts, n_init, clipped)


def _to_fp16(values: np.ndarray, name: str, clipped: dict[str, int]) -> np.ndarray:
    """float32 -> float16, clipping finite values outside +-65504 (counted per tensor in ``clipped``)."""
    over = np.isfinite(values) & (np.abs(values) > FP16_MAX)
    if over.any():
        clipped[name] = int(over.sum())
    return np.clip(values, -FP16_MAX, FP16_MAX).astype(np.float16)


def ort_fp32_fallbacks(path) -> dict[str, int]:
    """op type -> number of fp16 nodes that ONNX Runtime's CPU provider runs in fp32 instead.

    The CPU provider has no fp16 kernel for most ops; it silently wraps them in ``Cast`` nodes
    (``InsertedPrecisionFreeCast_*``), so an fp16 graph "runs" on the CPU without computing in fp16.
    Read from the session's optimized graph (no optimizations but that cast insertion).
    """
    import tempfile
    from pathlib import Path

    from dfma.backends.sessions import ort_session

    with tempfile.TemporaryDirectory(prefix="dfma-fp16-") as tmp:
        saved = Path(tmp) / "session.onnx"
        ort_session(path, optimization="none", save_optimized=saved)
        session_graph = onnx.load(str(saved)).graph
    inserted = {o for n in session_graph.node if n.name.startswith("InsertedPrecisionFreeCast") for o in n.output}
    out: dict[str, int] = defaultdict(int)
    for node in session_graph.node:
        if not node.name.startswith("InsertedPrecisionFreeCast") and any(t in inserted for t in node.input):
            out[node.op_type] += 1
    return dict(sorted(out.items()))
