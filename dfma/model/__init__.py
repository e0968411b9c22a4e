"""The eager DFMA model (PyTorch): prompted BERT, ResNet pyramid, PFE, MMF, head."""
from dfma.model.dfma_model import DFMAModel

__all__ = ["DFMAModel"]
