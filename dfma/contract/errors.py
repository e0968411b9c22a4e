"""Typed errors shared by the model, the exporter and the runtimes (torch-free).

Every error names what was wrong: the file, the line or field, and the value, so that a user can fix
the input without reading a traceback.
"""
from __future__ import annotations


class DFMAError(Exception):
    """Base class of every error this project raises on purpose."""


class DataError(DFMAError, ValueError):
    """A malformed data record: names the file, the line number and the field."""

    def __init__(self, message: str, *, file: str | None = None, line: int | None = None,
                 field: str | None = None):
        self.file, self.line, self.field = file, line, field
        where = ":".join(str(p) for p in (file, line) if p is not None)
        prefix = f"{where}: " if where else ""
        suffix = f" (field {field!r})" if field else ""
        super().__init__(f"{prefix}{message}{suffix}")


class InputError(DFMAError, ValueError):
    """A bad inference request (text, spans, arrays): names the field and the value."""

    def __init__(self, message: str, *, field: str | None = None):
        self.field = field
        super().__init__(f"{field}: {message}" if field else message)


class ImageError(InputError):
    """An image that cannot be used: not an image, truncated, too large, wrong shape or dtype."""


def with_field(error: InputError, field: str) -> InputError:
    """The same error type and message, naming ``field`` instead (the old field's prefix dropped)."""
    message = str(error)
    if error.field and message.startswith(f"{error.field}: "):
        message = message[len(error.field) + 2:]
    new = type(error)(message, field=field)
    new.__dict__.update({k: v for k, v in error.__dict__.items() if k != "field"})
    return new


class CheckpointError(DFMAError):
    """A checkpoint folder with a missing, corrupt or mismatched file."""


class BundleError(DFMAError):
    """A bundle folder with a missing file, a hash mismatch or an invalid manifest.

    The message names the file and field; ``file`` and ``field`` (manifest field path such as
    ``preprocess.image_size``) repeat them for programs, where the raiser knows them (else None).
    """

    def __init__(self, message: str, *, file: str | None = None, field: str | None = None):
        self.file, self.field = file, field
        super().__init__(message)


class ExportError(DFMAError):
    """Export could not produce a valid artifact (bad options, tool limits, parity failure)."""


class BackendUnavailable(DFMAError):
    """A requested backend (TensorRT, CUDA) is not available on this machine."""


class OnnxRuntimeMissing(DFMAError, ImportError):
    """``import dfma.runtime`` where no ONNX Runtime wheel is installed: says which extra to install."""
