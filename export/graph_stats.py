"""Op-type counts of an ONNX graph and the state of each attention block (torch-free; needs onnx).

An attention block is found from the module scope the exporter records on every node
(``pkg.torch.onnx.name_scopes``): text self-attention ``text.encoder.layer.N.attention.self`` and the
MMF directions ``mmf.text_to_image`` / ``mmf.image_to_text``. Each block is then

- ``fused``: a com.microsoft ``MultiHeadAttention`` / ``Attention`` node and no Softmax;
- ``onnx-attention``: the standard opset-23 ``Attention`` op (portable graph, TensorRT >= 10.14);
- ``unfused``: MatMul / Softmax (or anything else) left.
"""
from __future__ import annotations

import ast
import re
from collections import Counter
from dataclasses import asdict, dataclass, field

ATTENTION_SCOPE = re.compile(r"^(text\.encoder\.layer\.\d+\.attention\.self|mmf\.text_to_image|mmf\.image_to_text)$")
FUSED_ATTENTION_OPS = {("com.microsoft", "MultiHeadAttention"), ("com.microsoft", "Attention"),
                       ("com.microsoft", "PackedMultiHeadAttention"), ("com.microsoft", "GroupQueryAttention")}
FUSED_OTHER_OPS = {"SkipLayerNormalization", "LayerNormalization", "SkipSimplifiedLayerNormalization",
                   "BiasGelu", "FastGelu", "Gelu", "FusedMatMul", "BiasAdd", "BiasSplitGelu"}
SCOPE_KEY = "pkg.torch.onnx.name_scopes"


def expected_blocks(config: dict) -> list[str]:
    """Attention block scopes of a configuration (a config dict or DFMAConfig): one per text layer + MMF."""
    layers = config["num_layers"] if isinstance(config, dict) else config.num_layers
    return [f"text.encoder.layer.{i}.attention.self" for i in range(layers)] + ["mmf.text_to_image",
                                                                                 "mmf.image_to_text"]


def op_key(node) -> str:
    """``Op`` for the standard domain, ``domain::Op`` otherwise."""
    return node.op_type if node.domain in ("", "ai.onnx") else f"{node.domain}::{node.op_type}"


def op_counts(model) -> dict[str, int]:
    """Node counts per op type of the main graph, most frequent first."""
    return dict(Counter(op_key(n) for n in model.graph.node).most_common())


def _block_order(block: str) -> tuple:
    layer = re.search(r"layer\.(\d+)\.", block)
    return (0, int(layer.group(1)), "") if layer else (1, 0, block)


def node_block(node) -> str | None:
    """The attention block scope this node belongs to, or None."""
    for prop in node.metadata_props:
        if prop.key == SCOPE_KEY:
            try:
                scopes = ast.literal_eval(prop.value)
            except (ValueError, SyntaxError):
                return None
            for scope in scopes if isinstance(scopes, list) else []:
                if isinstance(scope, str) and ATTENTION_SCOPE.match(scope):
                    return scope
    return None


@dataclass
class BlockState:
    """What one attention block became in a graph."""

    block: str
    state: str  # fused | onnx-attention | unfused | missing
    ops: dict[str, int] = field(default_factory=dict)


def attention_blocks(model, expected: list[str] | None = None) -> list[BlockState]:
    """State of every attention block found in the graph (plus ``missing`` for expected ones not found)."""
    per_block: dict[str, Counter] = {}
    for node in model.graph.node:
        block = node_block(node)
        if block is not None:
            per_block.setdefault(block, Counter())[(node.domain or "", node.op_type)] += 1
    names = list(expected or [])
    names += sorted((b for b in per_block if b not in names), key=_block_order)
    states = []
    for name in names:
        ops = per_block.get(name)
        if ops is None:
            states.append(BlockState(name, "missing"))
            continue
        fused = sum(c for k, c in ops.items() if k in FUSED_ATTENTION_OPS)
        onnx_attention = ops.get(("", "Attention"), 0)
        softmax = ops.get(("", "Softmax"), 0)
        if fused == 1 and not softmax and not onnx_attention:
            state = "fused"
        elif onnx_attention == 1 and not softmax and not fused:
            state = "onnx-attention"
        else:
            state = "unfused"
        states.append(BlockState(name, state, {f"{d}::{o}" if d else o: c for (d, o), c in sorted(ops.items())}))
    return states


def fusion_summary(model, expected: list[str] | None = None) -> dict:
    """Manifest-ready summary: fused attention nodes, per-block states, other fused ops, Softmax count."""
    counts = Counter((n.domain or "", n.op_type) for n in model.graph.node)
    blocks = attention_blocks(model, expected)
    return {
        "attention_nodes_fused": sum(c for k, c in counts.items() if k in FUSED_ATTENTION_OPS),
        "attention_nodes_onnx": counts.get(("", "Attention"), 0),
        "attention_blocks": len(expected) if expected is not None else len(blocks),
        "blocks_fused": sum(b.state == "fused" for b in blocks),
        "blocks_onnx_attention": sum(b.state == "onnx-attention" for b in blocks),
        "blocks_unfused": [b.block for b in blocks if b.state in ("unfused", "missing")],
        "softmax_in_attention_blocks": sum(b.ops.get("Softmax", 0) for b in blocks),
        "softmax_total": counts.get(("", "Softmax"), 0),
        "other_fused_ops": {op_key(_Fake(d, o)): c for (d, o), c in sorted(counts.items())
                            if o in FUSED_OTHER_OPS},
        "blocks": [asdict(b) for b in blocks],
    }


@dataclass
class _Fake:
    domain: str
    op_type: str
