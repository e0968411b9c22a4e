"""Guards at the runtime's public API (``load``, ``Extractor.predict`` & co): argument checks and typed errors.

Arguments are checked for type and range before any work, and what the layers below still raise that is
not one of the project's typed errors (a library's ``TypeError``, ``OSError``, ``MemoryError``,
``RecursionError``, an ONNX Runtime exception) is turned into one, naming the field or the file:

- preparing a request -> InputError (``field`` = ``sample`` or the field being read) / ImageError;
- running the backend -> BackendUnavailable (the backend and the batch size named);
- loading a bundle -> BundleError (the folder named) or InputError for a bad argument.
"""
from __future__ import annotations

import math
import numbers
import os
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from dfma.contract.errors import (
    BackendUnavailable,
    BundleError,
    DFMAError,
    ImageError,
    InputError,
)
from dfma.contract.limits import Limits, as_limits, check_batch
from dfma.contract.reprs import short_repr

T = TypeVar("T")


def _what(e: BaseException) -> str:
    text = str(e)
    return f"{type(e).__name__}: {text[:200]}" if text else type(e).__name__


def translate(error: BaseException, kind: type[DFMAError], where: str, **kw: Any) -> DFMAError:
    """A typed error of ``kind`` for an untyped ``error`` raised while doing ``where``."""
    if isinstance(error, MemoryError):
        return kind(f"{where}: out of memory", **kw)
    if isinstance(error, RecursionError):
        return kind(f"{where}: nested too deeply (RecursionError)", **kw)
    return kind(f"{where}: {_what(error)}", **kw)


@contextmanager
def untyped_errors_as(kind: type[DFMAError], where: str, **kw: Any) -> Iterator[None]:
    """Let DFMAError through; turn any other exception into ``kind(where: ...)`` (KeyboardInterrupt passes)."""
    try:
        yield
    except DFMAError:
        raise
    except Exception as e:
        raise translate(e, kind, where, **kw) from e


def request_error(error: Exception) -> InputError:
    """The InputError for an untyped exception raised while preparing one request."""
    if isinstance(error, (UnicodeError, ValueError, TypeError, AttributeError, KeyError, IndexError,
                          MemoryError, RecursionError, OverflowError)):
        return translate(error, InputError, "cannot read the request", field="sample")  # type: ignore[return-value]
    return translate(error, InputError, "cannot prepare the request", field="sample")  # type: ignore[return-value]


def guarded_prepare(prepare: Callable[[Any], T], sample: Any) -> T:
    """``prepare(sample)`` with every exception typed: DFMAError as raised, others via :func:`request_error`."""
    try:
        return prepare(sample)
    except DFMAError:
        raise
    except Exception as e:
        if isinstance(e, OSError):  # a file of the request the OS refused
            raise ImageError(f"cannot read an image of the request ({_what(e)})", field="image") from e
        raise request_error(e) from e


def guarded_run(run: Callable[[], T], backend: str, rows: int) -> T:
    """``run()`` on the backend; an untyped failure becomes BackendUnavailable naming the backend."""
    try:
        return run()
    except DFMAError:
        raise
    except Exception as e:
        raise translate(e, BackendUnavailable, f"{backend}: running a batch of {rows} row(s) failed") from e


# ---------------------------------------------------------------- arguments

def batch_list(samples: Any, limits: Limits) -> list:
    """``samples`` as a list of at most ``max_batch_requests`` entries; InputError (field ``samples``)
    for a string, a mapping, a non-iterable or too many."""
    if isinstance(samples, (str, bytes, bytearray, Mapping)) or not isinstance(samples, Iterable):
        raise InputError(f"expected a list (or other iterable) of requests, got {type(samples).__name__}"
                         + (" (use predict() for one request)" if isinstance(samples, Mapping) else ""),
                         field="samples")
    out = []
    try:
        for sample in samples:
            out.append(sample)
            check_batch(len(out), limits)
    except DFMAError:
        raise
    except Exception as e:  # a generator that raises
        raise translate(e, InputError, f"iterating the requests failed after {len(out)}", field="samples") from e
    return out


def bundle_path(bundle: Any) -> Path:
    """The bundle argument as a Path; InputError (field ``bundle``) for a wrong type or a NUL byte."""
    if isinstance(bundle, bool) or not isinstance(bundle, (str, bytes, os.PathLike)):
        raise InputError(f"expected a folder path (str or os.PathLike), got {type(bundle).__name__} "
                         f"{short_repr(bundle, 60)}", field="bundle")
    try:
        path = os.fsdecode(os.fspath(bundle))
    except (TypeError, UnicodeError) as e:
        raise InputError(f"not a usable path ({e})", field="bundle") from None
    if not path or "\0" in path:
        raise InputError(f"not a usable path: {short_repr(path, 60)}", field="bundle")
    return Path(path)


def _choice(value: Any, field: str) -> str:
    if not isinstance(value, str):
        raise InputError(f"expected a name (str), got {type(value).__name__} {short_repr(value, 40)}", field=field)
    return value


def _int(value: Any, field: str, *, minimum: int, optional: bool = False) -> int | None:
    if optional and value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        kind = "None or " if optional else ""
        raise InputError(f"must be {kind}an int >= {minimum}, got {short_repr(value, 40)}", field=field)
    return value


STAGE_MODES = ("auto", "two-stage", "whole")  # load(stages=...): dfma.runtime.backend_choice


def cache_megabytes(value: Any, field: str = "image_cache_mb") -> float | None:
    """``None`` (no cache) or a positive finite number of MiB; InputError naming ``field`` otherwise
    (a bool, a string, NaN, an infinity, zero or less)."""
    if value is None:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise InputError(f"must be None or a positive number of MiB, got {type(value).__name__} "
                         f"{short_repr(value, 40)}", field=field)
    try:
        number = float(value)
    except OverflowError:
        number = math.inf
    if not math.isfinite(number) or number <= 0:
        raise InputError(f"must be None or a positive finite number of MiB, got {short_repr(value, 40)}", field=field)
    return number


def check_load_args(bundle: Any, backend: Any, precision: Any, threads: Any, device_id: Any, max_batch: Any,
                    self_check: Any, limits: Any, stages: Any = "auto",
                    image_cache_mb: Any = None) -> tuple[Path, Limits | Mapping | None]:
    """Type and range of every ``load`` argument (InputError naming it); returns the bundle Path and limits."""
    path = bundle_path(bundle)
    _choice(backend, "backend")
    _choice(precision, "precision")
    _choice(self_check, "self_check")
    if _choice(stages, "stages") not in STAGE_MODES:
        raise InputError(f"must be one of {list(STAGE_MODES)}, got {short_repr(stages, 40)}", field="stages")
    cache_megabytes(image_cache_mb)
    _int(threads, "threads", minimum=0, optional=True)
    _int(device_id, "device_id", minimum=0)
    _int(max_batch, "max_batch", minimum=1, optional=True)
    if limits is not None and not isinstance(limits, (Limits, Mapping)):
        raise InputError(f"expected None, a Limits or a mapping of limit names, got {type(limits).__name__}",
                         field="limits")
    if isinstance(limits, Mapping):
        as_limits(limits)  # unknown names and bad values refused now, before the bundle is read
    return path, limits


def check_bundle_folder(path: Path) -> None:
    """Refuse a bundle path the OS cannot use (too long, a loop) with a BundleError naming it."""
    try:
        os.stat(path)
    except FileNotFoundError:
        return  # open_bundle says "no such directory"
    except OSError as e:
        raise BundleError(f"{path}: cannot use this path ({e.strerror or e})") from None
    except ValueError as e:
        raise InputError(f"not a usable path ({e})", field="bundle") from None
