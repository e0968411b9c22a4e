"""Turn a DFMA bundle into a Triton Inference Server model repository: ``python export/to_triton.py BUNDLE --out REPO``.

Writes the network as two ``onnxruntime_onnx`` models, ``vision`` and ``text`` (the graph's stage graphs,
cut at ``image_features``, each with its own dynamic batcher, so that the image encoder batches across
clients), or with ``--layout whole`` (and where the graph has no stage graphs) as one ``onnxruntime_onnx`` model;
a ``tensorrt_plan`` model (whole: engines have no stage graphs) with ``--kind gpu`` where the bundle holds an
engine; two Python-backend models that run the runtime's own preprocessing and postprocessing
(``dfma.runtime``); and an ensemble that takes raw requests (words, spans, image bytes) and returns the
relation label and its probability (the same interface in both layouts). Every ``config.pbtxt`` is
generated from the bundle's manifest (``dfma.export.triton_config``). The bundle is verified first (every
sha256); the repository is built in a hidden sibling folder and renamed into place, so a failure leaves
nothing behind. Exit status 0 on success, 1 on a bundle or export error (nothing written), 2 on a usage
error.
"""
from __future__ import annotations

import os
import sys

# `python export/to_triton.py` puts export/ first on sys.path; import everything as dfma.export.* instead.
if sys.path and os.path.abspath(sys.path[0] or ".") == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import argparse  # noqa: E402
import json  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from pathlib import Path  # noqa: E402

from dfma.contract.graphs import AUTO, FP32  # noqa: E402
from dfma.contract.errors import BundleError, DFMAError, ExportError  # noqa: E402
from dfma.contract.manifest import GraphEntry, IoSpec, Manifest  # noqa: E402

TEMPLATES = Path(__file__).resolve().parent / "triton_models"
BUNDLE_DIR = "bundle"  # inside a Python model's version folder: the manifest and the files it needs
VERSION = "1"
TRITON_ONNX_FILE, TRITON_PLAN_FILE = "model.onnx", "model.plan"  # Triton's default model file names
CONTRACT_INPUTS = ("input_ids", "attention_mask", "pixel_values", "image_mask")  # what Preprocessor.collate makes
NAME_RE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]*$")
TWO_STAGE, WHOLE = "two-stage", "whole"
LAYOUTS = (TWO_STAGE, WHOLE)
VISION_DELAY_FACTOR = 4  # default vision queue delay: this many times --queue-delay-us


@dataclass
class TritonOptions:
    """Everything the command line can set."""

    bundle: Path
    out: Path
    max_batch: int | None = None  # default: the manifest's limits.max_batch
    instances: int = 1
    kind: str = "cpu"
    preprocess_instances: int = 2
    queue_delay_us: int = 1000
    name: str = "dfma"
    precision: str = "fp32"
    graph: str | None = None  # default: the runtime's choice for the kind and precision
    engine: str | None = None
    pad_to_max_length: bool = True
    force: bool = False
    layout: str | None = None  # default: two-stage where the served graph has stage graphs, else whole
    vision_queue_delay_us: int | None = None  # default: VISION_DELAY_FACTOR x queue_delay_us
    allow_batch_dependent: bool = False  # serve a graph marked batch-dependent (graphs.<key>.batch_dependent)


@dataclass
class TritonResult:
    """What was written: the repository, its models, and notes (what was skipped and why)."""

    repository: Path
    models: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    validated: bool = False
    layout: str = ""


def _check_options(opts: TritonOptions) -> None:
    if opts.kind not in ("cpu", "gpu"):
        raise ExportError(f"--kind must be cpu or gpu, got {opts.kind!r}")
    for flag, value in (("--instances", opts.instances), ("--preprocess-instances", opts.preprocess_instances),
                        ("--max-batch", 1 if opts.max_batch is None else opts.max_batch)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ExportError(f"{flag} must be a positive integer, got {value!r}")
    vision_delay = 0 if opts.vision_queue_delay_us is None else opts.vision_queue_delay_us
    for flag, value in (("--queue-delay-us", opts.queue_delay_us), ("--vision-queue-delay-us", vision_delay)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ExportError(f"{flag} must be an integer >= 0, got {value!r}")
    if opts.layout is not None and opts.layout not in LAYOUTS:
        raise ExportError(f"--layout must be one of {list(LAYOUTS)}, got {opts.layout!r}")
    if not NAME_RE.match(opts.name):
        raise ExportError(f"--name {opts.name!r}: use letters, digits, '_', '.', '-'")


def _max_batch(opts: TritonOptions, manifest: Manifest) -> int:
    limit = manifest.limits.max_batch
    if isinstance(limit, bool) or not isinstance(limit, int) or limit < 1:
        raise BundleError(f"manifest.json: limits.max_batch must be a positive int, got {limit!r}")
    if opts.max_batch is None:
        return limit
    if opts.max_batch > limit:
        raise ExportError(f"--max-batch {opts.max_batch} exceeds the bundle's limits.max_batch {limit} "
                          "(the largest batch its graphs were validated for)")
    return opts.max_batch


def choose_onnx_graph(manifest: Manifest, precision: str, kind: str, allow_batch_dependent: bool = False,
                      notes: list[str] | None = None) -> str:
    """The bundle file the ``onnxruntime_onnx`` model serves: ONNX Runtime's first choice for that device
    (``auto``: the bundle's recorded default for it, else fp32).

    Triton's dynamic batcher puts each request in a batch with others, so a graph the precision step marked
    batch-dependent (``graphs.<key>.batch_dependent``: its answers change with the batch) is served only
    with ``allow_batch_dependent``: ``auto`` then falls back through the recorded ranking (fp32 last), with
    a note; a batch-dependent precision asked for by name is refused (ExportError naming the flag)."""
    from dfma.backends.registry import backend

    device = "cpu" if kind == "cpu" else "gpu"
    asked = precision
    precision = manifest.resolve_precision(precision, device)[0]
    rows = manifest.present()
    runner = backend("onnxruntime-cpu" if kind == "cpu" else "onnxruntime-cuda")

    def first(p: str) -> list[str]:
        return runner.ordered(rows, p)

    keys = first(precision)
    if not keys:
        have = sorted({r.precision for r in rows.values()})
        raise ExportError(f"--precision {precision}: the bundle has no graph of it that ONNX Runtime runs on "
                          f"{'the CPU' if kind == 'cpu' else 'GPUs'} (it has {have}; int8-dynamic is CPU-only)")
    if allow_batch_dependent or not manifest.batch_dependent(keys[0]):
        return rows[keys[0]].file
    if asked != AUTO:
        raise ExportError(f"--precision {asked}: graph {keys[0]} ({rows[keys[0]].file}) is batch-dependent "
                          f"(graphs.{keys[0]}.batch_dependent: its answer to a request changes with the other "
                          "requests Triton's dynamic batcher puts in its batch); pass --allow-batch-dependent "
                          "to serve it anyway")
    rec = manifest.recorded_default(device)
    for p in [*(c.precision for c in (rec.ranked if rec is not None else ())), FP32]:
        found = first(p) if p else []
        if found and not manifest.batch_dependent(found[0]):
            if notes is not None:
                notes.append(f"precision auto: {keys[0]} passed over (batch-dependent: its answers change with "
                             f"the batch; --allow-batch-dependent serves it); serving {p} ({rows[found[0]].file})")
            return rows[found[0]].file
    raise ExportError("--precision auto: every graph is batch-dependent; pass --allow-batch-dependent")


def check_graph_io(path: Path, io: IoSpec, section: str = "io") -> None:
    """Compare the ONNX graph's inputs and outputs with the manifest's ``io`` (or a stage's, named by
    ``section``) through the contract's one check (``dfma.contract.io_spec.check_graph_io``: names, ranks,
    fixed dimensions); needs ``onnx``, else skipped."""
    try:
        import onnx
    except ImportError:
        return
    from dfma.contract.io_spec import check_graph_io as check_io

    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except Exception as e:  # onnx raises DecodeError and friends
        raise BundleError(f"{path}: not a readable ONNX model ({e})") from None

    def tensors(values) -> dict[str, tuple[str, list]]:
        return {v.name: ("", [d.dim_value if d.HasField("dim_value") else d.dim_param
                              for d in v.type.tensor_type.shape.dim]) for v in values}

    check_io(str(path), io, tensors(graph.input), tensors(graph.output), section_name=section)


def choose_layout(manifest: Manifest, graph: str, layout: str | None, notes: list[str]) -> dict[str, str] | None:
    """``{stage: file}`` of ``graph``'s stage graphs for the two-stage layout, None for the whole one.

    ``layout`` None: two-stage where the manifest lists its stage graphs (``graphs.<key>.stages``), else whole.
    ExportError for ``two-stage`` on a graph without stage graphs.
    """
    keys = manifest.keys_of_file(graph)
    staged = manifest.stage_files(keys[0]) if keys else None
    if layout == WHOLE:
        return None
    if staged is None:
        if layout == TWO_STAGE:
            where = f"graphs.{keys[0]}.stages" if keys else "graphs"
            raise ExportError(f"--layout two-stage: {graph} has no stage graphs (manifest.json {where} lists no "
                              "vision and text files); use --layout whole, or re-export the bundle")
        notes.append(f"layout whole: {graph} has no stage graphs in the manifest")
        return None
    return staged


def choose_engine(manifest: Manifest, opts: TritonOptions, notes: list[str]) -> tuple[str, GraphEntry] | None:
    """The engine entry to serve as ``tensorrt_plan`` (``--engine`` or the one of ``--precision``), or None."""
    engines = manifest.engines()
    if opts.engine is not None and opts.engine not in engines:
        raise ExportError(f"--engine {opts.engine!r}: the bundle's engines are {sorted(engines) or 'none'}")
    if not engines:
        return None
    if opts.kind != "gpu":
        notes.append(f"skipped TensorRT engine(s) {sorted(engines)}: --kind cpu (engines run on GPUs only)")
        return None
    if opts.engine is not None:
        key = opts.engine
    else:
        matching = sorted(k for k, e in engines.items() if e.precision == opts.precision)
        if not matching:
            notes.append(f"skipped TensorRT engine(s) {sorted(engines)}: none of precision {opts.precision}")
            return None
        key = matching[0]
    entry = engines[key]
    notes.append(f"TensorRT engine {key!r} ({entry.file}) built with TensorRT {entry.tensorrt_version} on "
                 f"{entry.gpu_name}: Triton's TensorRT must be that exact version, on that GPU model")
    return key, entry


def _copy_verified(bundle, rel: str, dest: Path) -> None:
    from dfma.contract.bundle import sha256_file

    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(bundle.path(rel), dest)
    if sha256_file(dest) != bundle.manifest.file_digest(rel):
        raise BundleError(f"{bundle.folder / rel}: changed while being copied (sha256 mismatch)")


def _copy_graph(bundle, rel: str, dest: Path) -> None:
    """Copy graph ``rel`` to ``dest`` as one self-contained file: a graph whose weights live in the bundle's
    weight store (``weights.bin``) is written with them inline, after the graph and the store are checked
    against the manifest (a Triton model folder holds one graph; the whole store beside each would repeat
    every other graph's weights)."""
    from dfma.contract.bundle import sha256_file
    from dfma.contract.weight_store import STORE_FILE, external_refs

    if not external_refs(bundle.path(rel)):
        _copy_verified(bundle, rel, dest)
        return
    for name in (rel, STORE_FILE):
        if sha256_file(bundle.path(name)) != bundle.manifest.file_digest(name):
            raise BundleError(f"{bundle.folder / name}: sha256 does not match manifest.json")
    from dfma.export.weight_store import inline_model

    model = inline_model(bundle.path(rel))
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_bytes(model.SerializeToString())


def _template(name: str) -> str:
    path = TEMPLATES / name
    if not path.is_file():
        raise ExportError(f"{path}: Python-backend model template missing (broken dfma install?)")
    return path.read_text(encoding="utf-8")


def _write_model(root: Path, name: str, config: dict) -> Path:
    from dfma.export.triton_config import to_pbtxt

    folder = root / name
    (folder / VERSION).mkdir(parents=True, exist_ok=True)
    (folder / "config.pbtxt").write_text(to_pbtxt(config), encoding="utf-8")
    return folder / VERSION


def write_network(root: Path, bundle, opts: TritonOptions, max_batch: int, result: TritonResult) -> list:
    """The ``onnxruntime_onnx`` model(s) of the chosen graph: ``<name>_vision`` and ``<name>_text`` (two-stage
    layout) or ``<name>_onnx`` (whole); returns the ensemble's ``[(model name, its io)]`` in order."""
    from dfma.contract.graphs import STAGES
    from dfma.export import triton_config as tc

    manifest, n = bundle.manifest, opts.name
    graph = opts.graph or choose_onnx_graph(manifest, opts.precision, opts.kind, opts.allow_batch_dependent,
                                            result.notes)
    onnx_files = {g.file for g in manifest.graphs.values() if g.file.endswith(".onnx")}
    if graph not in onnx_files:
        raise ExportError(f"--graph {graph!r}: the bundle's ONNX graphs are {sorted(onnx_files)}")
    staged = choose_layout(manifest, graph, opts.layout, result.notes)
    result.layout = WHOLE if staged is None else TWO_STAGE
    parts: list[tuple[str, str, IoSpec, str, dict | None]]  # model, bundle file, io, manifest section, batching
    if staged is None:
        parts = [(f"{n}_onnx", graph, manifest.io, "io", None)]
    else:
        stages = tc.stages_io(manifest)
        vision_delay = (VISION_DELAY_FACTOR * opts.queue_delay_us if opts.vision_queue_delay_us is None
                        else opts.vision_queue_delay_us)
        parts = [(f"{n}_{s}", staged[s], stages[s], f"stages.{s}",
                  tc.stage_batching(s, max_batch, opts.queue_delay_us, vision_delay)) for s in STAGES]
    for name, file, io, section, batching in parts:
        check_graph_io(bundle.path(file), io, section)
        version = _write_model(root, name, tc.network_config(
            name, io, platform="onnxruntime_onnx", filename=TRITON_ONNX_FILE, max_batch=max_batch,
            instances=opts.instances, kind=opts.kind, queue_delay_us=opts.queue_delay_us, batching=batching,
            section=section))
        _copy_graph(bundle, file, version / TRITON_ONNX_FILE)
        result.notes.append(f"{name} serves {file}")
    result.models += [name for name, *_ in parts]
    return [(name, io) for name, _, io, _, _ in parts]


def write_models(root: Path, bundle, opts: TritonOptions, result: TritonResult) -> None:
    """Write every model folder of the repository under ``root``."""
    from dfma.export import triton_config as tc

    from dfma.contract.manifest_digest import copy_manifest

    manifest, n = bundle.manifest, opts.name
    io, labels = manifest.io, manifest.labels
    max_batch = _max_batch(opts, manifest)
    pre, post = f"{n}_preprocess", f"{n}_postprocess"
    inputs, _ = tc.io_tensors(io)  # malformed io: BundleError before anything is copied
    if sorted(t["name"] for t in inputs) != sorted(CONTRACT_INPUTS):
        raise BundleError(f"{bundle.folder / 'manifest.json'}: io.inputs are {[t['name'] for t in inputs]}; "
                          f"the preprocess model produces {list(CONTRACT_INPUTS)} (docs/contract.md section 1)")
    result.models += [n, pre]
    networks = write_network(root, bundle, opts, max_batch, result)

    tokenizer_files = [f for f in (manifest.preprocess.tokenizer_file, manifest.preprocess.vocab_file)
                       if f in manifest.files]
    if not tokenizer_files:
        raise BundleError(f"{bundle.folder / 'manifest.json'}: lists no tokenizer.json or vocab.txt in files")
    version = _write_model(root, pre, tc.preprocess_config(
        pre, io, max_batch=max_batch, instances=opts.preprocess_instances,
        pad_to_max_length=opts.pad_to_max_length))
    (version / "model.py").write_text(_template("preprocess.py"), encoding="utf-8")
    for rel in tokenizer_files:
        _copy_verified(bundle, rel, version / BUNDLE_DIR / rel)
    copy_manifest(bundle.folder, version / BUNDLE_DIR)  # with its digest (and signature)

    version = _write_model(root, post, tc.postprocess_config(
        post, io, num_labels=len(labels), max_batch=max_batch, instances=opts.preprocess_instances))
    (version / "model.py").write_text(_template("postprocess.py"), encoding="utf-8")
    (version / BUNDLE_DIR).mkdir()
    copy_manifest(bundle.folder, version / BUNDLE_DIR)  # with its digest (and signature)

    _write_model(root, n, tc.ensemble_config(n, io, num_labels=len(labels), max_batch=max_batch,
                                             preprocess=pre, networks=networks, postprocess=post))
    result.models.append(post)

    engine = choose_engine(manifest, opts, result.notes)
    if engine is not None:
        key, entry = engine
        plan, trt_ensemble = f"{n}_plan", f"{n}_trt"
        try:
            engine_max = int(entry.get("max_batch") or (entry.get("profile") or {}).get("max_batch") or max_batch)
        except (TypeError, ValueError, AttributeError):
            raise BundleError(f"manifest.json: graphs[{key!r}]: unreadable max_batch / profile") from None
        version = _write_model(root, plan, tc.network_config(
            plan, entry.get("io") or io, platform="tensorrt_plan", filename=TRITON_PLAN_FILE,
            max_batch=min(max_batch, engine_max), instances=opts.instances, kind="gpu",
            queue_delay_us=opts.queue_delay_us))
        _copy_verified(bundle, entry.file, version / TRITON_PLAN_FILE)
        _write_model(root, trt_ensemble, tc.ensemble_config(
            trt_ensemble, io, num_labels=len(labels), max_batch=min(max_batch, engine_max),
            preprocess=pre, networks=[(plan, entry.get("io") or io)], postprocess=post))
        result.models += [trt_ensemble, plan]
        result.notes.append(f"{trt_ensemble} serves the engine whole (TensorRT engines have no stage graphs)")


def validate_repository(root: Path) -> bool:
    """Parse every ``config.pbtxt`` with Triton's schema (when tritonclient is installed); ExportError if bad."""
    from dfma.export.triton_config import validate_pbtxt

    checked = [validate_pbtxt(p.read_text(encoding="utf-8"), where=str(p)) for p in sorted(root.glob("*/config.pbtxt"))]
    return bool(checked) and all(checked)


def build_repository(opts: TritonOptions) -> TritonResult:
    """Verify the bundle, write the repository atomically; raises BundleError / ExportError (nothing written)."""
    from dfma.contract.bundle import open_bundle
    from dfma.contract.bundle_writer import AtomicFolder

    _check_options(opts)
    bundle = open_bundle(opts.bundle)  # every sha256 checked
    result = TritonResult(repository=Path(opts.out).absolute())
    with AtomicFolder(opts.out, force=opts.force) as folder:
        tmp = folder.tmp
        try:
            write_models(tmp, bundle, opts, result)
        except OSError as e:
            raise ExportError(f"{folder.out}: cannot write the repository ({e})") from None
        result.validated = validate_repository(tmp)
        info = {"generator": "export/to_triton.py", "bundle": str(bundle.folder.resolve()),
                "created": bundle.manifest.created, "layout": result.layout, "models": result.models,
                "notes": result.notes,
                "options": {k: str(v) if isinstance(v, Path) else v for k, v in vars(opts).items()}}
        (tmp / "dfma_repository.json").write_text(json.dumps(info, indent=2) + "\n", encoding="utf-8")
        result.repository = folder.commit()
    return result


def build_parser() -> argparse.ArgumentParser:
    """The command line (every option documented in --help)."""
    p = argparse.ArgumentParser(prog="python export/to_triton.py", description=__doc__.split("\n\n")[0],
                                epilog="layout, docker run line and client: docs/triton.md")
    p.add_argument("bundle", type=Path, metavar="BUNDLE", help="bundle folder (export/to_onnx.py output)")
    p.add_argument("--out", type=Path, required=True, metavar="REPO", help="model repository to create")
    p.add_argument("--max-batch", type=int, default=None, metavar="N",
                   help="max_batch_size of every model (default and upper bound: the manifest's limits.max_batch)")
    p.add_argument("--instances", type=int, default=1, metavar="N",
                   help="instances of the network per device (instance_group count; default 1)")
    p.add_argument("--kind", choices=("cpu", "gpu"), default="cpu",
                   help="where the network runs: KIND_CPU or KIND_GPU (default cpu); gpu adds the TensorRT "
                        "engine, if the bundle has one")
    p.add_argument("--preprocess-instances", type=int, default=2, metavar="N",
                   help="instances of each Python-backend model (always on the CPU; default 2)")
    p.add_argument("--queue-delay-us", type=int, default=1000, metavar="US",
                   help="dynamic batcher's max_queue_delay_microseconds of the network (two-stage: of the text "
                        "model; default 1000)")
    p.add_argument("--layout", choices=LAYOUTS, default=None,
                   help="two-stage: the graph's vision and text stages as two models, each dynamically batched "
                        "(the image encoder batches across clients); whole: the graph as one model. Default: "
                        "two-stage where the graph has stage graphs in the manifest, else whole. TensorRT engines "
                        "are always whole")
    p.add_argument("--vision-queue-delay-us", type=int, default=None, metavar="US",
                   help=f"two-stage: the vision model's max_queue_delay_microseconds (default "
                        f"{VISION_DELAY_FACTOR} x --queue-delay-us; it batches half or all of --max-batch)")
    p.add_argument("--name", default="dfma", help="ensemble name and prefix of the other models (default dfma)")
    p.add_argument("--precision", default="fp32",
                   help="which ONNX graph (and engine) to serve: auto (the bundle's guarded default), fp32, fp16, int8, "
                        "int8-dynamic (default fp32)")
    p.add_argument("--graph", default=None, metavar="FILE",
                   help="bundle ONNX file to serve (default: what dfma.runtime runs for --precision: the fused "
                        "model.ort.onnx on CPU, the portable opset-23 model.onnx on GPU)")
    p.add_argument("--engine", default=None, metavar="KEY", help="manifest graphs key of the TensorRT engine to serve")
    p.add_argument("--variable-length", action="store_true",
                   help="pad each request only to its own longest row instead of the bundle's max_length "
                        "(less padding, but Triton batches only requests of equal length)")
    p.add_argument("--allow-batch-dependent", action="store_true",
                   help="serve a graph the precision step marked batch-dependent (dynamic INT8: behind the dynamic "
                        "batcher a request's answer would change with the other requests in its batch); without "
                        "it --precision auto passes over such a graph and naming one is refused")
    p.add_argument("--force", action="store_true", help="replace REPO if it exists (atomically, at the end)")
    return p


def main(argv: list[str] | None = None) -> int:
    """Parse arguments, build the repository, print a summary; returns the exit status."""
    args = build_parser().parse_args(argv)
    opts = TritonOptions(bundle=args.bundle, out=args.out, max_batch=args.max_batch, instances=args.instances,
                         kind=args.kind, preprocess_instances=args.preprocess_instances,
                         queue_delay_us=args.queue_delay_us, name=args.name, precision=args.precision,
                         graph=args.graph, engine=args.engine, pad_to_max_length=not args.variable_length,
                         force=args.force, layout=args.layout, vision_queue_delay_us=args.vision_queue_delay_us,
                         allow_batch_dependent=args.allow_batch_dependent)
    try:
        _check_options(opts)
    except ExportError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        result = build_repository(opts)
    except DFMAError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted: nothing was written", file=sys.stderr)
        return 130
    for note in result.notes:
        print(f"note: {note}")
    checked = "checked against Triton's schema" if result.validated else "not schema-checked (no tritonclient)"
    print(f"layout: {result.layout}")
    print(f"models: {', '.join(result.models)}  (config.pbtxt {checked})")
    print(f"repository: {result.repository}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
