"""Two runners as one: the ``vision`` stage (pixels -> ``image_features``) then the ``text`` stage.

    staged = TwoStage(vision_runner, text_runner, io=manifest.io, graph=row)
    with staged:
        features = staged.features(feeds)               # once per image
        logits = staged.logits_with(feeds, features)    # per entity pair, features reused
        logits = staged.logits(feeds)                   # both at once: the whole graph's result

It is a :class:`~dfma.backends.base.Runner` of the whole contract (the four inputs -> ``logits``), so
anything that runs a whole graph (parity, the accuracy guard, benchmarks, the runtime) runs the stage
graphs the same way. Thread-safe when both stage runners are.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np

from dfma.backends.base import Runner
from dfma.contract.errors import BundleError
from dfma.contract.graphs import GraphKind
from dfma.contract.manifest import IoSpec
from dfma.contract.io_spec import FEATURES_NAME, OUTPUT_NAME


class TwoStage(Runner):
    """A vision runner and a text runner of the same graph, run one after the other."""

    def __init__(self, vision: Runner, text: Runner, *, io: IoSpec | Mapping | None = None,
                 graph: GraphKind | None = None):
        """``vision`` / ``text``: runners of the two stage files (not opened yet), each checked against its
        own ``stages`` io; ``io``: the whole contract's, checked against the two stages together."""
        super().__init__(io=io, graph=graph, where=f"{vision.where} + {text.where}")
        self.vision, self.text = vision, text
        self.name = getattr(text, "name", "two-stage")

    def _open(self) -> None:
        self.vision.open()
        try:
            self.text.open()
        except Exception:
            self.vision.close()
            raise

    def metadata(self):
        """The inputs of both stages (minus the features) and the text stage's outputs."""
        v_in, v_out = self.vision.metadata()
        t_in, t_out = self.text.metadata()
        if FEATURES_NAME not in v_out or FEATURES_NAME not in t_in:
            raise BundleError(f"{self.where}: the stages do not meet at {FEATURES_NAME!r} (vision outputs "
                              f"{sorted(v_out)}, text inputs {sorted(t_in)})")
        inputs = {**{k: v for k, v in t_in.items() if k != FEATURES_NAME}, **v_in}
        return inputs, t_out

    def features(self, feeds: Mapping[str, np.ndarray]) -> np.ndarray:
        """``image_features`` of a batch's ``pixel_values`` and ``image_mask``."""
        return self.vision.infer(feeds)[FEATURES_NAME]

    def logits_with(self, feeds: Mapping[str, np.ndarray], features: np.ndarray) -> np.ndarray:
        """Logits of a batch's text inputs with its precomputed ``image_features`` (one row per row)."""
        return self.text.infer({**feeds, FEATURES_NAME: features})[OUTPUT_NAME]

    def _infer(self, feeds: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {OUTPUT_NAME: self.logits_with(feeds, self.features(feeds))}

    def _describe(self) -> dict:
        return {"stages": {"vision": self.vision.describe(), "text": self.text.describe()}}

    def describe(self) -> dict:
        """The text stage's description, with both stages under ``stages``."""
        base = super().describe()
        if self.graph is not None:
            base["graph"] = f"{self.vision.where.rsplit('/', 1)[-1]} + {self.text.where.rsplit('/', 1)[-1]}"
        return base

    def _close(self) -> None:
        self.vision.close()
        self.text.close()

    @property
    def max_batch(self) -> Any:
        """The smaller of the stages' batch limits (engines have one), None when neither has."""
        limits = [m for m in (getattr(self.vision, "max_batch", None), getattr(self.text, "max_batch", None)) if m]
        return min(limits) if limits else None
