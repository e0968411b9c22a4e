"""Copy a bundle with only the graphs a deployment needs: ``python export/slim_bundle.py BUNDLE --out DIR --for cpu``.

Targets (which graphs each backend of the target would run, by the graph catalogue and the backend
registry, plus the graph the bundle's ``auto`` default names):

- ``cpu``: what ONNX Runtime's CPU provider runs for each precision (the fused fp32 graph and the INT8
  graphs; fp16 is left out: the CPU provider has no fp16 kernels), and the choice of the backend the
  bundle's recorded ``auto`` default names when that is another one (OpenVINO);
- ``gpu``: what the CUDA / TensorRT providers run (standard-ops fp32, fp16, static INT8) and every
  TensorRT engine;
- ``--keep KEY,...``: exactly these ``graphs`` keys.

The copy is a complete bundle: tokenizer, labels, calibration ranges (with the INT8 graph), a manifest
whose ``graphs``, ``parity``, ``defaults`` and ``files`` (re-hashed) describe only what it holds, and a
``slimmed`` record of what was dropped. Files are hard-linked where the file system allows, but the weight
store (``weights.bin``) is written afresh, holding only the tensors the kept graphs use. Written
atomically (nothing is left behind on failure). Exit status 0, 1 on a bundle error, 2 on a usage error.
"""
from __future__ import annotations

import os
import sys

if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)  # import everything as dfma.export.*, never export/ modules by bare name

import argparse  # noqa: E402
import dataclasses  # noqa: E402
from pathlib import Path  # noqa: E402

from dfma.contract.errors import DFMAError, ExportError  # noqa: E402
from dfma.contract.graphs import CATALOGUE, precisions  # noqa: E402
from dfma.contract.manifest import Manifest  # noqa: E402

TARGETS = ("cpu", "gpu")


def cpu_skipped() -> set[str]:
    """Precisions a CPU deployment leaves out: every row of them lacks ONNX Runtime CPU kernels (the catalogue's
    ``cpu_kernels``: the CPU provider casts fp16 nodes back to fp32, so there is no reason to ship it)."""
    return {p for p in precisions() if not any(r.cpu_kernels for r in CATALOGUE.values() if r.precision == p)}


def graphs_for(manifest: Manifest, target: str) -> list[str]:
    """The ``graphs`` keys a ``cpu`` or ``gpu`` deployment runs (module doc), in manifest order."""
    from dfma.backends.registry import backend

    rows = manifest.present()
    keep: set[str] = set()
    if target == "cpu":
        specs = [backend("onnxruntime-cpu")]
        rec = manifest.defaults.auto.get("cpu") if manifest.defaults is not None else None
        if rec is not None and rec.backend not in (None, "onnxruntime-cpu"):  # auto serves another CPU backend
            specs.append(backend(rec.backend))
        skip = cpu_skipped()
        for spec in specs:
            for precision in precisions():
                if precision not in skip and spec.ordered(rows, precision):
                    keep.add(spec.ordered(rows, precision)[0])
        if rec is not None and rec.graph in rows:
            keep.add(rec.graph)
    elif target == "gpu":
        spec = backend("onnxruntime-cuda")
        for precision in precisions():
            if spec.ordered(rows, precision):
                keep.add(spec.ordered(rows, precision)[0])
        keep |= set(manifest.engines()) & set(rows)
    else:
        raise ExportError(f"--for {target!r}: choose one of {list(TARGETS)}")
    return [k for k in manifest.graphs if k in keep]


def slim_manifest(manifest: Manifest, keep: list[str], *, target: str, source: Path,
                  stages: bool = True) -> tuple[Manifest, list[str]]:
    """The copy's manifest (``files`` still to be hashed) and the bundle files to copy; ``stages=False``
    also drops the kept graphs' stage graphs."""
    graphs = manifest.graphs
    dropped = [k for k in graphs if k not in keep]
    dropped_files = set().union(*(graphs[k].files() for k in dropped))
    kept_files = set().union(*(graphs[k].files() for k in keep))
    if not stages:
        stage_graphs = kept_files - {graphs[k].file for k in keep}
        dropped_files |= stage_graphs
        kept_files -= stage_graphs
    kept_companions = {f for k in keep if k in CATALOGUE for f in CATALOGUE[k].companions}
    # a graph's companion files (the static INT8 ranges, also for re-quantizing it) go unless a kept graph has them
    dropped_files |= {f for r in CATALOGUE.values() if r.key not in keep for f in r.companions} - kept_companions
    precision = manifest.precision
    if precision is not None:
        precision = dataclasses.replace(
            precision, guard={k: v for k, v in precision.guard.items() if k not in dropped},
            search={k: v for k, v in precision.search.items() if k not in dropped} if precision.search is not None
            else None)
    defaults = manifest.defaults
    if defaults is not None:
        defaults = dataclasses.replace(defaults, auto={s: r for s, r in defaults.auto.items() if r.graph in keep})
    new = dataclasses.replace(
        manifest, graphs={k: (g if stages else g.without("stages")) for k, g in graphs.items() if k in keep},
        parity={k: v for k, v in manifest.parity.items() if k in keep}, precision=precision, defaults=defaults,
        slimmed={"for": target, "from": str(source), "from_created": manifest.created, "kept": keep,
                 "dropped": dropped, "two_stage_pairs": stages})
    files = [rel for rel in manifest.files if rel in kept_files or rel not in dropped_files]
    return new, files


def slim(bundle: Path, out: Path, *, target: str | None = None, keep: list[str] | None = None,
         force: bool = False, stages: bool = True) -> Manifest:
    """Write the slimmed copy of ``bundle`` to ``out``; returns its manifest. Raises BundleError / ExportError."""
    from dfma.contract.bundle import open_bundle
    from dfma.contract.bundle_writer import BundleWriter, link_or_copy
    from dfma.export.weight_store import pack_folder

    source = open_bundle(bundle)  # every sha256 verified (and the signature, with a key) before anything is copied
    manifest = source.manifest
    if keep:
        unknown = [k for k in keep if k not in manifest.graphs]
        if unknown:
            raise ExportError(f"--keep {unknown}: the bundle's graphs are {sorted(manifest.graphs)}")
        chosen = [k for k in manifest.graphs if k in keep]
    else:
        chosen = graphs_for(manifest, target or "cpu")
    if not chosen:
        raise ExportError(f"nothing to keep for {target}: the bundle's graphs are {sorted(manifest.graphs)}")
    unknown_kinds = [k for k in chosen if k not in CATALOGUE and k not in manifest.engines()]
    if unknown_kinds:
        raise ExportError(f"graphs {unknown_kinds} are not kinds of the catalogue (dfma.contract.graphs)")
    new, files = slim_manifest(manifest, chosen, target=target or "keep", source=source.folder, stages=stages)
    with BundleWriter(out, force=force) as writer:
        for rel in files:
            link_or_copy(source.folder / rel, writer.path(rel))
        pack_folder(writer.tmp)  # a fresh weights.bin holding only what the kept graphs use
        writer.commit(new)
    return open_bundle(out).manifest


def build_parser() -> argparse.ArgumentParser:
    """The command line."""
    p = argparse.ArgumentParser(prog="python export/slim_bundle.py", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter,
                                epilog="targets:\n  cpu  fused fp32 + CPU INT8 graphs (+ OpenVINO's, if auto picks it)\n"
                                       "  gpu  standard-ops fp32, fp16, static INT8, TensorRT engines")
    p.add_argument("bundle", type=Path, help="bundle folder to copy from (not changed)")
    p.add_argument("--out", type=Path, required=True, metavar="DIR", help="the slimmed bundle to create")
    what = p.add_mutually_exclusive_group()
    what.add_argument("--for", dest="target", choices=TARGETS, default=None, help="deployment target (default cpu)")
    what.add_argument("--keep", default=None, metavar="KEY,...", help="keep exactly these manifest graphs keys")
    p.add_argument("--no-stages", dest="stages", action="store_false",
                   help="drop the kept graphs' stage graphs (vision/text files) too: a deployment that serves "
                        "whole graphs only (they share their graph's tensors in weights.bin: little is saved)")
    p.add_argument("--force", action="store_true", help="replace --out if it exists (atomically, at the end)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, write the copy, print what it holds; returns the exit status."""
    args = build_parser().parse_args(argv)
    keep = [k.strip() for k in args.keep.split(",") if k.strip()] if args.keep else None
    try:
        manifest = slim(args.bundle, args.out, target=args.target or (None if keep else "cpu"), keep=keep,
                        force=args.force, stages=args.stages)
    except DFMAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    from dfma.contract.bundle import open_bundle
    from dfma.progress import human_bytes

    before = open_bundle(args.bundle, verify=False).manifest.total_bytes
    after = manifest.total_bytes
    slimmed = manifest.slimmed or {}
    print(f"kept {', '.join(slimmed['kept'])}; dropped {', '.join(slimmed['dropped']) or 'nothing'}")
    print(f"{args.out}: {human_bytes(after)} (from {human_bytes(before)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
