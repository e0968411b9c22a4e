"""Build a TensorRT engine from a bundle's ONNX graph (TensorRT 10 / 11 Python API, strongly typed).

Precision lives in the ONNX file (fp16 casts, Q/DQ nodes), so the network is created strongly typed
(``NetworkDefinitionCreationFlag.STRONGLY_TYPED``; TensorRT 11 is always strongly typed and ignores the
flag) and no builder precision flag or calibrator is used. One optimization profile covers the
manifest's limits: batch ``1..limits.max_batch``, sequence ``2..limits.max_length``. A timing cache is
loaded before and saved after the build. The INT8 graph's U8 activation Q/DQ are rewritten to symmetric S8
first (TensorRT accepts zero point 0 only; same real ranges, see ``dfma.export.quantize.to_symmetric_s8``).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from dfma.contract.errors import BundleError, ExportError
from dfma.backends.trt_runner import import_tensorrt  # noqa: F401  (re-exported: to_tensorrt checks it first)
from dfma.contract.graphs import CATALOGUE, engine_sources, gpu_slug as slug  # noqa: F401  (slug: engine file names)
from dfma.contract.manifest import Manifest

SOURCE_GRAPHS = engine_sources()  # engine precision -> graph key (the catalogue's tensorrt column)
ENGINE_PRECISIONS = tuple(SOURCE_GRAPHS)  # fp32, fp16, int8
# TensorRT engine precisions (values of the catalogue's tensorrt column), not graph keys: the default build,
# and the one whose Q/DQ graph TensorRT takes only in symmetric S8 form
FP16_ENGINE, INT8_ENGINE = "fp16", "int8"
MIN_LENGTH = 2


@dataclass
class BuildOptions:
    """What the command line can set."""

    precision: str = FP16_ENGINE
    workspace_mib: int | None = None  # None: TensorRT's default (the device memory)
    opt_batch: int = 8
    opt_length: int = 48
    timing_cache: Path | None = None  # default: BUNDLE/engines/timing-<gpu>-trt<version>.cache
    device: int = 0
    verbose: bool = False


def source_graph(manifest: Manifest | dict, precision: str) -> tuple[str, str]:
    """``(graphs key, file)`` of the ONNX graph an engine of ``precision`` is built from (``manifest`` typed,
    or its JSON); BundleError if absent."""
    manifest = Manifest.from_json(manifest)
    if precision not in SOURCE_GRAPHS:
        raise ExportError(f"--precision {precision!r}: choose one of {list(SOURCE_GRAPHS)}")
    key = SOURCE_GRAPHS[precision]
    graph = manifest.graphs.get(key)
    if graph is None:
        hint = "export/to_onnx.py" if CATALOGUE[key].recipe is None else _precision_command(key)
        raise BundleError(f"the bundle has no {key!r} graph ({precision} engines are built from it); run {hint} first")
    return key, graph.file


def _precision_command(key: str) -> str:
    from dfma.export.recipes import how_to_build

    return how_to_build(key)


def profile_shapes(manifest: Manifest | dict, opts: BuildOptions) -> dict[str, tuple[tuple, tuple, tuple]]:
    """input name -> (min, opt, max) shapes from the manifest's io specs and limits (typed, or its JSON)."""
    manifest = Manifest.from_json(manifest)
    max_batch, max_length = int(manifest.limits.max_batch), int(manifest.limits.max_length)
    sizes = {"batch": (1, min(opts.opt_batch, max_batch), max_batch),
             "sequence": (MIN_LENGTH, min(max(opts.opt_length, MIN_LENGTH), max_length), max_length)}
    shapes: dict[str, tuple[tuple, tuple, tuple]] = {}
    for spec in manifest.io.inputs:
        if any(isinstance(d, str) and d not in sizes for d in spec.shape):
            raise BundleError(f"io.inputs {spec.name!r}: unknown dynamic axis in {list(spec.shape)}",
                              field=f"io.inputs.{spec.name}.shape")
        dims = [sizes[d] if isinstance(d, str) else (d, d, d) for d in spec.shape]
        lo, opt, hi = (tuple(d[i] for d in dims) for i in range(3))
        shapes[spec.name] = (lo, opt, hi)
    return shapes


def onnx_bytes(path: Path, precision: str) -> bytes:
    """The serialized graph TensorRT parses (INT8: with U8 activation Q/DQ rewritten to symmetric S8, and the
    int8 embedding tables expanded back to the fp32 values they hold: TensorRT takes int8 only through Q/DQ)."""
    if precision != INT8_ENGINE:
        from dfma.export.weight_store import inline_bytes

        return inline_bytes(path)  # with the weight store's tensors inline: the parser gets bytes, not a folder
    import onnx

    from dfma.export.embedding_int8 import expand_embeddings
    from dfma.export.quantize import to_symmetric_s8

    model, _ = to_symmetric_s8(expand_embeddings(onnx.load(str(path)))[0])
    return model.SerializeToString()


def build_engine(onnx_model: bytes, shapes: dict, opts: BuildOptions, timing_cache: Path | None) -> tuple[bytes, bytes]:
    """Parse, configure and build; returns ``(serialized engine, serialized timing cache)``.

    Raises BackendUnavailable (no TensorRT) or ExportError (parse or build failure, with the parser's errors).
    """
    import_tensorrt()  # BackendUnavailable (one line) when TensorRT is absent or broken
    import tensorrt as trt
    logger = trt.Logger(trt.Logger.VERBOSE if opts.verbose else trt.Logger.WARNING)
    builder = trt.Builder(logger)
    flags = 0
    if hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags |= 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_model):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT's ONNX parser rejected the graph: {errors[:2000]}")
    config = builder.create_builder_config()
    if opts.workspace_mib:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(opts.workspace_mib) << 20)
    profile = builder.create_optimization_profile()
    for name, (lo, opt, hi) in shapes.items():
        profile.set_shape(name, lo, opt, hi)
    config.add_optimization_profile(profile)
    previous = timing_cache.read_bytes() if timing_cache is not None and timing_cache.is_file() else b""
    cache = config.create_timing_cache(previous)
    config.set_timing_cache(cache, False)  # a cache from another GPU/version is refused, not mixed in
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError("TensorRT could not build the engine (see the TensorRT log above)")
    return bytes(serialized), bytes(config.get_timing_cache().serialize())
