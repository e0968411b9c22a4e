"""A timing contender (a :mod:`dfma.timing` factory) whose "pool" keeps a thread spinning after each call, as
PyTorch's OpenMP threads and ONNX Runtime's intra-op pool do: what :func:`dfma.timing.settle` must wait out."""
from __future__ import annotations

import threading
import time

import numpy as np

from dfma.timing import Calls


def spinning(spin_s: float = 0.15, samples: int = 4) -> Calls:
    """Factory: each call returns at once and leaves a thread busy-looping for ``spin_s`` seconds."""
    def spin() -> None:
        end = time.perf_counter() + spin_s
        while time.perf_counter() < end:
            pass

    def call(i: int) -> np.ndarray:
        threading.Thread(target=spin, daemon=True).start()
        return np.zeros((1, 3), np.float32)

    return Calls(samples, call, {"spin_s": spin_s})
