"""Eager model -> ONNX with the dynamo exporter: one `torch.export` trace, translated once per opset.

`trace` captures the model once with dynamic ``batch`` and ``sequence`` dimensions; `translate` turns
that program into an ONNX IR model at a given opset (23+ emits the ONNX ``Attention`` op; below 23 the
attention stays MatMul/Softmax, the form the ORT fusion rules match); `finalize` names the dynamic axes,
documents the inputs and drops exporter debug metadata (stack traces with local paths) while keeping
each node's module scope, which the fusion report uses to attribute nodes to attention blocks.
"""
from __future__ import annotations

import contextlib
import io
import logging
import re
import warnings
from collections.abc import Iterator
from pathlib import Path

from dfma.contract.errors import ExportError
from dfma.contract.io_spec import TensorSpec, dynamic_dims

MIN_OPSET = 18  # the dynamo exporter's lowest native opset (below it converts, often badly)
MAX_OPSET = 25  # measured here (torch 2.13, onnxscript 0.7.2, onnxruntime 1.32): 26 silently stays 18
ATTENTION_OPSET = 23  # first opset with the ONNX `Attention` op
KEEP_NODE_METADATA = ("namespace", "pkg.torch.onnx.name_scopes", "pkg.onnxscript.rewriter.rule_name")
SINGLE_FILE_LIMIT = 1_800_000_000  # bytes of weights above which a graph gets an external data file
_NOISY_LOGGERS = ("onnx_ir", "onnxscript", "torch.onnx", "torch._export", "torch.export", "torch.fx")


def check_opset(opset: int) -> int:
    """Refuse an opset these tools cannot produce (ExportError naming the range)."""
    import onnx

    top = min(MAX_OPSET, onnx.defs.onnx_opset_version())
    if not isinstance(opset, int) or not MIN_OPSET <= opset <= top:
        raise ExportError(f"--opset {opset}: the installed exporter produces opsets {MIN_OPSET}..{top} "
                          f"(torch {_version('torch')}, onnx {onnx.__version__}, onnxscript {_version('onnxscript')})")
    return opset


def _version(package: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "not installed"


@contextlib.contextmanager
def quiet_exporter(verbose: bool = False) -> Iterator[None]:
    """Silence the exporter's warnings and log lines (keep them with ``verbose``)."""
    if verbose:
        yield
        return
    levels = {name: logging.getLogger(name).level for name in _NOISY_LOGGERS}
    for name in _NOISY_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore")
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def trace(model, example: dict, specs: list[TensorSpec], *, max_batch: int, max_length: int):
    """`torch.export` the eval-mode model with the dynamic axes of ``specs`` (the contract's IO spec):
    ``batch`` in 1..max_batch, ``sequence`` in 2..max_length."""
    import torch

    from dfma.contract.io_spec import BATCH, SEQUENCE

    dims = {BATCH: torch.export.Dim(BATCH, min=1, max=max_batch),
            SEQUENCE: torch.export.Dim(SEQUENCE, min=2, max=max_length)}
    dynamic = {name: {axis: dims[symbol] for axis, symbol in axes.items()}
               for name, axes in dynamic_dims(specs).items()}
    kwargs = {k: torch.from_numpy(v) for k, v in example.items()}
    model.eval()
    try:
        with torch.no_grad():
            return torch.export.export(model, (), kwargs=kwargs, dynamic_shapes=dynamic, strict=False)
    except Exception as exc:
        raise ExportError(f"torch.export failed: {type(exc).__name__}: {str(exc)[:2000]}") from exc


def translate(program, example: dict, opset: int, *, optimize: bool = True):
    """Translate an ExportedProgram to an ONNX IR model at ``opset`` (ExportError if it ends elsewhere).

    ``optimize`` runs the exporter's graph optimizer (constant folding, BatchNorm folding, ...); the ORT
    graph skips it because the fusion pass runs the same optimizer first.
    """
    import torch

    kwargs = {k: torch.from_numpy(v) for k, v in example.items()}
    try:
        onnx_program = torch.onnx.export(program, (), kwargs=kwargs, dynamo=True, opset_version=opset,
                                         input_names=list(example), output_names=["logits"],
                                         optimize=optimize, verbose=False, report=False)
    except Exception as exc:
        raise ExportError(f"ONNX translation at opset {opset} failed: {type(exc).__name__}: {str(exc)[:2000]}") from exc
    model = onnx_program.model
    got = model.opset_imports.get("", None)
    if got != opset:
        raise ExportError(f"--opset {opset}: the exporter produced opset {got} instead")
    return model


def _rename_dims(model, names: dict[str, str]) -> None:
    if not names:
        return
    pattern = re.compile(r"\b(" + "|".join(re.escape(k) for k in names) + r")\b")

    def fix(value) -> None:
        if value.shape is None:
            return
        dims, changed = [], False
        for d in value.shape:
            if isinstance(d, int) or d.value is None:
                dims.append(d if isinstance(d, int) else None)
                continue
            new = pattern.sub(lambda m: names[m.group(1)], str(d.value))
            changed |= new != d.value
            dims.append(new)
        if changed:
            import onnx_ir as ir

            value.shape = ir.Shape(dims)

    for value in model.graph.inputs:
        fix(value)
    for node in model.graph.all_nodes() if hasattr(model.graph, "all_nodes") else model.graph:
        for value in node.outputs:
            fix(value)


def finalize(model, inputs: list[TensorSpec], outputs: list[TensorSpec], *, description: str) -> None:
    """Name the dynamic axes after the specs, document inputs/outputs, strip debug metadata (in place)."""
    by_name = {v.name: v for v in model.graph.inputs}
    names: dict[str, str] = {}
    for spec in inputs:
        value = by_name.get(spec.name)
        if value is None:
            raise ExportError(f"exported graph has no input {spec.name!r} (inputs: {sorted(by_name)})")
        for axis, symbol in spec.dynamic_axes().items():
            dim = value.shape[axis] if value.shape is not None else None
            if dim is not None and not isinstance(dim, int) and dim.value and dim.value != symbol:
                names.setdefault(dim.value, symbol)
    _rename_dims(model, names)
    for spec, value in zip(inputs + outputs, list(model.graph.inputs) + list(model.graph.outputs)):
        if value.name != spec.name:
            raise ExportError(f"exported graph I/O order: expected {spec.name!r}, got {value.name!r}")
        value.doc_string = spec.doc
        value.metadata_props.clear()
    model.doc_string = description
    model.graph.doc_string = description
    for node in model.graph:
        for key in [k for k in node.metadata_props if k not in KEEP_NODE_METADATA]:
            del node.metadata_props[key]


def weights_bytes(model) -> int:
    """Bytes of the model's initializers."""
    total = 0
    for value in model.graph.initializers.values():
        if value.const_value is not None:
            total += value.const_value.nbytes
    return total


def save_graph(model, path: Path) -> list[Path]:
    """Write one .onnx file (plus ``<name>.data`` when the weights exceed the protobuf 2 GB limit)."""
    import onnx_ir as ir

    path = Path(path)
    try:
        if weights_bytes(model) > SINGLE_FILE_LIMIT:
            ir.save(model, path, external_data=path.name + ".data")
            return [path, path.with_name(path.name + ".data")]
        ir.save(model, path)
    except OSError as exc:
        raise ExportError(f"{path}: cannot write ({exc.strerror or exc})") from None
    return [path]


def check_graph(path: Path, *, standard_only: bool) -> None:
    """`onnx.checker` (with shape inference); ``standard_only`` refuses any non-ONNX operator domain."""
    import onnx

    try:
        onnx.checker.check_model(str(path), full_check=True)
    except Exception as exc:
        raise ExportError(f"{path.name}: ONNX checker refused the graph: {str(exc)[:1000]}") from None
    if standard_only:
        model = onnx.load(str(path), load_external_data=False)
        foreign = sorted({n.domain for n in model.graph.node if n.domain not in ("", "ai.onnx")})
        if foreign:
            raise ExportError(f"{path.name}: portable graph uses non-standard operator domains {foreign}")
