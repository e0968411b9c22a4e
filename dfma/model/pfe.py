"""PFE, Pyramid Feature Extraction: pyramid tokens, text-guided relevance, per-layer prompts.

Our reading of the paper (documented as ours): each ResNet stage is average-pooled to a g x g grid
and projected to the text width, giving `4 * g * g` pyramid tokens per image. A text query (masked mean
of the word embeddings) scores every token's relevance with a sigmoid gate, so regions unrelated to the
sentence are suppressed. For every text layer, a softmax gate computed from the query mixes the four
levels cell by cell into `g * g` prompts per image, which a per-layer adapter maps into that layer's
input space; the layer's own key/value projections turn them into its prefix.
"""
from __future__ import annotations

import math
from functools import lru_cache

import torch
from torch import Tensor, nn

from dfma.config import DFMAConfig


@lru_cache(maxsize=32)
def _pool_weights(height: int, width: int, grid: int) -> tuple[tuple[int, int, float], ...]:
    """(input cell, output cell, weight) triples of adaptive average pooling; cached as plain numbers."""
    out = []
    for i in range(grid):
        r0, r1 = (i * height) // grid, -((-(i + 1) * height) // grid)
        for j in range(grid):
            c0, c1 = (j * width) // grid, -((-(j + 1) * width) // grid)
            cells = [r * width + c for r in range(r0, r1) for c in range(c0, c1)]
            out.extend((cell, i * grid + j, 1.0 / len(cells)) for cell in cells)
    return tuple(out)


def adaptive_pool_matrix(height: int, width: int, grid: int, dtype: torch.dtype = torch.float32) -> Tensor:
    """(H*W, grid*grid) matrix equal to `adaptive_avg_pool2d(., grid)`: one MatMul in ONNX, exact bins.

    Built fresh on every call (only the index triples are cached): a cached tensor created while
    tracing for export would be a fake tensor and poison later eager calls.
    """
    pool = torch.zeros(height * width, grid * grid, dtype=dtype)
    rows, cols, weights = zip(*_pool_weights(height, width, grid))
    pool[list(rows), list(cols)] = torch.tensor(weights, dtype=dtype)
    return pool


class PyramidFeatureExtraction(nn.Module):
    """Pyramid tokens (B, N_img, 4*g*g, d), their relevance to the text, and per-layer prompts."""

    def __init__(self, cfg: DFMAConfig, level_channels: tuple[int, ...]):
        super().__init__()
        d, levels = cfg.hidden_size, len(level_channels)
        self.grid, self.levels, self.num_layers = cfg.pyramid_grid, levels, cfg.num_layers
        self.level_proj = nn.ModuleList(nn.Linear(c, d) for c in level_channels)
        self.level_embed = nn.Parameter(torch.zeros(levels, 1, d))
        self.cell_embed = nn.Parameter(torch.zeros(1, cfg.pyramid_grid ** 2, d))
        self.token_norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.query_proj = nn.Linear(d, d)
        self.key_proj = nn.Linear(d, d)
        self.relevance_bias = nn.Parameter(torch.zeros(1))
        self.level_gate = nn.Linear(d, cfg.num_layers * levels)
        self.adapter_weight = nn.Parameter(torch.empty(cfg.num_layers, d, d))
        self.adapter_bias = nn.Parameter(torch.zeros(cfg.num_layers, 1, d))
        self.prompt_norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        nn.init.normal_(self.adapter_weight, std=0.02)
        nn.init.normal_(self.level_embed, std=0.02)
        nn.init.normal_(self.cell_embed, std=0.02)

    def tokens(self, feature_maps: list[Tensor], batch: int) -> Tensor:
        """Stage outputs [(B*N_img, C_l, h, w)] -> tokens (B, N_img, levels*g*g, d), level-major."""
        out = []
        for level, fmap in enumerate(feature_maps):
            n, c, h, w = fmap.shape
            pooled = fmap.reshape(n, c, h * w) @ adaptive_pool_matrix(h, w, self.grid, fmap.dtype)
            out.append(self.level_proj[level](pooled.transpose(1, 2)) + self.level_embed[level] + self.cell_embed)
        tokens = self.token_norm(torch.cat(out, dim=1))
        return tokens.reshape(batch, -1, tokens.shape[1], tokens.shape[2])

    def forward(self, feature_maps: list[Tensor], query: Tensor) -> tuple[Tensor, Tensor]:
        """Return relevance-gated tokens (B, N_img, levels*g*g, d) and prompts (B, layers, N_img*g*g, d)."""
        batch, d = query.shape
        tokens = self.tokens(feature_maps, batch)
        score = torch.einsum("bd,bntd->bnt", self.query_proj(query), self.key_proj(tokens)) / math.sqrt(d)
        tokens = tokens * torch.sigmoid(score + self.relevance_bias).unsqueeze(-1)
        n_img, cells = tokens.shape[1], self.grid ** 2
        by_level = tokens.reshape(batch, n_img, self.levels, cells, d)
        gate = torch.softmax(self.level_gate(query).reshape(batch, self.num_layers, self.levels), dim=-1)
        mixed = torch.einsum("bjl,bnlcd->bjncd", gate, by_level).reshape(batch, self.num_layers, n_img * cells, d)
        prompts = torch.einsum("bjpd,jde->bjpe", mixed, self.adapter_weight) + self.adapter_bias
        return tokens, self.prompt_norm(prompts)
