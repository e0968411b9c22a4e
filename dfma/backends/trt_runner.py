"""TensorRT runner: a serialized engine from the bundle's ``engines/`` on the TensorRT 10 Python API.

Needs ``tensorrt`` and cuda-python (``cuda.bindings.runtime``, or the older ``cuda.cudart``) and a GPU;
without them it raises BackendUnavailable with one line, so that ``backend="auto"`` falls through to ONNX
Runtime. An engine is refused unless the TensorRT version and GPU model recorded for it in the manifest
are this machine's (engines are portable across neither): :func:`check_engine`, which needs no TensorRT.

Thread safety: execution contexts are not thread-safe, so each call borrows one from a pool (created on
demand, each with its own CUDA stream and device buffers) and returns it afterwards.
"""
from __future__ import annotations

import os
import queue
import shutil
import subprocess
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from dfma.backends.base import Runner
from dfma.contract.errors import BackendUnavailable, BundleError, InputError
from dfma.contract.graphs import ENGINE_KIND, GraphKind
from dfma.contract.manifest import GraphEntry, IoSpec, Manifest, as_entry

if TYPE_CHECKING:
    import tensorrt

RECORDED_KEYS = ("tensorrt_version", "gpu_name")


# ---------------------------------------------------------------------------- this machine

def _import_cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart
    except Exception:
        try:
            from cuda import cudart  # cuda-python < 12.6
        except Exception as e:
            raise BackendUnavailable(f"TensorRT needs cuda-python for device memory ({e})") from None
    return cudart


def import_tensorrt() -> Any:
    """The ``tensorrt`` module; BackendUnavailable (one line) when it is absent, broken, or only type stubs."""
    try:
        import tensorrt as trt
    except Exception as e:  # ImportError, or a broken install failing to load libnvinfer
        raise BackendUnavailable(f"TensorRT is not installed here (import tensorrt failed: {e})") from None
    if getattr(trt, "__version__", None) is None:  # a namespace package: tensorrt-stubs' .pyi files only
        raise BackendUnavailable("TensorRT is not installed here (only its type stubs: pip uninstall tensorrt-stubs)")
    return trt


def _check(result: Any, what: str) -> Any:
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise BackendUnavailable(f"CUDA call {what} failed with error {int(err)}")
    return rest[0] if len(rest) == 1 else rest


def gpu_info(device: int = 0) -> dict:
    """``{"gpu_name", "compute_capability"}`` of a CUDA device, via cuda-python, else ``nvidia-smi``.

    Raises BackendUnavailable when there is no NVIDIA GPU (or no way to ask).
    """
    try:
        cudart = _import_cudart()
    except BackendUnavailable:
        cudart = None
    if cudart is not None:
        count = _check(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")
        if count <= device:
            raise BackendUnavailable(f"no NVIDIA GPU: CUDA reports {count} device(s), asked for device {device}")
        props = _check(cudart.cudaGetDeviceProperties(device), "cudaGetDeviceProperties")
        name = props.name.split(b"\0")[0].decode() if isinstance(props.name, bytes) else str(props.name)
        return {"gpu_name": name.strip(), "compute_capability": f"{props.major}.{props.minor}"}
    smi = shutil.which("nvidia-smi")
    if smi is None:
        raise BackendUnavailable("no NVIDIA GPU: neither cuda-python nor nvidia-smi is available")
    try:
        out = subprocess.run([smi, "--query-gpu=name,compute_cap", "--format=csv,noheader"], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise BackendUnavailable(f"no NVIDIA GPU: nvidia-smi failed ({exc})") from None
    rows = [r.split(",") for r in out.stdout.strip().splitlines() if r.strip()]
    if out.returncode != 0 or len(rows) <= device:
        raise BackendUnavailable(f"no NVIDIA GPU: nvidia-smi found {len(rows)} device(s) "
                                 f"({(out.stderr or out.stdout).strip()[:200]})")
    name, cap = (rows[device] + [""])[:2]
    return {"gpu_name": name.strip(), "compute_capability": cap.strip()}


def platform_info(device: int = 0) -> dict:
    """``{"tensorrt_version", "gpu_name", "compute_capability"}`` of this machine (BackendUnavailable)."""
    return {"tensorrt_version": str(import_tensorrt().__version__), **gpu_info(device)}


# ---------------------------------------------------------------------------- engine choice

def check_engine(entry: GraphEntry | Mapping, platform: Mapping, *, key: str = "engine") -> None:
    """Refuse an engine built with another TensorRT version or for another GPU model.

    ``entry`` is the engine's manifest ``graphs`` entry (typed or JSON), ``platform`` :func:`platform_info`'s
    dict. BundleError when the entry does not record both; BackendUnavailable naming both values when one differs.
    """
    entry = as_entry(entry)
    missing = [k for k in RECORDED_KEYS if not entry.get(k)]
    if missing:
        raise BundleError(f"graphs[{key!r}]: the manifest does not record {missing}; rebuild the engine "
                          "with export/to_tensorrt.py", field=f"graphs.{key}")
    if str(entry.tensorrt_version) != str(platform["tensorrt_version"]):
        raise BackendUnavailable(f"graphs[{key!r}] ({entry.file}): built with TensorRT "
                                 f"{entry.tensorrt_version}, this machine has {platform['tensorrt_version']}; "
                                 "rebuild it here with export/to_tensorrt.py")
    if str(entry.gpu_name).strip() != str(platform["gpu_name"]).strip():
        raise BackendUnavailable(f"graphs[{key!r}] ({entry.file}): built for {entry.gpu_name}, this "
                                 f"machine has {platform['gpu_name']}; rebuild it here with export/to_tensorrt.py")
    cap = entry.compute_capability
    if cap and platform.get("compute_capability") and str(cap) != str(platform["compute_capability"]):
        raise BackendUnavailable(f"graphs[{key!r}] ({entry.file}): built for compute capability {cap}, "
                                 f"this GPU is {platform['compute_capability']}")


def pick_engine(manifest: Manifest | Mapping, precision: str, platform: Mapping) -> tuple[str, GraphEntry]:
    """``(key, entry)`` of the engine for ``precision`` that :func:`check_engine` accepts on ``platform``
    (``manifest`` typed, or JSON in tests).

    Raises BackendUnavailable saying what the bundle has and why none fits.
    """
    found = Manifest.from_json(manifest).engines()
    if not found:
        raise BackendUnavailable("the bundle has no TensorRT engine (engines/*.plan)")
    reasons = []
    for key, entry in found.items():
        if entry.precision != precision:
            reasons.append(f"{key}: precision {entry.precision}")
            continue
        try:
            check_engine(entry, platform, key=key)
        except (BackendUnavailable, BundleError) as exc:
            reasons.append(str(exc))
            continue
        return key, entry
    raise BackendUnavailable(f"no usable {precision} TensorRT engine: " + "; ".join(reasons))


# ---------------------------------------------------------------------------- runner

def _dims(dims: tensorrt.Dims) -> tuple[int, ...]:
    """``Dims`` as a tuple (the stubs give Dims ``__len__``/``__getitem__`` but no ``__iter__``)."""
    return tuple(dims[i] for i in range(len(dims)))


class _Slot:
    """One execution context with its stream and growable device buffers."""

    def __init__(self, engine: tensorrt.ICudaEngine, cudart: Any):
        self.context = engine.create_execution_context()
        self.stream = _check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.buffers: dict[str, tuple[int, int]] = {}  # name -> (pointer, bytes)

    def buffer(self, cudart: Any, name: str, nbytes: int) -> int:
        ptr, size = self.buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                cudart.cudaFree(ptr)
            ptr = int(_check(cudart.cudaMalloc(max(nbytes, 256)), "cudaMalloc"))
            self.buffers[name] = (ptr, max(nbytes, 256))
        return ptr

    def free(self, cudart: Any) -> None:
        for ptr, _ in self.buffers.values():
            cudart.cudaFree(ptr)
        self.buffers.clear()
        cudart.cudaStreamDestroy(self.stream)


class TensorRTRunner(Runner):
    """A deserialized engine (``path``), refused unless its manifest ``entry`` was built on this platform."""

    name = "tensorrt"

    def __init__(self, path: str | os.PathLike, *, entry: GraphEntry | Mapping | None = None, device_id: int = 0,
                 max_contexts: int = 8, io: IoSpec | Mapping | None = None, graph: GraphKind | None = None, **_: Any):
        """Nothing is loaded until :meth:`open`; ``entry`` is the engine's manifest ``graphs`` entry."""
        super().__init__(io=io, graph=graph, where=str(path))
        self.path, self.entry, self.device_id, self._max = Path(path), as_entry(entry or {}), device_id, max_contexts
        self._pool: queue.LifoQueue[_Slot] = queue.LifoQueue()
        self._made, self._lock = 0, threading.Lock()
        self.engine: tensorrt.ICudaEngine = None  # type: ignore[assignment]  # set by _open; used only once open
        self.max_batch = 0

    @classmethod
    def check_available(cls, **options: Any) -> None:
        """TensorRT and cuda-python importable (the GPU itself is checked at open)."""
        import_tensorrt()
        _import_cudart()

    @classmethod
    def runs(cls, graph: GraphKind, **options: Any) -> bool:
        """Engines only."""
        return graph.format == ENGINE_KIND

    def _open(self) -> None:
        import_tensorrt()  # BackendUnavailable (one line) when TensorRT is absent or broken
        import tensorrt as trt

        cudart = _import_cudart()
        self._trt, self._cudart = trt, cudart
        _check(cudart.cudaSetDevice(self.device_id), "cudaSetDevice")
        self.platform = platform_info(self.device_id)
        check_engine(self.entry, self.platform, key=self.graph.key if self.graph else str(self.path))
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise BundleError(f"{self.path}: TensorRT could not deserialize the engine")
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.inputs = [n for n in names if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        if "logits" not in self.outputs:
            raise BundleError(f"{self.path}: the engine has no 'logits' output (outputs: {self.outputs})")
        self.max_batch = int(engine.get_tensor_profile_shape(self.inputs[0], 0)[2][0])
        self.engine = engine

    def metadata(self):
        """Inputs and outputs as the engine declares them (-1 for dynamic dims)."""
        def meta(names):
            return {n: (np.dtype(self._trt.nptype(self.engine.get_tensor_dtype(n))).name,
                        list(_dims(self.engine.get_tensor_shape(n)))) for n in names}

        return meta(self.inputs), meta(self.outputs)

    def _borrow(self) -> _Slot:
        try:
            return self._pool.get_nowait()
        except queue.Empty:
            pass
        with self._lock:
            if self._made < self._max:
                self._made += 1
                return _Slot(self.engine, self._cudart)
        return self._pool.get()

    def _check_shape(self, name: str, shape: tuple[int, ...]) -> None:
        lo, _, hi = map(_dims, self.engine.get_tensor_profile_shape(name, 0))
        if any(not (a <= s <= b) for a, s, b in zip(lo, shape, hi)):
            raise InputError(f"shape {shape} is outside the engine's profile {lo}..{hi}",
                             field=name)

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import tensorrt as trt

        cudart = self._cudart
        _check(cudart.cudaSetDevice(self.device_id), "cudaSetDevice")
        slot = self._borrow()
        try:
            ctx = slot.context
            hosts = []
            for name in self.inputs:
                host = np.ascontiguousarray(feeds[name], dtype=trt.nptype(self.engine.get_tensor_dtype(name)))
                self._check_shape(name, host.shape)
                ctx.set_input_shape(name, host.shape)
                ptr = slot.buffer(cudart, name, host.nbytes)
                _check(cudart.cudaMemcpyAsync(ptr, host.ctypes.data, host.nbytes,
                                              cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, slot.stream),
                       "cudaMemcpyAsync")
                ctx.set_tensor_address(name, ptr)
                hosts.append(host)  # keep alive until the stream is synchronised
            results = {}
            for name in self.outputs:
                shape = _dims(ctx.get_tensor_shape(name))
                out = np.empty(shape, dtype=trt.nptype(self.engine.get_tensor_dtype(name)))
                ctx.set_tensor_address(name, slot.buffer(cudart, name, max(out.nbytes, 1)))
                results[name] = out
            if not ctx.execute_async_v3(int(slot.stream)):
                raise BackendUnavailable("TensorRT execute_async_v3 failed (see the TensorRT log)")
            for name, out in results.items():
                _check(cudart.cudaMemcpyAsync(out.ctypes.data, slot.buffers[name][0], out.nbytes,
                                              cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, slot.stream),
                       "cudaMemcpyAsync")
            _check(cudart.cudaStreamSynchronize(slot.stream), "cudaStreamSynchronize")
            return {name: out.astype(np.float32, copy=False) for name, out in results.items()}
        finally:
            self._pool.put(slot)

    def _describe(self) -> dict:
        return {"gpu": self.platform["gpu_name"], "tensorrt": self._trt.__version__, "max_batch": self.max_batch}

    def _close(self) -> None:
        while True:
            try:
                self._pool.get_nowait().free(self._cudart)
            except queue.Empty:
                break
