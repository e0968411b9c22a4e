"""BERT text encoder whose self-attention takes per-layer visual prompts as a key/value prefix.

Parameter names follow Hugging Face's `BertModel` (`embeddings.*`, `encoder.layer.N.*`), so a local
BERT checkpoint loads by name (see `dfma.weights`). Queries stay text-only; the prefix only adds keys
and values, projected by each layer's own key/value weights.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from dfma.config import DFMAConfig
from dfma.model.attention import attend, mask_to_bias


class BertEmbeddings(nn.Module):
    """Word + position + token-type(0) embeddings, LayerNorm, dropout."""

    def __init__(self, cfg: DFMAConfig):
        super().__init__()
        self.word_embeddings = nn.Embedding(cfg.vocab_size, cfg.hidden_size, padding_idx=cfg.pad_token_id)
        self.position_embeddings = nn.Embedding(cfg.max_position_embeddings, cfg.hidden_size)
        self.token_type_embeddings = nn.Embedding(cfg.type_vocab_size, cfg.hidden_size)
        self.LayerNorm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.dropout = nn.Dropout(cfg.dropout)

    def forward(self, input_ids: Tensor) -> Tensor:
        """(B, L) ids -> (B, L, d) embeddings."""
        length = input_ids.shape[1]
        pos = self.position_embeddings.weight[:length]
        x = self.word_embeddings(input_ids) + pos + self.token_type_embeddings.weight[0]
        return self.dropout(self.LayerNorm(x))


class BertSelfAttention(nn.Module):
    """Query/key/value projections; keys and values see [prompt prefix; text]."""

    def __init__(self, cfg: DFMAConfig):
        super().__init__()
        self.num_heads = cfg.num_heads
        self.query = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.key = nn.Linear(cfg.hidden_size, cfg.hidden_size)
        self.value = nn.Linear(cfg.hidden_size, cfg.hidden_size)

    def forward(self, hidden: Tensor, prefix: Tensor, bias: Tensor) -> Tensor:
        """hidden (B,L,d), prefix (B,P,d), bias (B,1,1,P+L) -> context (B,L,d)."""
        kv_input = torch.cat([prefix, hidden], dim=1)
        return attend(self.query(hidden), self.key(kv_input), self.value(kv_input), bias, self.num_heads)


class BertSelfOutput(nn.Module):
    """Output projection + dropout + residual LayerNorm (shared shape by attention and FFN outputs)."""

    def __init__(self, inner: int, width: int, eps: float, dropout: float):
        super().__init__()
        self.dense = nn.Linear(inner, width)
        self.LayerNorm = nn.LayerNorm(width, eps=eps)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: Tensor, residual: Tensor) -> Tensor:
        """LayerNorm(residual + dropout(dense(x)))."""
        return self.LayerNorm(residual + self.dropout(self.dense(x)))


class BertAttention(nn.Module):
    """Self-attention with prompt prefix and its output block."""

    def __init__(self, cfg: DFMAConfig):
        super().__init__()
        self.self = BertSelfAttention(cfg)
        self.output = BertSelfOutput(cfg.hidden_size, cfg.hidden_size, cfg.layer_norm_eps, cfg.dropout)

    def forward(self, hidden: Tensor, prefix: Tensor, bias: Tensor) -> Tensor:
        """One attention sub-layer with residual."""
        return self.output(self.self(hidden, prefix, bias), hidden)


class BertIntermediate(nn.Module):
    """FFN up-projection with exact GELU."""

    def __init__(self, cfg: DFMAConfig):
        super().__init__()
        self.dense = nn.Linear(cfg.hidden_size, cfg.intermediate_size)

    def forward(self, x: Tensor) -> Tensor:
        """gelu(dense(x))."""
        return F.gelu(self.dense(x))


class BertLayer(nn.Module):
    """Attention sub-layer then feed-forward sub-layer."""

    def __init__(self, cfg: DFMAConfig):
        super().__init__()
        self.attention = BertAttention(cfg)
        self.intermediate = BertIntermediate(cfg)
        self.output = BertSelfOutput(cfg.intermediate_size, cfg.hidden_size, cfg.layer_norm_eps, cfg.dropout)

    def forward(self, hidden: Tensor, prefix: Tensor, bias: Tensor) -> Tensor:
        """(B,L,d) -> (B,L,d)."""
        hidden = self.attention(hidden, prefix, bias)
        return self.output(self.intermediate(hidden), hidden)


class BertEncoder(nn.Module):
    """Stack of `num_layers` BertLayers, each with its own prompt prefix."""

    def __init__(self, cfg: DFMAConfig):
        super().__init__()
        self.layer = nn.ModuleList(BertLayer(cfg) for _ in range(cfg.num_layers))


class PromptedBert(nn.Module):
    """BERT whose layer i attends over [prompts[:, i]; text]."""

    def __init__(self, cfg: DFMAConfig):
        super().__init__()
        self.embeddings = BertEmbeddings(cfg)
        self.encoder = BertEncoder(cfg)

    def forward(self, input_ids: Tensor, attention_mask: Tensor, prompts: Tensor, prompt_mask: Tensor) -> Tensor:
        """ids/mask (B,L), prompts (B, layers, P, d), prompt_mask (B,P) -> hidden states (B,L,d)."""
        bias = mask_to_bias(torch.cat([prompt_mask, attention_mask], dim=1))
        hidden = self.embeddings(input_ids)
        for i, layer in enumerate(self.encoder.layer):
            hidden = layer(hidden, prompts[:, i], bias)
        return hidden
