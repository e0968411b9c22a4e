"""The eager PyTorch model as a runner (the reference every graph is validated against; needs torch)."""
from __future__ import annotations

from typing import Any

import numpy as np

from dfma.backends.base import Runner
from dfma.contract.io_spec import INPUT_NAMES, OUTPUT_NAME


class EagerRunner(Runner):
    """``DFMAModel`` in eval mode on numpy feeds; ``bf16`` runs it under CPU bf16 autocast."""

    name = "eager"

    def __init__(self, model: Any, *, bf16: bool = False, **_: Any):
        """Wrap a model (nothing is copied); ``open`` puts it in eval mode."""
        super().__init__(where="eager PyTorch" + (" bf16 autocast" if bf16 else ""))
        self.model, self.bf16 = model, bf16
        self.name = "eager-bf16" if bf16 else "eager"

    def _open(self) -> None:
        self.model.eval()

    def metadata(self):
        """The forward's keyword inputs (dtypes and shapes as the contract's IO spec gives them)."""
        return {name: ("", []) for name in INPUT_NAMES}, {OUTPUT_NAME: ("float32", [])}

    def _infer(self, feeds: dict[str, Any]) -> dict[str, np.ndarray]:
        import torch

        tensors = {k: v if isinstance(v, torch.Tensor) else torch.from_numpy(v) for k, v in feeds.items()}
        with torch.inference_mode():
            if self.bf16:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    out = self.model(**tensors)
            else:
                out = self.model(**tensors)
        return {OUTPUT_NAME: out.detach().float().numpy()}

    def _describe(self) -> dict:
        return {"parameters": sum(p.numel() for p in self.model.parameters()), "bf16": self.bf16}
