"""INT8 embedding tables: gather the int8 rows first, then dequantize only those rows.

The INT8 recipes quantize MatMul / Gemm / Conv; the text encoder's word-embedding table (a ``Gather`` of
an fp32 ``[V, D]`` initializer: 30,526 x 384 = 47 MB of the MiniLM bundle's 86 MB INT8 graph) would stay
fp32. :func:`quantize_embeddings` rewrites each such ``Gather`` as::

    Gather(table_int8[V, D], ids) -> Cast(float) -> Mul(Gather(scales[V, 1], ids))

with symmetric per-row scales (``scale = max|row| / 127``, zero point 0, rows rounded to nearest and
clipped to [-127, 127]). Written the other way, ``DequantizeLinear(table) -> Gather``, ONNX Runtime
dequantizes the whole table on every run (slow at batch 1: design/DFMA.md); here only the gathered rows
are. The rewritten output keeps its name, dtype (fp32) and shape, so everything after it is unchanged.

A table qualifies when it is a float32 rank-2 initializer of at least :data:`MIN_BYTES`, read only by
``Gather`` nodes on axis 0 as their data input (a table also read by another op, e.g. a tied output
projection, stays fp32: quantizing it for the Gather alone would save nothing). The position table of
MiniLM (512 x 384, 0.8 MB, read by ``Slice``) and token-type tables (2 rows) are below the bound: their
share of the graph is under 1 %.

:func:`expand_embeddings` undoes the rewrite (an fp32 table holding exactly the dequantized values) for
consumers that take int8 only through Q/DQ (TensorRT).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

MIN_BYTES = 1 << 20  # tables smaller than 1 MiB are left fp32 (the MiniLM position table is 0.75 MiB)
SCALES_SUFFIX = "__int8_row_scales"
TABLE_SUFFIX = "__int8_rows"
DOMAIN = "dfma.embedding_int8"  # marks the nodes the rewrite adds (their names start with it)


def quantize_rows(table: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(int8 [V, D], fp32 scales [V, 1])``: symmetric per-row quantization of an fp32 table (an all-zero
    row gets scale 1)."""
    table = np.asarray(table, dtype=np.float32)
    amax = np.abs(table).max(axis=1, keepdims=True)
    scales = np.where(amax > 0, amax / np.float32(127.0), np.float32(1.0)).astype(np.float32)
    q = np.clip(np.rint(table / scales), -127, 127).astype(np.int8)
    return q, scales


def _readers(model: onnx.ModelProto) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = {}
    for node in model.graph.node:
        for name in node.input:
            out.setdefault(name, []).append(node)
    return out


def _axis(node: onnx.NodeProto) -> int:
    return next((a.i for a in node.attribute if a.name == "axis"), 0)


def candidate_tables(model: onnx.ModelProto, min_bytes: int = MIN_BYTES) -> list[str]:
    """Names of the initializers the rewrite quantizes (module doc), in initializer order."""
    readers = _readers(model)
    graph_outputs = {o.name for o in model.graph.output}
    out = []
    for init in model.graph.initializer:
        if init.data_type != TensorProto.FLOAT or len(init.dims) != 2 or init.name in graph_outputs:
            continue
        if int(np.prod(init.dims)) * 4 < min_bytes or init.data_location == TensorProto.EXTERNAL:
            continue
        nodes = readers.get(init.name, [])
        if nodes and all(n.op_type == "Gather" and n.domain in ("", "ai.onnx") and n.input[0] == init.name
                         and init.name not in n.input[1:] and _axis(n) == 0 for n in nodes):
            out.append(init.name)
    return out


def quantize_embeddings(model: onnx.ModelProto, min_bytes: int = MIN_BYTES) -> tuple[onnx.ModelProto, dict]:
    """The model with every qualifying embedding table (module doc) stored int8 with per-row scales and
    gathered before it is dequantized; returns ``(model, stats)`` (``stats``: per table its shape and bytes
    before / after, and the largest per-element rounding error). The input model is not changed."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    names = candidate_tables(model, min_bytes)
    if not names:
        return model, {"tables": {}}
    inits = {t.name: t for t in model.graph.initializer}
    readers = _readers(model)
    stats: dict = {"tables": {}}
    new_nodes: dict[int, list[onnx.NodeProto]] = {}  # position of the Gather -> what replaces it
    for name in names:
        table = numpy_helper.to_array(inits[name]).astype(np.float32)
        q, scales = quantize_rows(table)
        q_name, s_name = f"{name}{TABLE_SUFFIX}", f"{name}{SCALES_SUFFIX}"
        model.graph.initializer.append(numpy_helper.from_array(q, q_name))
        model.graph.initializer.append(numpy_helper.from_array(scales, s_name))
        for k, gather in enumerate(readers[name]):
            out, ids = gather.output[0], gather.input[1]
            base = f"{DOMAIN}/{gather.name or name}/{k}"
            new_nodes[id(gather)] = [
                helper.make_node("Gather", [q_name, ids], [f"{base}/rows"], name=f"{base}/gather_rows", axis=0),
                helper.make_node("Cast", [f"{base}/rows"], [f"{base}/rows_f32"], name=f"{base}/cast",
                                 to=TensorProto.FLOAT),
                helper.make_node("Gather", [s_name, ids], [f"{base}/scales"], name=f"{base}/gather_scales", axis=0),
                helper.make_node("Mul", [f"{base}/rows_f32", f"{base}/scales"], [out], name=f"{base}/dequantize"),
            ]
        error = float(np.abs(q.astype(np.float32) * scales - table).max())
        stats["tables"][name] = {"shape": list(table.shape), "fp32_bytes": int(table.nbytes),
                                 "int8_bytes": int(q.nbytes + scales.nbytes), "readers": len(readers[name]),
                                 "max_abs_rounding": error}
    nodes = []
    for node in model.graph.node:
        nodes.extend(new_nodes.get(id(node), [node]))
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    live = [t for t in model.graph.initializer if t.name not in names]
    del model.graph.initializer[:]
    model.graph.initializer.extend(live)
    return model, stats


def quantize_embeddings_file(path, min_bytes: int = MIN_BYTES) -> dict:
    """:func:`quantize_embeddings` of a graph file, written back in place; returns its stats."""
    model, stats = quantize_embeddings(onnx.load(str(path)), min_bytes)
    if stats["tables"]:
        onnx.save(model, str(path))
    return stats


def int8_tables(model: onnx.ModelProto) -> dict[str, list[int]]:
    """``{int8 table: shape}`` of the tables the rewrite made in ``model``."""
    return {t.name[:-len(TABLE_SUFFIX)]: list(t.dims) for t in model.graph.initializer
            if t.name.endswith(TABLE_SUFFIX) and t.data_type == TensorProto.INT8}


def expand_embeddings(model: onnx.ModelProto) -> tuple[onnx.ModelProto, int]:
    """Undo :func:`quantize_embeddings`: each int8 table becomes an fp32 table holding exactly the values
    the rewritten graph computes (``float(q) * scale``) and is gathered directly; returns ``(model, tables
    expanded)``. For consumers that read int8 only through Q/DQ (TensorRT)."""
    model = onnx.ModelProto.FromString(model.SerializeToString())
    inits = {t.name: t for t in model.graph.initializer}
    tables = [n for n in inits if n.endswith(TABLE_SUFFIX) and f"{n[:-len(TABLE_SUFFIX)]}{SCALES_SUFFIX}" in inits]
    if not tables:
        return model, 0
    producer = {o: n for n in model.graph.node for o in n.output}
    drop: set[int] = set()
    keep_gather: dict[int, onnx.NodeProto] = {}
    for node in model.graph.node:
        if not (node.op_type == "Mul" and node.name.startswith(f"{DOMAIN}/")):
            continue
        cast, scales = producer[node.input[0]], producer[node.input[1]]
        rows = producer[cast.input[0]]
        name = rows.input[0][:-len(TABLE_SUFFIX)]
        keep_gather[id(node)] = helper.make_node("Gather", [name, rows.input[1]], [node.output[0]],
                                                 name=rows.name.rsplit("/", 1)[0], axis=0)
        drop |= {id(cast), id(scales), id(rows)}
    nodes = [keep_gather.get(id(n), n) for n in model.graph.node if id(n) not in drop]
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    replaced = set()
    for q_name in tables:
        name = q_name[:-len(TABLE_SUFFIX)]
        s_name = f"{name}{SCALES_SUFFIX}"
        table = numpy_helper.to_array(inits[q_name]).astype(np.float32) * numpy_helper.to_array(inits[s_name])
        model.graph.initializer.append(numpy_helper.from_array(table.astype(np.float32), name))
        replaced |= {q_name, s_name}
    live = [t for t in model.graph.initializer if t.name not in replaced]
    del model.graph.initializer[:]
    model.graph.initializer.extend(live)
    return model, len(tables)

