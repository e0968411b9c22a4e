"""Is a bundle's TensorRT engine usable here? (no TensorRT import needed to ask; torch-free)

A serialized engine runs only with the TensorRT version that built it and on the GPU model it was built
for. ``export/to_tensorrt.py`` records both in the engine's manifest entry (``tensorrt_version``,
``gpu_name``, ``compute_capability``); :func:`check_engine` compares them with this machine's and raises
:class:`~dfma.errors.BackendUnavailable` with one line saying what differs, before any deserialization.
:func:`platform_info` reads this machine's TensorRT version and GPU (BackendUnavailable when either is absent).
"""
from __future__ import annotations

import shutil
import subprocess
from collections.abc import Mapping

from dfma.errors import BackendUnavailable, BundleError

RECORDED_KEYS = ("tensorrt_version", "gpu_name")


def tensorrt_version() -> str:
    """``tensorrt.__version__``; BackendUnavailable when TensorRT is not installed or does not load."""
    try:
        import tensorrt as trt
    except Exception as exc:  # ImportError, or a broken install failing to load libnvinfer
        raise BackendUnavailable(f"TensorRT is not available: cannot import tensorrt ({exc})") from None
    return str(trt.__version__)


def gpu_info(device: int = 0) -> dict:
    """``{"gpu_name", "compute_capability"}`` of a CUDA device, via cuda-python, else ``nvidia-smi``.

    Raises BackendUnavailable when there is no NVIDIA GPU (or no way to ask).
    """
    try:
        try:
            from cuda.bindings import runtime as cudart
        except ImportError:
            from cuda import cudart  # cuda-python < 12.6
        err, count = cudart.cudaGetDeviceCount()
        if int(err) == 0 and count > device:
            err, props = cudart.cudaGetDeviceProperties(device)
            if int(err) == 0:
                name = props.name.split(b"\0")[0].decode() if isinstance(props.name, bytes) else str(props.name)
                return {"gpu_name": name.strip(), "compute_capability": f"{props.major}.{props.minor}"}
        raise BackendUnavailable(f"no NVIDIA GPU: CUDA reports {count if int(err) == 0 else 0} device(s)")
    except ImportError:
        pass
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
    return {"tensorrt_version": tensorrt_version(), **gpu_info(device)}


def check_engine(entry: Mapping, platform: Mapping, *, key: str = "engine") -> None:
    """Refuse an engine built with another TensorRT version or for another GPU model.

    ``entry`` is the engine's manifest ``graphs`` entry, ``platform`` :func:`platform_info`'s dict.
    BundleError when the entry does not record both; BackendUnavailable naming both values when one differs.
    """
    missing = [k for k in RECORDED_KEYS if not entry.get(k)]
    if missing:
        raise BundleError(f"graphs[{key!r}]: the manifest does not record {missing}; rebuild the engine "
                          "with export/to_tensorrt.py")
    if str(entry["tensorrt_version"]) != str(platform["tensorrt_version"]):
        raise BackendUnavailable(f"graphs[{key!r}] ({entry.get('file')}): built with TensorRT "
                                 f"{entry['tensorrt_version']}, this machine has {platform['tensorrt_version']}; "
                                 "rebuild it here with export/to_tensorrt.py")
    if str(entry["gpu_name"]).strip() != str(platform["gpu_name"]).strip():
        raise BackendUnavailable(f"graphs[{key!r}] ({entry.get('file')}): built for {entry['gpu_name']}, this "
                                 f"machine has {platform['gpu_name']}; rebuild it here with export/to_tensorrt.py")
    cap = entry.get("compute_capability")
    if cap and platform.get("compute_capability") and str(cap) != str(platform["compute_capability"]):
        raise BackendUnavailable(f"graphs[{key!r}] ({entry.get('file')}): built for compute capability {cap}, "
                                 f"this GPU is {platform['compute_capability']}")


def usable_engines(graphs: Mapping[str, Mapping], platform: Mapping) -> dict[str, str | None]:
    """engine key -> None when usable here, else the reason (one line each); non-engine graphs are skipped."""
    out: dict[str, str | None] = {}
    for key, entry in graphs.items():
        is_engine = isinstance(entry, Mapping) and (entry.get("kind") == "tensorrt"
                                                    or str(entry.get("file", "")).endswith(".plan"))
        if is_engine:
            try:
                check_engine(entry, platform, key=key)
                out[key] = None
            except (BackendUnavailable, BundleError) as exc:
                out[key] = str(exc)
    return out
