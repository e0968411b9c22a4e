"""The export pipeline behind ``export/to_onnx.py``: source -> trace -> two graphs -> parity -> bundle.

Nothing is written where the bundle goes until every step has passed: the bundle is built in a hidden
sibling folder (:class:`~dfma.contract.bundle_writer.BundleWriter`) and renamed into place at the end.
"""
from __future__ import annotations

import dataclasses
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from dfma.contract.errors import ExportError
from dfma.contract.bundle_writer import BundleWriter, check_target
from dfma.contract.graphs import CATALOGUE, STAGES
from dfma.contract.manifest import GraphEntry, Golden, Manifest, StagesIo
from dfma.contract.weight_store import STORE_FILE, graph_bytes
from dfma.progress import Steps, human_bytes, table

PORTABLE_FILE, ORT_FILE = CATALOGUE["portable"].file, CATALOGUE["ort"].file

EXAMPLE_BATCH, EXAMPLE_LENGTH = 2, 16
DEFAULT_MAX_BATCH = 64
MAX_MAX_BATCH = 4096


@dataclass
class ExportOptions:
    """Everything the CLI can set."""

    out: Path
    checkpoint: Path | None = None
    preset: str = "base"
    tokenizer: Path | None = None
    seed: int = 0
    force: bool = False
    opset: int = 23
    max_batch: int = DEFAULT_MAX_BATCH
    max_length: int | None = None  # default: the config's max_length
    atol: float = 1e-4
    validation_seed: int | None = None  # default: fresh
    full_validation: bool = False  # 18 shapes instead of 4
    quiet: bool = False
    verbose: bool = False


@dataclass
class ExportResult:
    """What an export produced."""

    bundle: Path
    manifest: Manifest
    timings: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0

    def summary(self) -> str:
        """The closing table: graph, file, size, nodes, fused attention blocks, errors, agreement."""
        rows = []
        for key, graph in self.manifest.graphs.items():
            att, par = graph.get("attention", {}), self.manifest.parity.get(key, {})
            blocks = att.get("attention_blocks", 0)
            if graph.kind == "onnxruntime":
                fused = f"{att.get('blocks_fused', 0)}/{blocks} fused (MultiHeadAttention)"
            elif graph.get("opset", 0) < 23:
                fused = f"{blocks} as MatMul/Softmax (opset {graph.get('opset')})"
            else:
                fused = f"{att.get('blocks_onnx_attention', 0)}/{blocks} ONNX Attention"
            rows.append([key, graph.file, human_bytes(graph_bytes(self.bundle / graph.file)),  # with its store tensors
                         graph.get("nodes", "?"), fused, f"{par.get('max_abs_error', float('nan')):.2e}",
                         f"{par.get('max_rel_error', float('nan')):.2e}", f"{100 * par.get('top1_agreement', 0):.1f}%"])
        head = ["graph", "file", "size", "nodes", "attention blocks", "max abs err", "max rel err", "top-1 agree"]
        return table(head, rows)


def check_options(opts: ExportOptions) -> None:
    """Fail fast, before anything is loaded or written: opset, limits, preset name, output folder."""
    from dfma.config import PRESETS
    from dfma.export.onnx_export import check_opset

    if opts.checkpoint is None and opts.preset not in PRESETS:
        raise ExportError(f"--preset {opts.preset!r}: no such preset; choose one of {sorted(PRESETS)}")
    if opts.checkpoint is not None and not Path(opts.checkpoint).is_dir():
        raise ExportError(f"--checkpoint {opts.checkpoint}: checkpoint folder not found")
    check_opset(opts.opset)
    if not 2 <= opts.max_batch <= MAX_MAX_BATCH:
        raise ExportError(f"--max-batch {opts.max_batch}: must be in 2..{MAX_MAX_BATCH} "
                          "(a dynamic batch is traced at batch 2)")
    if not opts.atol > 0:
        raise ExportError(f"--atol {opts.atol}: must be > 0")
    check_target(opts.out, force=opts.force)


def _resolve_max_length(opts: ExportOptions, cfg) -> int:
    from dfma.export.random_feeds import MIN_LENGTH

    max_length = opts.max_length if opts.max_length is not None else cfg.max_length
    if not MIN_LENGTH < max_length <= cfg.max_position_embeddings:
        raise ExportError(f"--max-length {max_length}: must be in {MIN_LENGTH + 1}.."
                          f"{cfg.max_position_embeddings} (the model's max_position_embeddings)")
    return max_length


def _graph_entry(path: Path, key: str, opset: int, expected: list[str], producer: str, **extra) -> dict:
    import onnx

    from dfma.export.graph_entry import graph_entry

    model = onnx.load(str(path), load_external_data=False)
    folded = sum(n.op_type == "BatchNormalization" for n in model.graph.node)
    if folded:
        raise ExportError(f"{path.name}: {folded} BatchNormalization node(s) left; "
                          "they should be folded into the convolutions (eval mode)")
    return graph_entry(model, key, producer=producer, opset=opset, attention=expected, **extra)


def export_bundle(opts: ExportOptions) -> ExportResult:
    """Run the whole export; returns the result or raises ExportError / CheckpointError (nothing written)."""
    check_options(opts)
    steps = Steps(9, quiet=opts.quiet)
    with steps.step("loading " + (f"checkpoint {opts.checkpoint}" if opts.checkpoint else
                                  f"preset {opts.preset} (random weights, seed {opts.seed})")):
        from dfma.export import sources

        source = (sources.from_checkpoint(opts.checkpoint) if opts.checkpoint is not None
                  else sources.from_preset(opts.preset, tokenizer_dir=opts.tokenizer, seed=opts.seed))
        cfg = source.config
        max_length = _resolve_max_length(opts, cfg)

    import onnxscript

    from dfma.export import onnx_export as ox
    from dfma.export.graph_stats import expected_blocks
    from dfma.contract.io_spec import input_specs, output_specs
    from dfma.export.random_feeds import random_inputs
    from dfma.export.manifest import base_manifest
    from dfma.export.ort_fusion import ORT_OPSET, fuse_for_ort, require_all_fused
    from dfma.export.validate import parity_cases, require_parity, run_parity
    from dfma.export.split_graphs import SPLIT_SUFFIX, name_features, split_graph, stage_runner, stage_entries
    from dfma.contract.io_spec import stages_manifest

    import numpy as np

    example_length = EXAMPLE_LENGTH if max_length > EXAMPLE_LENGTH else max_length - 1
    example = random_inputs(cfg, source.special, EXAMPLE_BATCH, example_length, crops=True,
                            rng=np.random.default_rng(0), nan_absent=False)
    expected = expected_blocks(cfg)
    specs_in, specs_out = input_specs(cfg), output_specs(cfg)
    describe = f"DFMA relation extraction ({cfg.preset}): 4 inputs -> logits over {cfg.num_labels} labels"

    with ox.quiet_exporter(opts.verbose):
        with steps.step(f"tracing with torch.export (dynamic batch 1..{opts.max_batch}, length 2..{max_length})"):
            program = ox.trace(source.model, example, specs_in, max_batch=opts.max_batch, max_length=max_length)
        with BundleWriter(opts.out, force=opts.force) as writer:
            with steps.step(f"portable graph (opset {opts.opset})"):
                portable = ox.translate(program, example, opts.opset)
                name_features(portable)
                ox.finalize(portable, specs_in, specs_out, description=describe + "; portable ONNX ops")
                ox.save_graph(portable, writer.path(PORTABLE_FILE))
                del portable
                ox.check_graph(writer.path(PORTABLE_FILE), standard_only=True)
            with steps.step(f"ONNX Runtime graph (opset {ORT_OPSET}, fused attention)"):
                fused = ox.translate(program, example, ORT_OPSET, optimize=False)
                name_features(fused)
                fused, fusion_counts = fuse_for_ort(fused)
                ox.finalize(fused, specs_in, specs_out, description=describe + "; ONNX Runtime fused kernels")
                ox.save_graph(fused, writer.path(ORT_FILE))
                del fused
            graphs = {
                "portable": _graph_entry(writer.path(PORTABLE_FILE), "portable", opts.opset, expected,
                                         f"torch.onnx.export(dynamo=True, opset_version={opts.opset}, optimize=True)"),
                "ort": _graph_entry(writer.path(ORT_FILE), "ort", ORT_OPSET, expected,
                                    f"torch.onnx.export(dynamo=True, opset_version={ORT_OPSET}, optimize=False) + "
                                    f"onnxscript {onnxscript.__version__} ort_fusions.optimize_for_ort",
                                    fusions=fusion_counts, trace="the torch.export program of the portable graph"),
            }
            require_all_fused(graphs["ort"]["attention"], ORT_FILE)
            stages_io = stages_manifest(cfg)
            with steps.step("two-stage graphs (vision -> image_features -> text), cut from both"):
                for key, graph in graphs.items():
                    graph["stages"] = stage_entries(split_graph(writer.path(graph["file"]), stages_io["features"]),
                                                    writer.tmp)

            with steps.step("tokenizer and manifest sections"):
                from dfma.contract.tokenizer import save_tokenizer

                save_tokenizer(source.tokenizer, writer.tmp)
                manifest = base_manifest(source, opset=opts.opset, max_batch=opts.max_batch, max_length=max_length,
                                         export_example={"batch": EXAMPLE_BATCH, "length": example_length})

            cases = parity_cases(opts.max_batch, max_length, exclude=(EXAMPLE_BATCH, example_length),
                                 full=opts.full_validation)
            seed = opts.validation_seed if opts.validation_seed is not None else secrets.randbits(31)
            with steps.step(f"validating eager vs both graphs and their two stages at {len(cases)} shapes "
                            f"(seed {seed})"):
                staged = {f"{k}{SPLIT_SUFFIX}": stage_runner(writer.tmp, g, stages_io, manifest.io)
                          for k, g in graphs.items()}
                parity = run_parity(source.model, {**{k: writer.path(g["file"]) for k, g in graphs.items()}, **staged},
                                    cfg, source.special, cases, seed=seed, atol=opts.atol, progress=not opts.quiet,
                                    whole_of={p: p[:-len(SPLIT_SUFFIX)] for p in staged})
                for p in staged:
                    graphs[p[:-len(SPLIT_SUFFIX)]]["stages"]["parity"] = parity.pop(p)
                require_parity(parity, {k: g["file"] for k, g in graphs.items()})
                require_parity({k: g["stages"]["parity"] for k, g in graphs.items()},
                               {k: " + ".join(g["stages"][s]["file"] for s in STAGES) for k, g in graphs.items()})

            with steps.step("golden set (inputs + eager logits, checked on each graph)"):
                from dfma.contract.golden import GOLDEN_FILE
                from dfma.export.golden_set import build_golden, expected_results

                manifest = dataclasses.replace(manifest, graphs={k: GraphEntry.from_json(g) for k, g in graphs.items()},
                                               stages=StagesIo.from_json(stages_io), parity=parity)
                golden = build_golden(source.model, manifest.preprocess.to_json(), source.tokenizer, cfg,
                                      source.special, writer.path(GOLDEN_FILE), seed=0)
                golden["expected"] = expected_results(writer.path(GOLDEN_FILE), manifest,
                                                      {k: writer.path(g["file"]) for k, g in graphs.items()})
                manifest = dataclasses.replace(manifest, golden=Golden.from_json(golden))

            with steps.step(f"writing the bundle to {writer.out} (large weights once, in {STORE_FILE})"):
                from dfma.export.weight_store import pack_folder

                pack_folder(writer.tmp)
                manifest = dataclasses.replace(manifest, export={**(manifest.export or {}),
                                                                 "seconds": round(steps.elapsed(), 1)})
                out = writer.commit(manifest)
    from dfma.contract.bundle import open_bundle

    return ExportResult(out, open_bundle(out, verify=False).manifest, steps.timings, steps.elapsed())
