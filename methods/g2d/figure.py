"""Pseudo-mask inspection: a figure like G2D Fig. 4 (A.7) and an overlap check against true masks.

:func:`pseudo_mask_overlap` measures whether pseudo masks carry image-specific meaning (the
question of A.6): the mean IoU of each image's pseudo mask with its true lesion mask, next to two
controls — a random mask of the same area drawn uniformly inside the image's body mask, and the
pseudo mask of another image (a random derangement, A.6's "shuffled"). Only images with a
non-empty true mask are scored; with per-head masks the union over heads is used.
"""
from __future__ import annotations

import os
import textwrap
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

import numpy as np

from g2d_bench.errors import G2DBenchError

if TYPE_CHECKING:
    import torch

    from g2d_bench.methods.g2d.model import G2D
    from g2d_bench.methods.g2d.pseudo_mask import PseudoMasks


def compute_pseudo_masks(model: "G2D", images: "torch.Tensor", head: int | None = None) -> "PseudoMasks":
    """The model's (unshuffled) pseudo masks for ``images`` (B×1×H×W in [0, 1]), in eval mode;
    with ``head``, from that attention head's map alone (same construction otherwise)."""
    import torch

    from g2d_bench.methods.g2d.pseudo_mask import build_pseudo_masks

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            attention = model.encode_image(images)["attention"]
            if head is not None:
                if not 0 <= head < attention.shape[1]:
                    raise G2DBenchError(f"head {head} does not exist: the model has {attention.shape[1]} attention heads")
                attention = attention[:, head:head + 1]
            return build_pseudo_masks(attention, images, replace(model.cfg.mask, shuffle=False))
    finally:
        model.train(was_training)


def _as_masks(true_masks, n: int) -> np.ndarray:
    arr = np.asarray(true_masks.detach().cpu() if hasattr(true_masks, "detach") else true_masks).astype(bool)
    arr = arr.reshape(arr.shape[0], *arr.shape[-2:]) if arr.ndim == 4 else arr
    if arr.ndim != 3 or arr.shape[0] != n:
        raise G2DBenchError(f"true_masks must be B×H×W or B×1×H×W with B = {n}, got shape {arr.shape}")
    return arr


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    union = np.logical_or(a, b).sum()
    return float(np.logical_and(a, b).sum() / union) if union else 1.0


def _standard_error(values) -> float:
    """Standard error of the mean of ``values`` (NaN for fewer than two)."""
    v = np.asarray(values, dtype=float)
    return float(v.std(ddof=1) / np.sqrt(v.size)) if v.size > 1 else float("nan")


def _scored(model: "G2D", images: "torch.Tensor", masks: "PseudoMasks | None", seed: int):
    """(masks, binary pseudo masks B×H×W, body B×H×W, the shuffle derangement or None): what both
    scores below read; ``masks`` computed here when not given."""
    import torch

    from g2d_bench.methods.g2d.pseudo_mask import derangement

    masks = compute_pseudo_masks(model, images) if masks is None else masks
    pseudo = (masks.target > 0.5).any(dim=1).cpu().numpy()
    body = masks.body[:, 0].cpu().numpy() if masks.body is not None else np.ones_like(pseudo)
    other = derangement(len(pseudo), torch.Generator().manual_seed(seed)).numpy() if len(pseudo) > 1 else None
    return masks, pseudo, body, other


def pseudo_mask_overlap(model: "G2D", images: "torch.Tensor", true_masks, seed: int = 0,
                        masks: "PseudoMasks | None" = None) -> dict:
    """Mean IoU of pseudo masks vs true lesion masks, and of three controls: a random mask of the
    same area (pixels drawn uniformly inside the body mask), the same pseudo mask moved by a random
    cyclic shift (same shape and area, another place), and another image's pseudo mask (A.6).

    Also, threshold-free: ``attention_lift`` = mean attention on the lesion's pixels / mean
    attention on the body's pixels (1 = no preference for the lesion), and ``shuffled_lift`` with
    another image's attention map, averaged over images.

    Returns ``{"n", "pseudo_iou", "random_iou", "shifted_iou", "shuffled_iou", "attention_lift",
    "shuffled_lift", "iou_gain_se", "iou_gain_shuffled_se"}`` (NaN where nothing is scored), the last
    two the standard errors of the per-image differences pseudo − random and pseudo − shuffled IoU:
    beating the random mask can come from where lesions usually are (a mask fixed in the lungs does),
    beating the shuffled mask needs the image. Only images with a lesion are scored. ``masks``:
    the model's :func:`compute_pseudo_masks` for ``images`` when already computed.
    """
    masks, pseudo, body, other = _scored(model, images, masks, seed)
    truth = _as_masks(true_masks, pseudo.shape[0])
    keep = np.flatnonzero(truth.reshape(len(truth), -1).any(1))
    rng = np.random.default_rng(seed)
    attention = masks.attention.mean(dim=1).cpu().numpy()  # aggregated over heads, at image size
    scores = {"pseudo_iou": [], "random_iou": [], "shifted_iou": [], "shuffled_iou": [], "attention_lift": [], "shuffled_lift": []}

    def lift(attn: np.ndarray, lesion: np.ndarray, inside: np.ndarray) -> float:
        return float(attn[lesion].mean() / max(attn[inside].mean(), 1e-12))

    for i in keep:
        in_body = body[i] > 0
        lesion = truth[i] & in_body
        scores["pseudo_iou"].append(_iou(pseudo[i], truth[i]))
        inside = np.flatnonzero(body[i].ravel())
        rand = np.zeros(pseudo[i].size, dtype=bool)
        rand[rng.choice(inside, size=min(int(pseudo[i].sum()), inside.size), replace=False)] = True
        scores["random_iou"].append(_iou(rand.reshape(pseudo[i].shape), truth[i]))
        shift = tuple(int(s) for s in rng.integers(0, pseudo[i].shape))
        scores["shifted_iou"].append(_iou(np.roll(pseudo[i], shift, axis=(0, 1)), truth[i]))
        if lesion.any():
            scores["attention_lift"].append(lift(attention[i], lesion, in_body))
        if other is not None:
            scores["shuffled_iou"].append(_iou(pseudo[other[i]], truth[i]))
            if lesion.any():
                scores["shuffled_lift"].append(lift(attention[other[i]], lesion, in_body))
    def se(control: str) -> float:  # of the per-image difference pseudo − control
        return _standard_error(np.subtract(scores["pseudo_iou"], scores[control]) if scores[control] else [])

    return {"n": int(len(keep)), **{k: float(np.mean(v)) if v else float("nan") for k, v in scores.items()},
            "iou_gain_se": se("random_iou"), "iou_gain_shuffled_se": se("shuffled_iou")}


def per_head_overlap(model: "G2D", images: "torch.Tensor", true_masks, seed: int = 0) -> list[dict]:
    """:func:`pseudo_mask_overlap` for each attention head's own pseudo mask, head 0 first: which
    heads find lesions and which hold a location prior (the paper aggregates the heads, §3.3)."""
    import torch

    with torch.no_grad():
        heads = model.encode_image(images[:1])["attention"].shape[1]
    return [pseudo_mask_overlap(model, images, true_masks, seed=seed, masks=compute_pseudo_masks(model, images, head=h))
            for h in range(heads)]


def coverage_by_finding(model: "G2D", images: "torch.Tensor", findings, seed: int = 0,
                        masks: "PseudoMasks | None" = None) -> dict[str, dict]:
    """Which findings the pseudo masks find. ``findings``: ``(image index, finding, H×W bool mask)``
    triples (:func:`~g2d_bench.methods.g2d.inspect_masks.finding_masks`). Per finding, over its
    masks: ``covered``, the mean share of the finding's mask inside its own image's pseudo mask;
    ``shuffled``, inside another image's pseudo mask (the derangement of
    :func:`pseudo_mask_overlap` for the same seed); ``chance``, the pseudo mask's share of the body
    (a mask placed at random covers that share on average); and ``n``. ``covered`` above
    ``shuffled`` is localisation in this image; ``shuffled`` above ``chance`` is where the finding
    usually is; ``shuffled_se`` is the standard error of the per-mask difference ``covered −
    shuffled`` (NaN for a single mask). Returns ``{finding: {"n", "covered", "shuffled", "chance",
    "shuffled_se"}}``, sorted by name. ``masks``: as in :func:`pseudo_mask_overlap`."""
    _, pseudo, body, other = _scored(model, images, masks, seed)
    rows: dict[str, list[tuple[float, float, float]]] = {}
    for i, finding, mask in findings:
        mask = _as_masks(mask[None], 1)[0]
        if mask.shape != pseudo.shape[1:]:
            raise G2DBenchError(f"finding mask {mask.shape} does not match the images {pseudo.shape[1:]}")
        area = mask.sum()
        shuffled = (pseudo[other[i]] & mask).sum() / area if other is not None else float("nan")
        chance = pseudo[i][body[i]].mean() if body[i].any() else float("nan")
        rows.setdefault(finding, []).append(((pseudo[i] & mask).sum() / area, shuffled, chance))
    return {name: {"n": len(v), **dict(zip(("covered", "shuffled", "chance"), map(float, np.mean(v, axis=0)))),
                   "shuffled_se": _standard_error(np.subtract(*np.asarray(v)[:, :2].T))}
            for name, v in sorted(rows.items())}


def placement(model: "G2D", images: "torch.Tensor", true_masks, grid: int = 4,
              masks: "PseudoMasks | None" = None) -> dict[str, np.ndarray]:
    """Where pseudo masks fall and where the lesions are, over the images that have a lesion:
    ``{"pseudo", "lesion"}``, each ``grid×grid``, the mean share of each region's pixels inside the
    pseudo mask / the true mask (image rows top to bottom). A location prior shows as pseudo-mask
    shares concentrated in a few regions; when those lie away from the lesion map, even another
    image's pseudo mask (the shuffled control) scores below a random mask."""
    import torch
    import torch.nn.functional as F

    _, pseudo, _, _ = _scored(model, images, masks, seed=0)
    truth = _as_masks(true_masks, pseudo.shape[0])
    keep = truth.reshape(len(truth), -1).any(1)

    def pooled(arr: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(arr[keep]).float()[:, None]
        return F.adaptive_avg_pool2d(x, grid)[:, 0].mean(0).numpy() if len(x) else np.full((grid, grid), np.nan)

    return {"pseudo": pooled(pseudo), "lesion": pooled(truth)}


def plot_pseudo_masks(model: "G2D", images: "torch.Tensor", reports: Sequence[str],
                      out_png: str | os.PathLike, true_masks=None) -> Path:
    """One row per image: the image with the aggregated attention map, the pseudo mask (true lesion
    outline in red when ``true_masks`` is given), and the report. Written atomically."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from g2d_bench.io import atomic_path

    masks = compute_pseudo_masks(model, images)
    n = images.shape[0]
    if len(reports) != n:
        raise G2DBenchError(f"plot_pseudo_masks: {len(reports)} reports for {n} images")
    truth = _as_masks(true_masks, n) if true_masks is not None else None
    imgs = images[:, 0].detach().cpu().numpy()
    attn = masks.attention.mean(dim=1).cpu().numpy()
    target = masks.target.amax(dim=1).cpu().numpy()
    fig = Figure(figsize=(10, 3.2 * n))
    FigureCanvasAgg(fig)
    axes = fig.subplots(n, 3, squeeze=False)
    for i in range(n):
        a, b, c = axes[i]
        a.imshow(imgs[i], cmap="gray")
        a.imshow(attn[i], cmap="jet", alpha=0.45)
        a.set_title("aggregated attention")
        b.imshow(imgs[i], cmap="gray")
        b.imshow(np.ma.masked_where(target[i] < 0.5, target[i]), cmap="autumn", alpha=0.5, vmin=0, vmax=1)
        if truth is not None and truth[i].any():
            b.contour(truth[i].astype(float), levels=[0.5], colors="red", linewidths=1.2)
        b.set_title("pseudo mask" + (" (red: true lesion)" if truth is not None else ""))
        c.text(0, 1, textwrap.fill(reports[i], 45), va="top", ha="left", fontsize=8, transform=c.transAxes)
        for ax in (a, b, c):
            ax.axis("off")
    fig.tight_layout()
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=100, format=out_png.suffix.lstrip(".") or "png")
    return out_png
