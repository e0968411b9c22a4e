"""TensorRT backend: a serialized engine from the bundle's ``engines/`` run with the TensorRT 10 Python API.

Needs ``tensorrt`` and cuda-python (``cuda.bindings.runtime``, or the older ``cuda.cudart``) and a GPU;
without them it raises BackendUnavailable with one line, so that ``backend="auto"`` falls through to ONNX
Runtime. An engine is refused unless the TensorRT version and GPU name recorded for it in the manifest
are this machine's (engines are not portable across either).

Thread safety: execution contexts are not thread-safe, so each call borrows one from a pool (created on
demand, each with its own CUDA stream and device buffers) and returns it afterwards.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from dfma.errors import BackendUnavailable, BundleError, InputError

ENGINE_KINDS = ("tensorrt", "trt", "engine", "tensorrt-engine")


def engine_entries(graphs: Mapping[str, Mapping]) -> dict[str, Mapping]:
    """Manifest ``graphs`` entries that are TensorRT engines (kind ``tensorrt`` or a ``.plan`` file)."""
    return {k: g for k, g in graphs.items()
            if isinstance(g, Mapping) and (str(g.get("kind", "")).lower() in ENGINE_KINDS
                                           or str(g.get("file", "")).endswith(".plan"))}


def _recorded(entry: Mapping, *keys: str) -> Any:
    for key in keys:
        for section in (entry, entry.get("provenance") or {}, entry.get("build") or {}):
            if isinstance(section, Mapping) and section.get(key) is not None:
                return section[key]
    return None


def _import_cuda():
    try:
        import tensorrt as trt
    except Exception as e:  # ImportError, or a broken install failing to load libnvinfer
        raise BackendUnavailable(f"TensorRT is not available: cannot import tensorrt ({e})") from None
    try:
        from cuda.bindings import runtime as cudart
    except Exception:
        try:
            from cuda import cudart  # cuda-python < 12.6
        except Exception as e:
            raise BackendUnavailable(f"TensorRT needs cuda-python for device memory ({e})") from None
    return trt, cudart


def _check(result: tuple, what: str) -> Any:
    err, *rest = result if isinstance(result, tuple) else (result,)
    if int(err) != 0:
        raise BackendUnavailable(f"CUDA call {what} failed with error {int(err)}")
    return rest[0] if len(rest) == 1 else rest


def gpu_name(cudart, device_id: int) -> str:
    """The CUDA device's name; BackendUnavailable when there is no usable GPU."""
    count = _check(cudart.cudaGetDeviceCount(), "cudaGetDeviceCount")
    if count <= device_id:
        raise BackendUnavailable(f"TensorRT needs a GPU: {count} CUDA device(s), asked for device {device_id}")
    props = _check(cudart.cudaGetDeviceProperties(device_id), "cudaGetDeviceProperties")
    name = props.name
    return (name.split(b"\0")[0].decode() if isinstance(name, bytes) else str(name)).strip()


def pick_engine(graphs: Mapping[str, Mapping], precision: str, trt_version: str, gpu: str) -> Mapping:
    """The engine entry for ``precision`` built with this TensorRT version on this GPU model.

    Raises BackendUnavailable saying what the bundle has and why none fits.
    """
    engines = engine_entries(graphs)
    if not engines:
        raise BackendUnavailable("the bundle has no TensorRT engine (engines/*.plan)")
    reasons = []
    for key, entry in engines.items():
        if entry.get("precision") != precision:
            reasons.append(f"{key}: precision {entry.get('precision')}")
            continue
        built_trt = _recorded(entry, "tensorrt_version", "tensorrt", "trt_version")
        built_gpu = _recorded(entry, "gpu_name", "gpu", "device")
        if built_trt is None or built_gpu is None:
            reasons.append(f"{key}: the manifest does not record its TensorRT version and GPU")
        elif str(built_trt) != trt_version:
            reasons.append(f"{key}: built with TensorRT {built_trt}, this machine has {trt_version}")
        elif str(built_gpu).strip() != gpu:
            reasons.append(f"{key}: built on {built_gpu}, this machine has {gpu}")
        else:
            return entry
    raise BackendUnavailable(f"no usable {precision} TensorRT engine: " + "; ".join(reasons))


class _Slot:
    """One execution context with its stream and growable device buffers."""

    def __init__(self, engine, cudart):
        self.context = engine.create_execution_context()
        self.stream = _check(cudart.cudaStreamCreate(), "cudaStreamCreate")
        self.buffers: dict[str, tuple[int, int]] = {}  # name -> (pointer, bytes)

    def buffer(self, cudart, name: str, nbytes: int) -> int:
        ptr, size = self.buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                cudart.cudaFree(ptr)
            ptr = int(_check(cudart.cudaMalloc(max(nbytes, 256)), "cudaMalloc"))
            self.buffers[name] = (ptr, max(nbytes, 256))
        return ptr

    def free(self, cudart) -> None:
        for ptr, _ in self.buffers.values():
            cudart.cudaFree(ptr)
        self.buffers.clear()
        cudart.cudaStreamDestroy(self.stream)


class TensorRTBackend:
    """A deserialized engine: ``run(feeds) -> logits`` float32 ``(batch, num_labels)``."""

    def __init__(self, folder: Path, graphs: Mapping[str, Mapping], precision: str = "fp32",
                 device_id: int = 0, max_contexts: int = 8):
        """Load the engine for ``precision``; raises BackendUnavailable when it cannot run here."""
        trt, cudart = _import_cuda()
        self._trt, self._cudart, self.device_id = trt, cudart, device_id
        _check(cudart.cudaSetDevice(device_id), "cudaSetDevice")
        gpu = gpu_name(cudart, device_id)
        entry = pick_engine(graphs, precision, trt.__version__, gpu)
        path = folder / entry["file"]
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        self.engine = self._runtime.deserialize_cuda_engine(path.read_bytes())
        if self.engine is None:
            raise BundleError(f"{path}: TensorRT could not deserialize the engine")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.inputs = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.outputs = [n for n in names if n not in self.inputs]
        if "logits" not in self.outputs:
            raise BundleError(f"{path}: the engine has no 'logits' output (outputs: {self.outputs})")
        self.max_batch = int(self.engine.get_tensor_profile_shape(self.inputs[0], 0)[2][0])
        self.name, self.graph, self.precision, self.gpu = "tensorrt", entry["file"], precision, gpu
        self._pool: queue.LifoQueue[_Slot] = queue.LifoQueue()
        self._made, self._max, self._lock = 0, max_contexts, threading.Lock()

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
        lo, _, hi = self.engine.get_tensor_profile_shape(name, 0)
        if any(not (a <= s <= b) for a, s, b in zip(lo, shape, hi)):
            raise InputError(f"shape {shape} is outside the engine's profile {tuple(lo)}..{tuple(hi)}",
                             field=name)

    def run(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        """Logits for one padded batch (thread-safe: each call uses its own context and stream)."""
        trt, cudart = self._trt, self._cudart
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
                shape = tuple(ctx.get_tensor_shape(name))
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
            return results["logits"].astype(np.float32, copy=False)
        finally:
            self._pool.put(slot)

    def describe(self) -> dict:
        """What runs: backend, engine file, precision, GPU and TensorRT version."""
        return {"backend": self.name, "graph": self.graph, "precision": self.precision, "gpu": self.gpu,
                "tensorrt": self._trt.__version__, "max_batch": self.max_batch}

    def close(self) -> None:
        """Free the contexts' streams and device buffers."""
        while True:
            try:
                self._pool.get_nowait().free(self._cudart)
            except queue.Empty:
                break
