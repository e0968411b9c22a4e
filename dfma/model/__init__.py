"""The eager PyTorch DFMA model (needs torch)."""
from dfma.model.dfma_model import INPUT_NAMES, OUTPUT_NAMES, DFMAModel

__all__ = ["DFMAModel", "INPUT_NAMES", "OUTPUT_NAMES"]
