"""CLIP-style attention pooling with the mean token as the only query (G2D §3.2).

Layout (matches the official checkpoint for ``heads=4``):
``positional_embedding`` ((HW+1)×E), ``mhsa.in_proj_weight`` (3·heads·head_dim × E, rows = q, k, v),
``mhsa.in_proj_bias``, ``mhsa.out_proj.{weight,bias}`` (E × heads·head_dim), ``c_proj.{weight,bias}``.
With ``heads·head_dim = E`` this is exactly ``torch.nn.MultiheadAttention(E, heads)``; for heads
that do not divide E (the paper's 3 heads with E = 128) the inner width is ``heads·head_dim``
(3·43 = 129 by default) and ``out_proj`` maps it back to E (docs/g2d.md).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from g2d_bench.errors import G2DBenchError


class PackedAttention(nn.Module):
    """Multi-head attention with a packed q/k/v in-projection and a free per-head width."""

    def __init__(self, embed_dim: int, heads: int, head_dim: int) -> None:
        super().__init__()
        self.heads, self.head_dim = heads, head_dim
        inner = heads * head_dim
        self.in_proj_weight = nn.Parameter(torch.empty(3 * inner, embed_dim))
        self.in_proj_bias = nn.Parameter(torch.zeros(3 * inner))
        self.out_proj = nn.Linear(inner, embed_dim)
        # torch.nn.MultiheadAttention's initialisation (official code uses that module)
        nn.init.xavier_uniform_(self.in_proj_weight)
        nn.init.zeros_(self.out_proj.bias)

    def _split(self, x: torch.Tensor, part: int) -> torch.Tensor:
        """Project ``B×L×E`` with the q (0), k (1) or v (2) slice → ``B×heads×L×head_dim``."""
        inner = self.heads * self.head_dim
        rows = slice(part * inner, (part + 1) * inner)
        y = F.linear(x, self.in_proj_weight[rows], self.in_proj_bias[rows])
        return y.view(x.shape[0], x.shape[1], self.heads, self.head_dim).transpose(1, 2)

    def forward(self, query: torch.Tensor, tokens: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``query``: B×Q×E, ``tokens``: B×L×E → (B×Q×E output, B×heads×Q×L attention weights)."""
        q, k, v = self._split(query, 0), self._split(tokens, 1), self._split(tokens, 2)
        weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(self.head_dim), dim=-1)
        out = (weights @ v).transpose(1, 2).reshape(query.shape[0], query.shape[1], -1)
        return self.out_proj(out), weights

    def value_out(self, tokens: torch.Tensor) -> torch.Tensor:
        """The value and output projections applied to every token (MaskCLIP): B×L×E → B×L×E."""
        v = self._split(tokens, 2).transpose(1, 2).reshape(tokens.shape[0], tokens.shape[1], -1)
        return self.out_proj(v)


class AttentionPool2d(nn.Module):
    """Mean-token attention pooling over a ``B×E×h×w`` map with per-head weights returned."""

    def __init__(self, grid: int, embed_dim: int, heads: int, head_dim: int, output_dim: int) -> None:
        super().__init__()
        # CLIP / official code: randn / sqrt(E), one row for the mean token + grid² pixel rows
        self.positional_embedding = nn.Parameter(torch.randn(grid * grid + 1, embed_dim) / embed_dim**0.5)
        self.mhsa = PackedAttention(embed_dim, heads, head_dim)
        self.c_proj = nn.Linear(embed_dim, output_dim)

    @property
    def heads(self) -> int:
        return self.mhsa.heads

    def position(self, h: int, w: int) -> torch.Tensor:
        """Positional embedding for an ``h×w`` map, ``(h·w+1)×E``: the stored square grid,
        bicubically interpolated when the map size differs (transfer at another input size)."""
        pos = self.positional_embedding
        n = pos.shape[0] - 1
        grid = math.isqrt(n)
        if grid * grid != n:
            raise G2DBenchError(f"attention-pool positional embedding has {n} pixel rows, not a square grid")
        if (h, w) == (grid, grid):
            return pos
        pix = pos[1:].T.reshape(1, -1, grid, grid)
        pix = F.interpolate(pix, size=(h, w), mode="bicubic", align_corners=False)
        return torch.cat([pos[:1], pix.reshape(pos.shape[1], h * w).T], dim=0)

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """``B×E×h×w`` → ``B×(h·w+1)×E``: mean token first, positional embedding added."""
        b, e, h, w = x.shape
        seq = x.flatten(2).transpose(1, 2)
        seq = torch.cat([seq.mean(dim=1, keepdim=True), seq], dim=1)
        return seq + self.position(h, w).to(seq.dtype)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``x``: B×E×h×w → (global embedding B×output_dim, attention B×heads×h×w).

        The attention is the mean-token query's softmax weight on each pixel token; the mean key
        takes some weight too, so the pixel weights of one head sum to less than 1.
        """
        b, _, h, w = x.shape
        seq = self.tokens(x)
        out, weights = self.mhsa(seq[:, :1], seq)
        return self.c_proj(out[:, 0]), weights[:, :, 0, 1:].reshape(b, self.heads, h, w)

    def dense(self, x: torch.Tensor) -> torch.Tensor:
        """Per-pixel embeddings in the global embedding space (MaskCLIP-style): each pixel token
        (positional embedding included) through the value, output and ``c_proj`` projections.
        ``x``: B×E×h×w → B×output_dim×h×w. Were the attention weights equal across heads, the
        global embedding would be exactly their attention-weighted mean (plus the mean token's
        share), so the two live in one space."""
        b, _, h, w = x.shape
        out = self.c_proj(self.mhsa.value_out(self.tokens(x)[:, 1:]))
        return out.transpose(1, 2).reshape(b, -1, h, w)
