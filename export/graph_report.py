"""Print op-type counts and which attention blocks are fused: ``python -m dfma.export.graph_report PATH``.

PATH is a bundle folder (every graph of its manifest, blocks expected from its config, parity shown) or
one ``.onnx`` file (blocks found from the node scopes). Exit status 1 with ``--require-fused`` when an
ONNX Runtime graph has an unfused attention block. Needs onnx, not torch.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dfma.contract.errors import DFMAError
from dfma.contract.manifest import GraphEntry
from dfma.export.graph_stats import attention_blocks, expected_blocks, fusion_summary, op_counts
from dfma.contract.weight_store import graph_bytes
from dfma.progress import human_bytes, table


def graph_report(path: Path, expected: list[str] | None = None, *, top: int = 0) -> tuple[str, dict]:
    """Text report of one graph (op counts, attention blocks) and its fusion summary."""
    import onnx

    try:
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:
        raise DFMAError(f"{path}: not a readable ONNX file ({exc})") from None
    counts = op_counts(model)
    summary = fusion_summary(model, expected)
    shown = list(counts.items())[:top] if top else list(counts.items())
    opsets = ", ".join(f"{o.domain or 'ai.onnx'}={o.version}" for o in model.opset_import)
    lines = [f"{path.name}: {len(model.graph.node)} nodes, {human_bytes(graph_bytes(path))} with its weights, opsets {opsets}",
             "  ops: " + ", ".join(f"{op} {n}" for op, n in shown)]
    blocks = attention_blocks(model, expected)
    if blocks:
        lines.append(table(["attention block", "state", "attention ops"],
                           [[b.block, b.state, ", ".join(f"{k} {v}" for k, v in b.ops.items()
                                                         if "Attention" in k or k == "Softmax") or "-"]
                            for b in blocks]))
    lines.append(f"  fused attention nodes: {summary['attention_nodes_fused']}, ONNX Attention nodes: "
                 f"{summary['attention_nodes_onnx']}, blocks: {summary['attention_blocks']}, "
                 f"Softmax in attention blocks: {summary['softmax_in_attention_blocks']}")
    other = summary["other_fused_ops"]
    if other:
        lines.append("  other fused ops: " + ", ".join(f"{k} {v}" for k, v in other.items()))
    return "\n".join(lines), summary


def bundle_report(folder: Path, *, top: int = 0) -> tuple[str, list[tuple[str, GraphEntry, dict]]]:
    """Report every graph of a bundle (opened through ``open_bundle``: digest, signature with
    ``DFMA_BUNDLE_KEY_FILE``, every listed file); returns the text and (key, graph entry, summary) per graph."""
    from dfma.contract.bundle import open_bundle

    manifest = open_bundle(folder).manifest
    expected = expected_blocks(manifest.model.config or {})
    parts, results = [f"bundle {folder}: preset {manifest.model.preset}, "
                      f"{len(expected)} attention blocks expected"], []
    for key, graph in manifest.graphs.items():
        if not graph.file.endswith(".onnx"):
            continue
        text, summary = graph_report(folder / graph.file, expected, top=top)
        parity = manifest.parity.get(key)
        if parity:
            text += (f"\n  parity: max abs {parity['max_abs_error']:.2e}, max rel {parity['max_rel_error']:.2e}, "
                     f"top-1 {100 * parity['top1_agreement']:.1f}% over {parity['samples']} samples")
        parts.append(f"[{key}] kind {graph.kind}, precision {graph.precision}\n{text}")
        results.append((key, graph, summary))
    return "\n\n".join(parts), results


def main(argv: list[str] | None = None) -> int:
    """Command line entry point."""
    p = argparse.ArgumentParser(prog="python -m dfma.export.graph_report", description=__doc__.split("\n\n")[0])
    p.add_argument("path", type=Path, help="bundle folder or .onnx file")
    p.add_argument("--top", type=int, default=0, help="show only the N most frequent op types (default: all)")
    p.add_argument("--require-fused", action="store_true",
                   help="exit 1 unless every attention block of the ONNX Runtime graph(s) is fused")
    args = p.parse_args(argv)
    try:
        if args.path.is_dir():
            text, results = bundle_report(args.path, top=args.top)
            checked = [s for _, g, s in results if g.kind == "onnxruntime"]
        else:
            text, summary = graph_report(args.path, top=args.top)
            checked = [summary]
    except (DFMAError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(text)
    if args.require_fused and any(s["blocks_unfused"] or s["blocks_fused"] != s["attention_blocks"]
                                  for s in checked):
        print("error: unfused attention blocks", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
