"""Torch-free DFMA runtime: load a bundle, predict relations (numpy, onnxruntime, tokenizers, Pillow only).

    import dfma.runtime as rt
    extractor = rt.load("bundle/")                       # backend="auto", precision="auto"
    p = extractor.predict({"text": "Obama visits Paris", "head": (0, 5), "tail": (13, 18),
                           "image": "post.jpg"})
    p.relation, p.probability, p.probabilities
    extractor.predict_pairs("Obama met Merkel", [(0, 5), (10, 16)])  # every ordered entity pair
    rt.load("bundle/", limits={"max_text_chars": 2000})  # request limits (rt.Limits; docs/contract.md 3.1)

See ``runtime/README.md`` and ``python -m dfma.runtime --help``.
"""
import importlib.util

from dfma.contract.errors import BackendUnavailable, BundleError, DFMAError, ImageError, InputError, OnnxRuntimeMissing


def _onnxruntime_installed() -> bool:
    """Whether an ``onnxruntime`` module can be found (found, not imported: the backends import it)."""
    try:
        return importlib.util.find_spec("onnxruntime") is not None
    except (ImportError, ValueError):  # blocked, or a None left in sys.modules by a failed import
        return False


if not _onnxruntime_installed():
    raise OnnxRuntimeMissing("dfma.runtime needs ONNX Runtime: pip install 'dfma[cpu]' (CPU) or 'dfma[gpu]' "
                             "(NVIDIA GPU), one of the two")
from dfma.contract.limits import Limits
from dfma.contract.prediction import Prediction
from dfma.contract.samples import ImageFolders, Sample, as_sample
from dfma.runtime.extractor import Extractor, load

__all__ = ["load", "Extractor", "Prediction", "Sample", "ImageFolders", "as_sample", "Limits", "DFMAError",
           "InputError", "ImageError", "BundleError", "BackendUnavailable"]
