"""ConVIRT's bidirectional InfoNCE, over the global batch.

For paired rows ``v_i`` (image) and ``u_i`` (report), with cosine similarity and temperature τ:

- ``CE(i→t) = −mean_i log softmax_j(⟨v_i, u_j⟩ / τ)[i]`` — each image picks its report among the batch's;
- ``CE(t→i) = −mean_i log softmax_j(⟨u_i, v_j⟩ / τ)[i]``;
- loss = ``w_i2t · CE(i→t) + w_t2i · CE(t→i)``: MGCA's re-implementation sums both (1, 1; τ 0.07,
  ``mgca/models/convirt/convirt_module.py`` ``info_nce_loss``), the ConVIRT paper weights them λ and
  1 − λ (λ 0.75, τ 0.1, Eq. 3).

Negatives come from the global batch through :func:`g2d_bench.methods.common.contrastive.global_batch`
(``gather="all"``; ``"local"`` = the per-process batch, as MGCA's code).
"""
from __future__ import annotations

import torch

from g2d_bench.methods.common.contrastive import global_batch, info_nce_directions


def _directions(img: torch.Tensor, txt: torch.Tensor, temperature: float) -> torch.Tensor:
    """``[CE(i→t), CE(t→i)]`` (a 2-vector; each entry a mean over the rows) of N×E rows."""
    return torch.stack(info_nce_directions(img, txt, temperature))


def convirt_loss(img: torch.Tensor, txt: torch.Tensor, temperature: float, i2t_weight: float = 1.0,
                 t2i_weight: float = 1.0, gather: str = "all") -> dict[str, torch.Tensor]:
    """``img``, ``txt``: N×E projected embeddings of paired rows (L2-normalised here).

    Returns ``loss`` (``i2t_weight·CE(i→t) + t2i_weight·CE(t→i)``, with graph) and detached ``i2t``,
    ``t2i`` and ``nce`` (their mean: ln N when the towers have collapsed, the scalar the engine's
    collapse warning reads). Under DDP with ``gather="all"`` both directions run over the union
    batch; the per-direction vector is rescaled by :func:`global_batch` entry by entry, which is
    linear, so the combined loss gets the single-process gradient too.
    """
    both = global_batch(lambda a, b: _directions(a, b, temperature), img, txt, gather=gather)
    loss = i2t_weight * both[0] + t2i_weight * both[1]
    detached = both.detach()
    return {"loss": loss, "i2t": detached[0], "t2i": detached[1], "nce": detached.mean()}
