"""The result of one request: the relation, its probability and the full distribution."""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Prediction:
    """Top-1 ``relation`` with its ``probability``; ``probabilities`` maps every label to its probability.

    ``label_id`` is the class id of ``relation``; ``logits`` are the raw scores (label order);
    ``id`` echoes the request's id.
    """

    relation: str
    probability: float
    probabilities: dict[str, float]
    label_id: int
    logits: tuple[float, ...]
    id: Any = None

    def to_dict(self) -> dict:
        """A JSON-ready dict (without the logits)."""
        out = {"relation": self.relation, "probability": self.probability,
               "probabilities": self.probabilities}
        if self.id is not None:
            out = {"id": self.id, **out}
        return out


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (stable: the row maximum is subtracted first)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def to_predictions(logits: np.ndarray, labels: Sequence[str], ids: Sequence[Any]) -> list[Prediction]:
    """One Prediction per row of ``logits`` (batch, num_labels); ties go to the lowest class id."""
    probs = softmax(logits)
    out = []
    for row, p, sample_id in zip(logits, probs, ids):
        k = int(np.argmax(row))
        out.append(Prediction(labels[k], float(p[k]), {name: float(v) for name, v in zip(labels, p)}, k,
                              tuple(float(v) for v in row), sample_id))
    return out
