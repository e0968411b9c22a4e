"""Scaled dot-product attention shared by every attention block, and the helpers around it.

All attention in DFMA goes through `attend`, so that the exported graph has one recognisable pattern
per block (opset 23 `Attention` in the portable graph; `MultiHeadAttention` after ORT fusion).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def mask_to_bias(mask: Tensor, dtype: torch.dtype = torch.float32) -> Tensor:
    """Key mask (B, Lk) of 1/0 -> additive bias (B, 1, 1, Lk): 0 where kept, dtype's min where masked."""
    keep = mask.to(dtype)
    return ((1.0 - keep) * torch.finfo(dtype).min)[:, None, None, :]


def split_heads(x: Tensor, num_heads: int) -> Tensor:
    """(B, L, H*D) -> (B, H, L, D)."""
    b, length, width = x.shape
    return x.view(b, length, num_heads, width // num_heads).transpose(1, 2)


def merge_heads(x: Tensor) -> Tensor:
    """(B, H, L, D) -> (B, L, H*D)."""
    b, h, length, d = x.shape
    return x.transpose(1, 2).reshape(b, length, h * d)


def attend(q: Tensor, k: Tensor, v: Tensor, bias: Tensor, num_heads: int) -> Tensor:
    """Multi-head attention of projected q (B,Lq,W) over k, v (B,Lk,W) with additive key bias (B,1,1,Lk).

    The bias is expanded to (B, 1, Lq, Lk) first (a view: the same numbers, eager results unchanged):
    ONNX Runtime's kernel for the opset-23 `Attention` op rejects a mask whose query dimension is 1
    instead of broadcasting it, so the exported graph must carry the full query dimension.
    """
    bias = bias.expand(-1, -1, q.shape[1], -1)
    out = F.scaled_dot_product_attention(
        split_heads(q, num_heads), split_heads(k, num_heads), split_heads(v, num_heads), attn_mask=bias
    )
    return merge_heads(out)


class FeedForward(nn.Module):
    """Linear -> exact (erf) GELU -> Linear, the BERT feed-forward."""

    def __init__(self, width: int, inner: int):
        super().__init__()
        self.dense_in = nn.Linear(width, inner)
        self.dense_out = nn.Linear(inner, width)

    def forward(self, x: Tensor) -> Tensor:
        """Apply the feed-forward to the last dimension."""
        return self.dense_out(F.gelu(self.dense_in(x)))
