"""The DFMA network: prompted BERT + ResNet pyramid + PFE + MMF + relation head."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from dfma.config import DFMAConfig
from dfma.model.mmf import MutualFusion, masked_mean
from dfma.model.pfe import PyramidFeatureExtraction
from dfma.model.text_encoder import PromptedBert
from dfma.model.vision import ResNetPyramid



def first_position_onehot(input_ids: Tensor, token_id: int) -> Tensor:
    """(B, L) one-hot float of the first occurrence of `token_id` per row (all zeros if absent).

    Computed with Equal/CumSum so it exports to ONNX and TensorRT without data-dependent shapes
    (no `nonzero`): marker positions are derived inside the graph, not passed as inputs.
    """
    hits = (input_ids == token_id).to(torch.int32)
    return (hits * (torch.cumsum(hits, dim=1) == 1).to(torch.int32)).to(torch.float32)


class DFMAModel(nn.Module):
    """(input_ids, attention_mask, pixel_values, image_mask) -> relation logits (B, num_labels).

    Marker positions: the first `<s>` (head) and `<o>` (tail) pieces, found in-graph from `input_ids`.
    Image slots whose `image_mask` is 0 are ignored entirely (their pixels are replaced by zeros before
    the ResNet and their tokens are masked everywhere), so garbage or NaN there cannot change the output.
    """

    def __init__(self, cfg: DFMAConfig):
        super().__init__()
        self.config = cfg.validate()
        self.text = PromptedBert(cfg)
        self.vision = ResNetPyramid(cfg)
        self.pfe = PyramidFeatureExtraction(cfg, self.vision.out_channels)
        self.mmf = MutualFusion(cfg)
        self.dropout = nn.Dropout(cfg.dropout)
        self.classifier = nn.Linear(3 * cfg.hidden_size, cfg.num_labels)
        self.apply(self._init_weights)

    @staticmethod
    def _init_weights(module: nn.Module) -> None:
        if isinstance(module, (nn.Linear, nn.Embedding)):
            nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
            if isinstance(module, nn.Embedding) and module.padding_idx is not None:
                module.weight.data[module.padding_idx].zero_()
        elif isinstance(module, nn.Conv2d):
            nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")

    def forward(self, input_ids: Tensor, attention_mask: Tensor, pixel_values: Tensor, image_mask: Tensor) -> Tensor:
        """Contract inputs (docs/contract.md section 1) -> logits (B, num_labels)."""
        cfg = self.config
        batch, n_img = image_mask.shape
        present = image_mask.to(torch.bool)
        pixels = torch.where(present[:, :, None, None, None], pixel_values, torch.zeros_like(pixel_values))
        flat = pixels.reshape(batch * n_img, *pixel_values.shape[2:])
        if self.training and not bool(present.any()):
            # Text-only training batch: every visual token is masked, so the output cannot depend on
            # the ResNet. Skip it (the dominant cost of the tiny preset). Eval and export always run it.
            feature_maps = self.vision.zero_levels(flat)
        else:
            feature_maps = self.vision(flat)

        query = masked_mean(self.text.embeddings.word_embeddings(input_ids), attention_mask)
        tokens, prompts = self.pfe(feature_maps, query)
        prompt_mask = image_mask.repeat_interleave(cfg.prompts_per_image, dim=1)
        hidden = self.text(input_ids, attention_mask, prompts, prompt_mask)

        visual = tokens.reshape(batch, -1, tokens.shape[-1])
        visual_mask = image_mask.repeat_interleave(cfg.tokens_per_image, dim=1)
        text_fused, fused = self.mmf(hidden, attention_mask, visual, visual_mask)

        head = torch.einsum("bl,bld->bd", first_position_onehot(input_ids, cfg.head_marker_id), text_fused)
        tail = torch.einsum("bl,bld->bd", first_position_onehot(input_ids, cfg.tail_marker_id), text_fused)
        return self.classifier(self.dropout(torch.cat([head, tail, fused], dim=-1)))

    def example_inputs(self, batch: int = 2, length: int = 16, seed: int = 0) -> dict[str, Tensor]:
        """Random inputs of the contract's shapes, with both markers in every row (for tests and export)."""
        cfg = self.config
        g = torch.Generator().manual_seed(seed)
        ids = torch.randint(10, cfg.vocab_size, (batch, length), generator=g)
        ids[:, 0] = 2
        ids[:, 1], ids[:, 3] = cfg.head_marker_id, cfg.tail_marker_id
        mask = torch.ones(batch, length, dtype=torch.int64)
        mask[0, length - 2:] = 0
        ids[0, length - 2:] = cfg.pad_token_id
        pixels = torch.randn(batch, cfg.num_images, 3, cfg.image_size, cfg.image_size, generator=g)
        image_mask = torch.ones(batch, cfg.num_images, dtype=torch.int64)
        image_mask[0, 2:] = 0
        return dict(input_ids=ids, attention_mask=mask, pixel_values=pixels, image_mask=image_mask)
