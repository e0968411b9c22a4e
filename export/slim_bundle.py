"""Copy a bundle with only the graphs a deployment needs: ``python export/slim_bundle.py BUNDLE --out DIR --for cpu``.

Targets (which graphs each backend of the target would run, by the graph catalogue and the backend
registry):

- ``cpu``: every x86 CPU class (``dfma.host``: AMX, AVX-512 VNNI, AVX-VNNI, AVX-512, AVX2) served by the
  fewest graphs that ONNX Runtime's CPU provider runs and that met their guard, reduced precisions first:
  a graph counts for the classes on which it computes what its guard measured (the catalogue's
  ``exact_on``). The 7-bit INT8 twins (``int8-avx2``, ``int8-dynamic-avx2``) are exact on every x86 class
  (their products cannot saturate ``VPMADDUBSW``), so one of them serves them all; between graphs that
  cover as much, the precision ``auto`` ranks faster wins (the recorded ``defaults.auto.cpu.ranking``), then
  the graph meant for those classes. Only a graph ``auto`` would serve counts: it met the guard (``parity``)
  and is not batch-dependent. fp32 is kept only for classes no such graph serves (no INT8 graph passed
  its guard); fp16 never (the CPU provider has no fp16 kernels). The graph of the recorded ``auto`` default
  of another CPU backend (OpenVINO) is kept too;
- ``cpu-vnni``: the same for the x86 classes with INT8 dot products only (VNNI, AMX): the full-range INT8
  graphs, not their twins;
- ``gpu``: what the CUDA / TensorRT providers run (standard-ops fp32, fp16, static INT8) and every
  TensorRT engine;
- ``--keep KEY,...``: exactly these ``graphs`` keys.

The copy is a complete bundle: tokenizer, labels, calibration ranges (with the INT8 graph), a manifest
whose ``graphs``, ``parity``, ``defaults`` (a ranked choice names the kept graph of its precision, or goes)
and ``files`` (re-hashed) describe only what it holds, and a ``slimmed`` record of what was dropped and of
the CPU classes it serves (``cpu_classes``; ``served_by``: class -> graph; ``precision="auto"`` on another
class is refused, naming them). Files are hard-linked where the file system allows, but the weight store
(``weights.bin``) is written afresh, holding only the tensors the kept graphs use. Written atomically
(nothing is left behind on failure). Exit status 0, 1 on a bundle error, 2 on a usage error.
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
from dfma.contract.graphs import CATALOGUE, CPU_CLASSES, FP32, X86_CLASSES, X86_DOT_PRODUCT, precisions  # noqa: E402
from dfma.contract.manifest import Manifest  # noqa: E402

CPU_TARGETS = {"cpu": X86_CLASSES, "cpu-vnni": X86_DOT_PRODUCT}  # target -> the CPU classes it must serve
TARGETS = (*CPU_TARGETS, "gpu")


def cpu_skipped() -> set[str]:
    """Precisions a CPU deployment leaves out: every row of them lacks ONNX Runtime CPU kernels (the catalogue's
    ``cpu_kernels``: the CPU provider casts fp16 nodes back to fp32, so there is no reason to ship it)."""
    return {p for p in precisions() if not any(r.cpu_kernels for r in CATALOGUE.values() if r.precision == p)}


def _auto_precisions(manifest: Manifest) -> list[str] | None:
    """The precisions the recorded CPU ``auto`` ranking lets ONNX Runtime CPU serve, fastest first (None: the
    bundle records no CPU default)."""
    rec = manifest.defaults.auto.get("cpu") if manifest.defaults is not None else None
    if rec is None:
        return None
    ranked = [e for e in rec.ranked if e.backend in (None, "onnxruntime-cpu")] or [rec]
    return list(dict.fromkeys(e.precision for e in ranked))


def served_by(manifest: Manifest, keys: list[str], classes=CPU_CLASSES) -> dict[str, str]:
    """``{CPU class: graph}``: for each class the first of ``keys`` (in that order) that ONNX Runtime CPU
    runs, that ``auto`` would serve (it met its guard and is not batch-dependent; fp32 always) and that
    computes there what its guard measured (the catalogue's ``exact_on``)."""
    from dfma.backends.registry import backend

    spec, rows = backend("onnxruntime-cpu"), manifest.present()
    ranked = _auto_precisions(manifest)

    def serves(key: str, cpu_class: str) -> bool:
        row = rows.get(key)
        if row is None or not spec.runs(row) or not row.serves(cpu_class):
            return False
        if row.precision == FP32:
            return True
        return (manifest.parity.get(key, {}).get("passed") is True and not manifest.batch_dependent(key)
                and (ranked is None or row.precision in ranked))

    out = {}
    for cpu_class in classes:
        key = next((k for k in keys if serves(k, cpu_class)), None)
        if key is not None:
            out[cpu_class] = key
    return out


def cpu_graphs(manifest: Manifest, classes) -> list[str]:
    """The fewest graphs that serve every one of ``classes`` on ONNX Runtime CPU, reduced precisions first
    (module doc: ``cpu``), fp32 only for the classes none of them serves."""
    from dfma.backends.registry import backend

    spec, rows = backend("onnxruntime-cpu"), manifest.present()
    skip = cpu_skipped() | {FP32}
    ranked = _auto_precisions(manifest) or []
    order = {k: i for i, k in enumerate(CATALOGUE)}
    candidates = [k for k, r in rows.items() if r.precision not in skip and k in CATALOGUE]
    need, keep = set(classes), []
    while need and candidates:
        covers = {k: set(served_by(manifest, [k], tuple(need))) for k in candidates}
        best = min(candidates, key=lambda k: (-len(covers[k]), ranked.index(rows[k].precision)
                                              if rows[k].precision in ranked else len(ranked),
                                              sum(rows[k].host_rank(c) for c in need), order[k]))
        if not covers[best]:
            break
        keep.append(best)
        need -= covers[best]
        candidates.remove(best)
    if need and spec.ordered(rows, FP32):
        keep.append(spec.ordered(rows, FP32)[0])  # no reduced-precision graph serves these classes
    return keep


def graphs_for(manifest: Manifest, target: str) -> list[str]:
    """The ``graphs`` keys a ``cpu``, ``cpu-vnni`` or ``gpu`` deployment runs (module doc), in manifest order."""
    from dfma.backends.registry import backend

    rows = manifest.present()
    keep: set[str] = set()
    if target in CPU_TARGETS:
        keep |= set(cpu_graphs(manifest, CPU_TARGETS[target]))
        rec = manifest.defaults.auto.get("cpu") if manifest.defaults is not None else None
        if rec is not None and rec.backend not in (None, "onnxruntime-cpu") and rec.graph in rows:
            keep.add(rec.graph)  # auto serves another CPU backend (OpenVINO): its graph too
    elif target == "gpu":
        spec = backend("onnxruntime-cuda")
        for precision in precisions():
            if spec.ordered(rows, precision):
                keep.add(spec.ordered(rows, precision)[0])
        keep |= set(manifest.engines()) & set(rows)
    else:
        raise ExportError(f"--for {target!r}: choose one of {list(TARGETS)}")
    return [k for k in manifest.graphs if k in keep]


def slim_defaults(manifest: Manifest, keep: list[str]):
    """The ``defaults`` of the copy: each ranked choice names its graph if kept, else (ONNX Runtime CPU's choices)
    the kept graph of its precision that ONNX Runtime CPU prefers (e.g. the 7-bit twin for the full-range INT8
    graph), else it is dropped; a record whose own graph goes
    takes its first remaining choice; a record with none left goes."""
    from dfma.backends.registry import BACKENDS

    defaults = manifest.defaults
    if defaults is None:
        return None
    rows = {k: r for k, r in manifest.present().items() if k in keep}

    def kept(graph: str | None, precision: str, backend: str | None) -> str | None:
        if graph in rows:
            return graph
        if backend not in (None, "onnxruntime-cpu"):  # another backend's measurement holds for its own graph only
            return None
        ordered = BACKENDS["onnxruntime-cpu"].ordered(rows, precision)
        return ordered[0] if ordered else None

    auto = {}
    for scope, rec in defaults.auto.items():
        ranked = []
        for e in rec.ranked:
            g = kept(e.graph, e.precision, e.backend)
            if g is not None:
                ranked.append(dataclasses.replace(e, graph=g))
        own = kept(rec.graph, rec.precision, rec.backend)
        if own is None and ranked:
            first = ranked[0]
            label = first.extra.get("label", first.precision)
            rec = dataclasses.replace(rec, graph=first.graph, precision=first.precision, backend=first.backend,
                                      extra={**rec.extra, "label": label}, reason=f"{rec.reason or ''} "
                                      f"(slimmed: {label} is the fastest of those kept)".strip())
            own = first.graph
        if own is not None:
            auto[scope] = dataclasses.replace(rec, graph=own, ranked=tuple(ranked))
    return dataclasses.replace(defaults, auto=auto)


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
    ranked = _auto_precisions(manifest) or []
    rows = manifest.present()
    served = served_by(manifest, sorted(keep, key=lambda k: (
        rows[k].precision == FP32 if k in rows else True,
        ranked.index(rows[k].precision) if k in rows and rows[k].precision in ranked else len(ranked))))
    new = dataclasses.replace(
        manifest, graphs={k: (g if stages else g.without("stages")) for k, g in graphs.items() if k in keep},
        parity={k: v for k, v in manifest.parity.items() if k in keep}, precision=precision,
        defaults=slim_defaults(manifest, keep),
        slimmed={"for": target, "from": str(source), "from_created": manifest.created, "kept": keep,
                 "dropped": dropped, "two_stage_pairs": stages, "cpu_classes": list(served), "served_by": served})
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
                                epilog="targets:\n  cpu       every x86 CPU class by the fewest guarded graphs, INT8 first "
                                       "(a 7-bit twin serves them all; fp32 only where no INT8 graph passed)\n"
                                       "  cpu-vnni  x86 CPUs with VNNI or AMX only (the full-range INT8 graphs)\n"
                                       "  gpu       standard-ops fp32, fp16, static INT8, TensorRT engines")
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
    print("serves " + (", ".join(f"{c} ({g})" for c, g in slimmed.get("served_by", {}).items()) or "no CPU class"))
    print(f"{args.out}: {human_bytes(after)} (from {human_bytes(before)})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
