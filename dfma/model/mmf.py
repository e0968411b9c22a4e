"""MMF, Multimodal Mutual Fusion: text attends to image, image attends to text, a gate balances them.

Our reading (documented as ours): T' = T + CrossAttn(T -> V) and V' = V + CrossAttn(V -> T), each
followed by LayerNorm and a feed-forward; masks cover text padding and absent images. Text may attend to
a learned null token, so a text-only sample (every image absent) is well defined. A learned sigmoid
gate over [mean T'; mean V'] balances the two modalities into one fused vector.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from dfma.config import DFMAConfig
from dfma.model.attention import FeedForward, attend, mask_to_bias


class CrossAttentionBlock(nn.Module):
    """x attends over ctx; residual + LayerNorm; feed-forward; residual + LayerNorm."""

    def __init__(self, cfg: DFMAConfig):
        super().__init__()
        d = cfg.hidden_size
        self.num_heads = cfg.mmf_heads
        self.query, self.key, self.value, self.out = (nn.Linear(d, d) for _ in range(4))
        self.norm_attn = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.ffn = FeedForward(d, cfg.mmf_intermediate_size)
        self.norm_ffn = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, x: Tensor, ctx: Tensor, ctx_mask: Tensor) -> Tensor:
        """x (B,Lq,d) over ctx (B,Lk,d) with key mask (B,Lk) of 1/0."""
        a = attend(self.query(x), self.key(ctx), self.value(ctx), mask_to_bias(ctx_mask), self.num_heads)
        x = self.norm_attn(x + self.dropout(self.out(a)))
        return self.norm_ffn(x + self.dropout(self.ffn(x)))


def masked_mean(x: Tensor, mask: Tensor) -> Tensor:
    """Mean of x (B,L,d) over positions where mask (B,L) is 1; zeros where no position is."""
    weights = mask.to(x.dtype).unsqueeze(-1)
    return (x * weights).sum(1) / weights.sum(1).clamp(min=1.0)


class MutualFusion(nn.Module):
    """Text<->image mutual attention and the balance gate."""

    def __init__(self, cfg: DFMAConfig):
        super().__init__()
        d = cfg.hidden_size
        self.text_to_image = CrossAttentionBlock(cfg)
        self.image_to_text = CrossAttentionBlock(cfg)
        self.null_token = nn.Parameter(torch.zeros(1, 1, d))
        self.balance = nn.Linear(2 * d, d)
        nn.init.normal_(self.null_token, std=0.02)

    def forward(self, text: Tensor, text_mask: Tensor, visual: Tensor, visual_mask: Tensor) -> tuple[Tensor, Tensor]:
        """text (B,L,d), visual (B,V,d) with masks -> (fused text states T' (B,L,d), fused vector (B,d))."""
        batch = text.shape[0]
        null = self.null_token.expand(batch, 1, -1)
        ctx = torch.cat([null, visual], dim=1)
        ctx_mask = torch.cat([torch.ones_like(visual_mask[:, :1]), visual_mask], dim=1)
        text_fused = self.text_to_image(text, ctx, ctx_mask)
        visual_fused = self.image_to_text(visual, text, text_mask)
        t, v = masked_mean(text_fused, text_mask), masked_mean(visual_fused, visual_mask)
        gate = torch.sigmoid(self.balance(torch.cat([t, v], dim=-1)))
        return text_fused, gate * t + (1.0 - gate) * v
