"""G2D losses equal their formulas on small, hand-computed examples."""
import math

import pytest
import torch

from g2d_bench.methods.common.contrastive import info_nce
from g2d_bench.methods.g2d.losses import (
    DICE_SMOOTH,
    pa_loss,
    reconstruction_loss,
    soft_dice_loss,
    vla_loss,
)


def _ce(logits: list[float], target: int) -> float:
    return -(logits[target] - math.log(sum(math.exp(v) for v in logits)))


def test_info_nce_matches_hand_computation():
    tau = 0.07
    img = torch.tensor([[2.0, 0.0], [0.0, 3.0]])  # normalised inside: e1, e2
    txt = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    sim = [[1.0, 0.6], [0.0, 0.8]]  # cosine image i · text j
    i2t = (_ce([s / tau for s in sim[0]], 0) + _ce([s / tau for s in sim[1]], 1)) / 2
    t2i = (_ce([sim[0][0] / tau, sim[1][0] / tau], 0) + _ce([sim[0][1] / tau, sim[1][1] / tau], 1)) / 2
    assert info_nce(img, txt, tau, "mean").item() == pytest.approx((i2t + t2i) / 2, rel=1e-5)
    assert info_nce(img, txt, tau, "sum").item() == pytest.approx(i2t + t2i, rel=1e-5)
    assert info_nce(img, txt, tau, "i2t").item() == pytest.approx(i2t, rel=1e-5)
    # without torch.distributed, VLA is the local InfoNCE whatever the gather setting
    assert vla_loss(img, txt, tau, "sum", gather="all").item() == pytest.approx(i2t + t2i, rel=1e-5)


def test_info_nce_perfect_alignment_is_small():
    emb = torch.eye(4)
    assert info_nce(emb, emb).item() < 1e-5
    assert info_nce(emb, emb.roll(1, 0)).item() > 10  # every pair mismatched


LOGITS = torch.tensor([0.0, math.log(3.0)]).view(1, 1, 1, 2)  # sigmoid: 0.5, 0.75
TARGET = torch.tensor([0.0, 1.0]).view(1, 1, 1, 2)
BCE = -(math.log(0.5) + math.log(0.75)) / 2


def test_soft_dice_and_paper_pa_loss():
    dice = 1 - (2 * 0.75 + DICE_SMOOTH) / (0.5 + 0.75 + 1 + DICE_SMOOTH)
    assert soft_dice_loss(torch.sigmoid(LOGITS), TARGET).item() == pytest.approx(dice, rel=1e-6)
    assert pa_loss(LOGITS, TARGET, "paper").item() == pytest.approx(0.5 * (dice + BCE), rel=1e-6)


def test_official_pa_loss_uses_raw_logits():
    ln3 = math.log(3.0)
    dice = 1 - (2 * ln3 + DICE_SMOOTH) / (0 + ln3 + 1 + DICE_SMOOTH)
    assert pa_loss(LOGITS, TARGET, "official").item() == pytest.approx(dice + 0.2 * BCE, rel=1e-6)
    # unbounded: large logits drive the "Dice" term below 0, the paper's stays in [0, 1]
    big = torch.full((1, 1, 2, 2), 50.0)
    ones = torch.ones(1, 1, 2, 2)
    assert pa_loss(big, ones, "official").item() < 0 < pa_loss(big, ones, "paper").item()


def test_dice_is_per_image_then_averaged():
    probs = torch.stack([torch.ones(1, 2, 2), torch.zeros(1, 2, 2)])
    target = torch.ones(2, 1, 2, 2)
    per_image = [1 - (8 + DICE_SMOOTH) / (8 + DICE_SMOOTH), 1 - DICE_SMOOTH / (4 + DICE_SMOOTH)]
    assert soft_dice_loss(probs, target).item() == pytest.approx(sum(per_image) / 2, rel=1e-6)


def test_reconstruction_is_mse_to_the_image():
    out = torch.tensor([0.0, 1.0, 0.5, 0.5]).view(1, 1, 2, 2)
    img = torch.tensor([0.0, 0.0, 1.0, 0.5]).view(1, 1, 2, 2)
    assert reconstruction_loss(out, img).item() == pytest.approx((1 + 0.25) / 4)
