"""DFMA: adaptive dual fusion for multimodal relation extraction (eager model, data, training).

Importing `dfma` is cheap and torch-free; the PyTorch model lives in `dfma.model`.
"""
__version__ = "0.1.0"
