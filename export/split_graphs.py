"""Cut a whole graph in two at ``image_features``: ``vision`` (pixels -> features), ``text`` (the rest).

The pyramid tokens depend on the pixels alone (the text query enters in PFE, after them), so the part of
the graph that computes them can run once per image and its result be reused for every entity pair of a
post. The exporter names that tensor ``image_features`` in every graph it writes (:func:`name_features`,
on the traced graph, before fusion, so the name survives fusion, fp16 conversion and quantization, which
keep the names of the values they do not remove). :func:`split_graph` then cuts any variant (fp32, fused,
fp16, INT8) node for node: the two stages together are the whole graph's nodes, weights and quantization
parameters, so they share its precision and its accuracy guard, and differ from it only where ONNX
Runtime would have fused across the cut.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import NamedTuple

from dfma.contract.errors import ExportError
from dfma.contract.graphs import STAGES, stage_file
from dfma.contract.io_spec import FEATURES_NAME, OUTPUT_NAME, STAGE_INPUTS

SCOPE_KEY = "pkg.torch.onnx.name_scopes"
FEATURES_SCOPE = "pfe.token_norm"  # the LayerNorm whose reshaped output is the pyramid tokens
SPLIT_SUFFIX = "/two-stage"  # parity / guard key of a graph's stage graphs


class StageFile(NamedTuple):
    """One written stage: its file and its node count."""

    path: Path
    nodes: int


def name_features(model) -> None:
    """Rename the pyramid-token tensor of a freshly translated ONNX IR model to ``image_features`` (in place).

    It is the output of the Reshape that follows PFE's token LayerNorm (``pfe.token_norm``, found by the
    exporter's module-scope metadata). ExportError when the graph does not have that shape.
    """
    norms = [n for n in model.graph if n.op_type == "LayerNormalization"
             and FEATURES_SCOPE in str(n.metadata_props.get(SCOPE_KEY, ""))]
    if len(norms) != 1:
        raise ExportError(f"cannot find the image-feature boundary: {len(norms)} LayerNormalization nodes in "
                          f"scope {FEATURES_SCOPE!r} (expected 1)")
    uses = list(norms[0].outputs[0].uses())
    if len(uses) != 1 or uses[0][0].op_type != "Reshape":
        raise ExportError(f"cannot find the image-feature boundary: {FEATURES_SCOPE} feeds "
                          f"{[u[0].op_type for u in uses]}, expected one Reshape")
    uses[0][0].outputs[0].name = FEATURES_NAME


def _subgraph_names(node) -> set[str]:
    """Outer-scope names that a node's subgraph attributes (If/Loop bodies) read."""
    import onnx

    names: set[str] = set()
    for attr in node.attribute:
        graphs = [attr.g] if attr.type == onnx.AttributeProto.GRAPH else list(attr.graphs)
        for g in graphs:
            for inner in g.node:
                names.update(inner.input)
                names |= _subgraph_names(inner)
    return names


def _cut(model, inputs: tuple[str, ...], output: str, features_info, stage: str):
    """The sub-model computing ``output`` from ``inputs`` (ExportError if it needs anything else)."""
    import onnx

    g = model.graph
    producer = {o: i for i, n in enumerate(g.node) for o in n.output}
    initializers = {t.name for t in g.initializer}
    kept: set[int] = set()
    needed: set[str] = set()
    stack = [output]
    while stack:
        name = stack.pop()
        if name in needed or not name:
            continue
        needed.add(name)
        if name in inputs or name not in producer:
            continue
        i = producer[name]
        if i not in kept:
            kept.add(i)
            stack.extend(g.node[i].input)
            stack.extend(_subgraph_names(g.node[i]))
    graph_inputs = {v.name: v for v in g.input}
    missing = sorted(n for n in needed if n not in inputs and n not in producer and n not in initializers)
    if missing:
        raise ExportError(f"{stage} stage: computing {output!r} from {list(inputs)} also needs {missing[:5]}; "
                          "the graph cannot be cut there")
    infos = {v.name: v for v in list(g.value_info) + list(g.output)}
    new_inputs = [features_info if n == FEATURES_NAME else graph_inputs[n] for n in inputs]
    new_output = features_info if output == FEATURES_NAME else infos[output]
    nodes = [g.node[i] for i in sorted(kept)]
    graph = onnx.helper.make_graph(
        nodes, f"{g.name or 'dfma'}-{stage}", new_inputs, [new_output],
        initializer=[t for t in g.initializer if t.name in needed],
        value_info=[v for v in g.value_info if v.name in needed and v.name not in (FEATURES_NAME, output)
                    and v.name not in inputs],
        doc_string=f"{stage} stage of: {g.doc_string}")
    out = onnx.ModelProto()
    out.ir_version = model.ir_version
    out.producer_name, out.producer_version = model.producer_name, model.producer_version
    out.opset_import.extend(model.opset_import)
    out.functions.extend(model.functions)
    out.metadata_props.extend(model.metadata_props)
    out.doc_string = f"{stage} stage ({', '.join(inputs)} -> {output}) of: {model.doc_string}"
    out.graph.CopyFrom(graph)
    return out


def _features_elem(model) -> int:
    """The element type ``image_features`` has inside the graph (fp16 in the fp16 graph, else fp32)."""
    import onnx

    for v in model.graph.value_info:
        if v.name == FEATURES_NAME and v.type.tensor_type.elem_type:
            return v.type.tensor_type.elem_type
    return onnx.TensorProto.FLOAT


def _fp32_boundary(part, stage: str, elem: int) -> None:
    """Keep the contract's fp32 at the cut when the graph computes the features in another type (fp16):
    the vision stage casts them to fp32 at its output, the text stage back at its input (exact both ways)."""
    import onnx

    if elem == onnx.TensorProto.FLOAT:
        return
    native = f"{FEATURES_NAME}.native"
    g = part.graph
    for node in g.node:
        node.output[:] = [native if o == FEATURES_NAME else o for o in node.output]
        node.input[:] = [native if i == FEATURES_NAME else i for i in node.input]
    if stage == "vision":
        g.node.append(onnx.helper.make_node("Cast", [native], [FEATURES_NAME], to=onnx.TensorProto.FLOAT,
                                            name="image_features_to_fp32"))
    else:
        g.node.insert(0, onnx.helper.make_node("Cast", [FEATURES_NAME], [native], to=elem,
                                               name="image_features_from_fp32"))


def split_graph(path: str | Path, features: Mapping, out_dir: str | Path | None = None) -> dict[str, StageFile]:
    """Cut the graph at ``path`` into ``{stage: StageFile}`` files beside it (or in ``out_dir``), named by
    :func:`dfma.contract.graphs.stage_file`. ``features``: the manifest's ``stages.features`` spec.

    ExportError when the graph has no ``image_features`` tensor (a bundle from before two-stage export:
    export it again) or cannot be cut there.
    """
    import onnx

    path = Path(path)
    model = onnx.load(str(path))
    produced = {o for n in model.graph.node for o in n.output}
    if FEATURES_NAME not in produced:
        raise ExportError(f"{path.name}: has no {FEATURES_NAME!r} tensor to cut at (exported before two-stage "
                          "graphs existed? export it again with export/to_onnx.py)")
    import onnx.helper

    elem = _features_elem(model)
    info = onnx.helper.make_tensor_value_info(FEATURES_NAME, onnx.TensorProto.FLOAT, list(features["shape"]),
                                              features.get("doc", ""))
    out_dir = Path(out_dir) if out_dir is not None else path.parent
    written = {}
    for stage in STAGES:
        output = FEATURES_NAME if stage == "vision" else OUTPUT_NAME
        part = _cut(model, STAGE_INPUTS[stage], output, info, stage)
        _fp32_boundary(part, stage, elem)
        target = out_dir / stage_file(path.name, stage)
        try:
            onnx.save(part, str(target))
        except OSError as exc:
            raise ExportError(f"{target}: cannot write ({exc.strerror or exc})") from None
        written[stage] = StageFile(target, len(part.graph.node))
    return written


def stage_entries(parts: Mapping[str, StageFile], folder: Path) -> dict[str, dict]:
    """The ``stages`` part of a manifest ``graphs`` entry: file and node count of each stage."""
    return {stage: {"file": Path(p.path).relative_to(folder).as_posix(), "nodes": p.nodes}
            for stage, p in parts.items()}


def stage_runner(folder: Path, entry: Mapping, stages_io: Mapping, io: Mapping, *, threads: int | None = None):
    """A :class:`~dfma.backends.two_stage.TwoStage` of ONNX Runtime CPU runners on a graph entry's stages."""
    from dfma.backends.ort_runner import OrtRunner
    from dfma.backends.two_stage import TwoStage

    stages = entry["stages"]
    return TwoStage(*(OrtRunner(Path(folder) / stages[s]["file"], io=stages_io[s], threads=threads) for s in STAGES),
                    io=io)
