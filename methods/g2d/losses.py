"""G2D's losses: vision-language alignment (VLA, §3.1 Eq. 1) and pixel alignment (PA, §3.3 Eq. 4).

VLA is a symmetric InfoNCE over L2-normalised embeddings at temperature τ = 0.07. ``reduction``
"mean" averages the two directions (default: CLIP's symmetric loss, which §3.1 follows), "sum" adds
them (official ``clip_loss``), "i2t" keeps image→text only (Eq. 1 as written).

Multi-GPU (``gather="all"``, the default): negatives from every rank, DDP-exact
(:mod:`g2d_bench.methods.common.contrastive`, tests/test_ddp_loss.py); ``gather="local"`` (official
code) uses the local batch only.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from g2d_bench.methods.common.contrastive import global_batch, info_nce

#: Dice smoothing, official loss.py ``smooth = 1e-5`` (the paper's Eq. 4 has none)
DICE_SMOOTH = 1e-5
#: BCE weight of the official ``bceDiceLoss`` (Dice + 0.2·BCE); the paper uses ½(Dice + BCE)
OFFICIAL_BCE_WEIGHT = 0.2


def vla_loss(img: torch.Tensor, txt: torch.Tensor, temperature: float = 0.07,
             reduction: str = "mean", gather: str = "all") -> torch.Tensor:
    """VLA loss of the local ``img``/``txt`` embeddings (``b×E``), with negatives from every rank
    (``gather="all"``, DDP-exact: :func:`g2d_bench.methods.common.contrastive.global_batch`) or the
    local batch. ``reduction``: "mean", "sum" or "i2t" (:func:`~g2d_bench.methods.common.contrastive.info_nce`)."""
    return global_batch(lambda i, t: info_nce(i, t, temperature, reduction), img, txt, gather=gather)


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
