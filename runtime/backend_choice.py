"""Which backend runs a bundle: ``auto`` tries TensorRT engine > ONNX Runtime GPU > ONNX Runtime CPU.

Every candidate that is skipped leaves one line saying why, so that the extractor can say what it chose
and what it passed over (``Extractor.describe()``, the command line's first stderr line).
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

from dfma.errors import BackendUnavailable

from dfma.runtime.ort_backend import OrtBackend
from dfma.runtime.trt_backend import TensorRTBackend

log = logging.getLogger("dfma.runtime")

BACKENDS = ("auto", "onnxruntime", "onnxruntime-cpu", "onnxruntime-cuda", "onnxruntime-tensorrt", "tensorrt")


def open_backend(folder: Path, manifest: Mapping, *, backend: str = "auto", precision: str = "fp32",
                 threads: int | None = None, device_id: int = 0) -> tuple[object, list[str]]:
    """Open the requested backend; returns ``(backend, skipped)`` with one reason per skipped candidate.

    ``onnxruntime`` means the best ONNX Runtime provider (TensorRT EP > CUDA > CPU);
    ``onnxruntime-cpu`` / ``-cuda`` / ``-tensorrt`` force one. ``tensorrt`` needs an engine in the bundle.
    Raises BackendUnavailable (named backend unusable, or nothing usable) or BundleError (no graph of
    that precision).
    """
    if backend not in BACKENDS:
        raise BackendUnavailable(f"unknown backend {backend!r}; choose one of {list(BACKENDS)}")
    files = manifest.get("files", {})
    # only graphs whose file the manifest hashes (and the loader verified) may run
    graphs = {k: g for k, g in manifest.get("graphs", {}).items()
              if isinstance(g, Mapping) and g.get("file") in files}

    def trt():
        return TensorRTBackend(folder, graphs, precision, device_id=device_id)

    def ort(device: str):
        return lambda: OrtBackend(folder, files, precision, device=device, threads=threads, device_id=device_id)

    if backend == "tensorrt":
        candidates = [("tensorrt", trt)]
    elif backend.startswith("onnxruntime-"):
        candidates = [(backend, ort(backend.split("-", 1)[1]))]
    else:
        candidates = [("tensorrt", trt)] if backend == "auto" else []
        candidates += [("onnxruntime-tensorrt", ort("tensorrt")), ("onnxruntime-cuda", ort("cuda")),
                       ("onnxruntime-cpu", ort("cpu"))]
    skipped: list[str] = []
    for i, (name, make) in enumerate(candidates):
        try:
            chosen = make()
        except BackendUnavailable as e:
            if i == len(candidates) - 1:
                if skipped:
                    raise BackendUnavailable(f"{e} (also skipped: {'; '.join(skipped)})") from None
                raise
            skipped.append(f"{name}: {e}")
            continue
        log.info("dfma.runtime: using %s (%s)%s", name, getattr(chosen, "graph", "?"),
                 f"; skipped {'; '.join(skipped)}" if skipped else "")
        return chosen, skipped
    raise BackendUnavailable("no backend candidates")  # unreachable: the loop returns or raises
