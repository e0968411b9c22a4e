"""A graph's manifest ``graphs`` entry, for the export (``export/pipeline.py``) and the precision step alike:
the catalogue's columns, the opset, node and op counts, who produced it, what the step adds (``extra``);
for the export's graphs also the domains and the attention fusion summary, for the precision step's the
host its guard ran on."""
from __future__ import annotations

from collections.abc import Sequence

from dfma.contract.graphs import CATALOGUE


def graph_entry(model, key: str, *, producer: str | None = None, opset: int | None = None,
                derived_from: str | None = None, attention: Sequence[str] | None = None,
                guarded_here: bool = False, **extra) -> dict:
    """The ``graphs`` entry of graph ``key`` (a catalogue row) for the loaded ONNX ``model``.

    ``opset``: the default domain's opset (default: read from the model); ``derived_from``: the file it was
    built from when not the row's; ``attention``: the expected attention blocks (adds ``domains`` and
    ``attention``: :func:`~dfma.export.graph_stats.fusion_summary`); ``guarded_here``: record the host (and
    ONNX Runtime version) the accuracy guard ran on as ``guard_host``."""
    from dfma.export.graph_stats import fusion_summary, op_counts

    if opset is None:
        opset = max((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), default=None)
    entry = {**CATALOGUE[key].manifest_fields(), **({"derived_from": derived_from} if derived_from else {})}
    if guarded_here:
        import onnxruntime

        from dfma.host import host_info

        entry["guard_host"] = {**host_info(), "onnxruntime": onnxruntime.__version__}  # where its guard ran
    entry.update({"opset": opset, "nodes": len(model.graph.node)})
    if attention is not None:
        entry["domains"] = sorted({n.domain or "ai.onnx" for n in model.graph.node})
    if producer is not None:
        entry["producer"] = producer
    entry.update(extra)
    if attention is not None:
        entry["attention"] = fusion_summary(model, list(attention))
    entry["op_counts"] = op_counts(model)
    return entry
