"""The one place ONNX Runtime sessions are built (runtime, validation, guard, calibration, benchmarks)."""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from dfma.contract.errors import BackendUnavailable, BundleError

OPTIMIZATION = ("all", "basic", "none")  # ORT_ENABLE_ALL, ORT_ENABLE_BASIC (Q/DQ run as written), ORT_DISABLE_ALL
CPU = "CPUExecutionProvider"


def session_options(threads: int | None = None, *, optimization: str = "all", profile_prefix: str | None = None,
                    config: dict[str, str] | None = None, save_optimized: str | os.PathLike | None = None):
    """The project's session settings: ``threads`` intra-op threads (None/0: ONNX Runtime's default),
    one inter-op thread, sequential execution, warnings off; ``optimization`` as in :data:`OPTIMIZATION`;
    ``profile_prefix`` turns ONNX Runtime's profiler on; ``config`` adds session config entries;
    ``save_optimized`` writes the session's optimized graph there."""
    import onnxruntime as ort

    if optimization not in OPTIMIZATION:
        raise ValueError(f"optimization {optimization!r}: choose one of {OPTIMIZATION}")
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = int(threads or 0)
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = {"all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
                                     "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
                                     "none": ort.GraphOptimizationLevel.ORT_DISABLE_ALL}[optimization]
    opts.log_severity_level = 3
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    if save_optimized is not None:
        opts.optimized_model_filepath = str(save_optimized)
    for key, value in (config or {}).items():
        opts.add_session_config_entry(key, value)
    return opts


def ort_session(path: str | os.PathLike, *, threads: int | None = None, providers: Sequence[Any] = (CPU,),
                optimization: str = "all", profile_prefix: str | None = None, config: dict[str, str] | None = None,
                save_optimized: str | os.PathLike | None = None):
    """An ``InferenceSession`` on a graph file with :func:`session_options`.

    Raises BackendUnavailable when onnxruntime is not installed and BundleError naming the file when
    ONNX Runtime cannot load the graph (its own exceptions are untyped).
    """
    try:
        import onnxruntime as ort
    except ImportError as exc:
        raise BackendUnavailable(f"onnxruntime is not installed ({exc})") from None
    opts = session_options(threads, optimization=optimization, profile_prefix=profile_prefix, config=config,
                           save_optimized=save_optimized)
    try:
        return ort.InferenceSession(str(path), opts, providers=list(providers))
    except Exception as exc:  # onnxruntime raises its own untyped exceptions
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise BundleError(f"{Path(path).name}: ONNX Runtime cannot load it: {first[:1000]}") from None
