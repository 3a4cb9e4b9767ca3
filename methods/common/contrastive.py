"""InfoNCE over image–text pairs, exact under DDP with negatives gathered from every rank.

Every VLP method here aligns paired embeddings with a cross-entropy over cosine similarities
(G2D's VLA, ConVIRT, MGCA's instance loss, GLoRIA's global loss). :func:`info_nce_directions`
gives the two directions; :func:`info_nce` combines them; :func:`global_batch` runs any such loss
over the global batch under ``torch.distributed``.

Multi-GPU (``gather="all"``): every rank gathers all ranks' embeddings, puts its own slice back
with its gradient, and computes the full N×N loss, so every rank reports the single-process loss
value. Rank r's graph then holds ∂L/∂(its own embeddings) exactly; DistributedDataParallel
*averages* gradients over W ranks, so the loss is returned as ``W·L − (W−1)·L.detach()`` (value L,
gradient W·∂L) and the averaged gradient equals the single-process gradient on the union batch
(tests/test_ddp_loss.py). ``gather="local"`` uses the local batch only (the official G2D, MGCA and
GLoRIA code: no all-gather).
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from g2d_bench.errors import G2DBenchError

REDUCTIONS = ("mean", "sum", "i2t")


def world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when torch.distributed is not initialised."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_keep_local(x: torch.Tensor) -> torch.Tensor:
    """All ranks' ``x`` (``b×…`` each) concatenated in rank order, ``(W·b)×…``; only this rank's
    slice carries gradient. Identity without torch.distributed. Local batches must be equal."""
    import torch.distributed as dist

    rank, size = world()
    if size == 1:
        return x
    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(size)]
    dist.all_gather(sizes, torch.tensor([x.shape[0]], device=x.device))
    if len({int(s) for s in sizes}) != 1:
        raise G2DBenchError(f"gather='all' needs equal per-rank batches (got {[int(s) for s in sizes]}); use drop_last=True")
    parts = [torch.empty_like(x) for _ in range(size)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[rank] = x
    return torch.cat(parts)


def global_batch(loss_fn: Callable[..., torch.Tensor], *local: torch.Tensor, gather: str = "all") -> torch.Tensor:
    """``loss_fn(*tensors)`` over the global batch: each tensor gathered from every rank (rows in
    rank order) and the result scaled so DDP's gradient average is the single-process gradient
    (module docstring). ``gather="local"`` or a single process: ``loss_fn(*local)``. ``loss_fn``
    must return a scalar that is a mean over the batch rows."""
    if gather not in ("all", "local"):
        raise G2DBenchError(f"gather must be 'all' or 'local', got {gather!r}")
    _, size = world()
    if gather == "local" or size == 1:
        return loss_fn(*local)
    loss = loss_fn(*(gather_keep_local(x) for x in local))
    return size * loss - (size - 1) * loss.detach()


def info_nce_directions(img: torch.Tensor, txt: torch.Tensor, temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(CE image→text, CE text→image) of paired rows, each averaged over the N rows.
    ``img``, ``txt``: N×E (L2-normalised here); logits = cos / ``temperature``."""
    img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    logits = img @ txt.T / temperature
    labels = torch.arange(logits.shape[0], device=logits.device)
    return F.cross_entropy(logits, labels), F.cross_entropy(logits.T, labels)


def info_nce(img: torch.Tensor, txt: torch.Tensor, temperature: float = 0.07, reduction: str = "mean",
             i2t_weight: float | None = None) -> torch.Tensor:
    """Symmetric InfoNCE of paired rows ``img``, ``txt`` (N×E) → scalar.

    ``reduction="mean"``: ½(CE(i→t) + CE(t→i)) (CLIP's symmetric form); ``"sum"``: CE(i→t) +
    CE(t→i) (official G2D loss.py, MGCA); ``"i2t"``: CE(i→t) only (G2D Eq. 1 as written).
    ``i2t_weight`` = λ overrides ``reduction`` with λ·CE(i→t) + (1−λ)·CE(t→i) (ConVIRT paper Eq. 3).
    """
    i2t, t2i = info_nce_directions(img, txt, temperature)
    if i2t_weight is not None:
        return i2t_weight * i2t + (1 - i2t_weight) * t2i
    if reduction not in REDUCTIONS:
        raise G2DBenchError(f"InfoNCE reduction must be one of {', '.join(REDUCTIONS)}, got {reduction!r}")
    if reduction == "i2t":
        return i2t
    return (i2t + t2i) / 2 if reduction == "mean" else i2t + t2i
