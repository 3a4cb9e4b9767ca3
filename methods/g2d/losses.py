"""G2D's losses: vision-language alignment (VLA, §3.1 Eq. 1) and pixel alignment (PA, §3.3 Eq. 4).

VLA is a symmetric InfoNCE over L2-normalised embeddings at temperature τ = 0.07. ``reduction``
"mean" averages the two directions (default: CLIP's symmetric loss, which §3.1 follows), "sum" adds
them (official ``clip_loss``), "i2t" keeps image→text only (Eq. 1 as written).

Multi-GPU (``gather="all"``): every rank gathers all ranks' embeddings, puts its own slice back
with its gradient, and computes the full N×N loss, so every rank reports the single-process loss
value. Rank r's graph then holds ∂L/∂(its own embeddings) exactly; DistributedDataParallel
*averages* gradients over W ranks, so the loss is returned as ``W·L − (W−1)·L.detach()`` (value L,
gradient W·∂L) and the averaged gradient equals the single-process gradient on the union batch
(tests/test_ddp_loss.py). ``gather="local"`` (official code) uses the local batch only.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from g2d_bench.errors import G2DBenchError

#: Dice smoothing, official loss.py ``smooth = 1e-5`` (the paper's Eq. 4 has none)
DICE_SMOOTH = 1e-5
#: BCE weight of the official ``bceDiceLoss`` (Dice + 0.2·BCE); the paper uses ½(Dice + BCE)
OFFICIAL_BCE_WEIGHT = 0.2


def _world() -> tuple[int, int]:
    """(rank, world size); (0, 1) when torch.distributed is not initialised."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def gather_keep_local(x: torch.Tensor) -> torch.Tensor:
    """All ranks' ``x`` (``b×E`` each) concatenated in rank order, ``(W·b)×E``; only this rank's
    slice carries gradient. Identity without torch.distributed. Local batches must be equal."""
    import torch.distributed as dist

    rank, world = _world()
    if world == 1:
        return x
    sizes = [torch.zeros(1, dtype=torch.long, device=x.device) for _ in range(world)]
    dist.all_gather(sizes, torch.tensor([x.shape[0]], device=x.device))
    if len({int(s) for s in sizes}) != 1:
        raise G2DBenchError(f"VLA gather='all' needs equal per-rank batches (got {[int(s) for s in sizes]}); use drop_last=True")
    parts = [torch.empty_like(x) for _ in range(world)]
    dist.all_gather(parts, x.detach().contiguous())
    parts[rank] = x
    return torch.cat(parts)


def info_nce(img: torch.Tensor, txt: torch.Tensor, temperature: float = 0.07,
             reduction: str = "mean") -> torch.Tensor:
    """Symmetric InfoNCE of paired rows. ``img``, ``txt``: N×E (normalised here) → scalar.

    ``reduction="mean"``: ½(CE(i→t) + CE(t→i)) (CLIP's symmetric form; default);
    ``"sum"``: CE(i→t) + CE(t→i) (official loss.py); ``"i2t"``: CE(i→t) only (G2D Eq. 1 as
    written). Each CE is averaged over the N rows.
    """
    img, txt = F.normalize(img, dim=-1), F.normalize(txt, dim=-1)
    logits = img @ txt.T / temperature
    labels = torch.arange(logits.shape[0], device=logits.device)
    i2t = F.cross_entropy(logits, labels)
    if reduction == "i2t":
        return i2t
    total = i2t + F.cross_entropy(logits.T, labels)
    return total / 2 if reduction == "mean" else total


def vla_loss(img: torch.Tensor, txt: torch.Tensor, temperature: float = 0.07,
             reduction: str = "mean", gather: str = "all") -> torch.Tensor:
    """VLA loss of the local ``img``/``txt`` embeddings (``b×E``), with negatives from every rank
    (``gather="all"``, DDP-exact as explained in the module docstring) or the local batch."""
    _, world = _world()
    if gather == "local" or world == 1:
        return info_nce(img, txt, temperature, reduction)
    loss = info_nce(gather_keep_local(img), gather_keep_local(txt), temperature, reduction)
    return world * loss - (world - 1) * loss.detach()


def soft_dice_loss(probs: torch.Tensor, target: torch.Tensor, smooth: float = DICE_SMOOTH) -> torch.Tensor:
    """``1 − (2Σ p·t + s)/(Σp + Σt + s)`` per image and channel, averaged. ``probs``, ``target``:
    B×K×H×W."""
    inter = (probs * target).flatten(2).sum(-1)
    denom = probs.flatten(2).sum(-1) + target.flatten(2).sum(-1)
    return (1 - (2 * inter + smooth) / (denom + smooth)).mean()


def pa_loss(logits: torch.Tensor, target: torch.Tensor, mode: str = "paper") -> torch.Tensor:
    """Pixel-alignment loss of decoder ``logits`` against the pseudo mask ``target`` (B×K×H×W).

    ``"paper"`` (Eq. 4): ½(soft Dice on sigmoid probabilities + BCE), each a per-pixel/per-image
    mean (the paper writes sums, which scale with image size; nnU-Net, which it cites, averages).
    ``"official"`` (loss.py ``bceDiceLoss``): Dice on the raw logits (no sigmoid, unbounded) +
    0.2·BCE-with-logits — a compatibility setting.
    """
    logits, target = logits.float(), target.float()
    bce = F.binary_cross_entropy_with_logits(logits, target)
    if mode == "official":
        b = target.shape[0]
        inter = (logits.reshape(b, -1) * target.reshape(b, -1)).sum(1)
        dice = (2 * inter + DICE_SMOOTH) / (logits.reshape(b, -1).sum(1) + target.reshape(b, -1).sum(1) + DICE_SMOOTH)
        return (1 - dice.mean()) + OFFICIAL_BCE_WEIGHT * bce
    return 0.5 * (soft_dice_loss(torch.sigmoid(logits), target) + bce)


def reconstruction_loss(output: torch.Tensor, images: torch.Tensor) -> torch.Tensor:
    """Table 5c "Reconstruction": MSE of the decoder output (B×1×H×W) to the input image in [0, 1]."""
    return F.mse_loss(output.float(), images.float())
