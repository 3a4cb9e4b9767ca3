"""Pseudo segmentation masks from the attention-pool weights of the same forward pass (G2D §3.2).

Pipeline (no gradient): heads aggregated by the mean (Eq. 2) → upsampled to the image size →
attention outside a body mask set to zero → binary mask at a threshold (85th percentile by default,
Eq. 3) → bilateral filter to smooth the block edges → target (binary re-threshold or soft).
Every step is a :class:`~g2d_bench.methods.g2d.config.PseudoMaskConfig` setting (Table 5, A.6).

Body mask (§3.2 "histogram-based thresholding", not specified further; ours): the image as 8-bit,
a 5×5 Gaussian blur, the lower of two three-class Otsu thresholds (scikit-image
``threshold_multiotsu``: air outside the body < aerated lung < soft tissue and bone), the largest
connected component (outer contour) with its holes filled. A two-class Otsu threshold would fall
between lung and soft tissue and cut the lungs out wherever they reach the image edge or the gap
under an arm (it did on a fifth of SynthCXR's images; docs/g2d.md). If the mask leaves less than
``body_min_fraction`` of the image, it is taken as the whole image (a failed segmentation must not
erase the pseudo mask).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from g2d_bench.methods.g2d.config import PseudoMaskConfig


@dataclass
class PseudoMasks:
    """The target and its intermediate maps; all ``B×K×H×W`` (K = 1, or heads without aggregation)."""

    target: torch.Tensor  # float, {0,1} or soft in [0,1]
    attention: torch.Tensor  # aggregated, upsampled attention (before the body mask)
    binary: torch.Tensor  # bool, thresholded mask before smoothing
    body: torch.Tensor | None  # bool B×1×H×W, None when the body mask is off


def body_mask(image: np.ndarray, min_fraction: float = 0.05) -> np.ndarray:
    """``image``: H×W float in [0, 1] → H×W bool body mask (above the lower three-class Otsu
    threshold, largest component, holes filled)."""
    import cv2
    from skimage.filters import threshold_multiotsu

    u8 = np.clip(image * 255.0 + 0.5, 0, 255).astype(np.uint8)
    blurred = cv2.GaussianBlur(u8, (5, 5), 0)
    if np.unique(blurred).size < 3:  # three classes need three grey levels
        return np.ones(image.shape, dtype=bool)
    fg = (blurred > threshold_multiotsu(blurred, classes=3)[0]).astype(np.uint8)
    contours, _ = cv2.findContours(fg, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    out = np.zeros_like(fg)
    if contours:
        cv2.drawContours(out, [max(contours, key=cv2.contourArea)], -1, 1, thickness=cv2.FILLED)
    if out.mean() < min_fraction:
        return np.ones(image.shape, dtype=bool)
    return out.astype(bool)


def body_masks(images: torch.Tensor, min_fraction: float = 0.05) -> torch.Tensor:
    """``images``: B×1×H×W in [0, 1] → B×1×H×W bool (one OpenCV pass per image)."""
    arr = images.detach().float().cpu().numpy()
    masks = np.stack([body_mask(a[0], min_fraction) for a in arr])[:, None]
    return torch.from_numpy(masks).to(images.device)


def aggregate_upsample(attn: torch.Tensor, size: tuple[int, int], cfg: PseudoMaskConfig) -> torch.Tensor:
    """``attn``: B×heads×h×w → B×K×H×W (K = 1 with mean aggregation, else heads)."""
    maps = attn.detach().float()
    if cfg.aggregate == "mean":
        maps = maps.mean(dim=1, keepdim=True)  # §3.2 Eq. 2
    if cfg.upsample == "nearest":
        return F.interpolate(maps, size=size, mode="nearest")
    return F.interpolate(maps, size=size, mode="bilinear", align_corners=False)


def _gmm_masks(flat: torch.Tensor, region: torch.Tensor) -> torch.Tensor:
    """Two-component GMM per map (Table 5d); foreground = the component with the larger mean."""
    from sklearn.mixture import GaussianMixture

    out = torch.zeros_like(flat, dtype=torch.bool)
    rng = np.random.default_rng(0)
    arr, reg = flat.cpu().numpy().astype(np.float64), region.cpu().numpy()
    for idx in np.ndindex(arr.shape[:2]):
        values = arr[idx][reg[idx]]
        if np.ptp(values) == 0:
            continue  # a flat map has no foreground component
        sample = values if values.size <= 4096 else rng.choice(values, 4096, replace=False)
        gmm = GaussianMixture(2, random_state=0).fit(sample[:, None])
        fg = int(np.argmax(gmm.means_[:, 0]))
        out[idx] = torch.from_numpy(gmm.predict(arr[idx][:, None]) == fg)
    return out.to(flat.device)


def _quantile(flat: torch.Tensor, region: torch.Tensor, q: float, batched: bool | None = None) -> torch.Tensor:
    """Per-map ``q``-quantile of the region's values (linear interpolation, numpy's default as in
    the official ``np.quantile``): ``B×K×N`` → ``B×K×1``. Batched ``torch.nanquantile`` off the CPU
    (``batched=None``); on the CPU a loop of ``np.quantile`` (partition-based) is 2–3× faster."""
    if batched if batched is not None else flat.device.type != "cpu":
        return torch.nanquantile(flat.masked_fill(~region, float("nan")), q, dim=-1, keepdim=True)
    arr, reg = flat.numpy(), region.numpy()
    thr = np.empty(arr.shape[:2] + (1,), dtype=arr.dtype)
    for idx in np.ndindex(arr.shape[:2]):
        thr[idx] = np.quantile(arr[idx][reg[idx]], q)
    return torch.from_numpy(thr)


def threshold_masks(maps: torch.Tensor, region: torch.Tensor | None, cfg: PseudoMaskConfig) -> torch.Tensor:
    """``maps``: B×K×H×W; ``region``: B×1×H×W bool (pixels the statistic is taken over) or None
    (all pixels) → B×K×H×W bool mask ``maps >= threshold`` (or ``>``)."""
    flat = maps.flatten(2)
    reg = torch.ones_like(flat, dtype=torch.bool) if region is None else region.flatten(2).expand_as(flat)
    if cfg.threshold == "gmm":
        return _gmm_masks(flat, reg).view_as(maps)
    if cfg.threshold == "mean":
        thr = flat.masked_fill(~reg, float("nan")).nanmean(dim=-1, keepdim=True)
    else:
        thr = _quantile(flat, reg, 0.5 if cfg.threshold == "median" else cfg.quantile)  # Table 5d
    mask = flat >= thr if cfg.compare == ">=" else flat > thr
    return mask.view_as(maps)


def _disc_kernel(sigma_space: float) -> np.ndarray:
    """OpenCV ``bilateralFilter``'s spatial kernel for ``d <= 0``: radius ``round(1.5·sigma)``
    (at least 1), Gaussian weights on the disc of that radius; normalised to sum 1."""
    radius = max(int(np.rint(1.5 * sigma_space)), 1)
    i, j = np.mgrid[-radius : radius + 1, -radius : radius + 1]
    dist2 = (i * i + j * j).astype(np.float64)
    kernel = np.exp(-0.5 * dist2 / sigma_space**2) * (np.sqrt(dist2) <= radius)
    return (kernel / kernel.sum()).astype(np.float32)


def _blur(masks: torch.Tensor, kernel: np.ndarray, batched: bool | None = None) -> torch.Tensor:
    """Normalised spatial filtering of B×K×H×W with reflect-101 borders (OpenCV's default): one
    batched convolution off the CPU (``batched=None``), ``cv2.filter2D`` per image on the CPU."""
    if batched if batched is not None else masks.device.type != "cpu":
        r = kernel.shape[0] // 2
        k = torch.from_numpy(kernel).to(masks)[None, None]
        flat = masks.reshape(-1, 1, *masks.shape[-2:])
        return F.conv2d(F.pad(flat, (r, r, r, r), mode="reflect"), k).view_as(masks)
    import cv2

    arr = masks.numpy()
    out = np.empty_like(arr)
    for idx in np.ndindex(arr.shape[:2]):
        out[idx] = cv2.filter2D(arr[idx], -1, kernel, borderType=cv2.BORDER_REFLECT_101)
    return torch.from_numpy(out)


def smooth_masks(masks: torch.Tensor, sigma_space: float, sigma_color: float) -> torch.Tensor:
    """Bilateral filter (Tomasi & Manduchi 1998) of {0,1} masks ``B×K×H×W`` → float in [0, 1].

    Equal to OpenCV ``cv2.bilateralFilter(mask, 0, sigma_color, sigma_space)`` (tests check it to
    1e-5) but 10–50× faster: on a binary image the range weight takes only two values, 1 for
    equal pixels and ``c = exp(-1/(2·sigma_color²))`` for different ones, so with ``s`` the
    spatially blurred mask the filter is ``s/(s + c(1-s))`` on ones and ``c·s/(c·s + 1 - s)``
    on zeros — one linear filter per image instead of a per-pixel range-weighted sum.
    """
    m = masks.float()
    s = _blur(m, _disc_kernel(sigma_space)).clamp(0.0, 1.0)
    c = float(np.exp(-0.5 / sigma_color**2))
    return torch.where(m > 0.5, s / (s + c * (1 - s)), c * s / (c * s + (1 - s)))


def derangement(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """A random permutation of ``range(n)`` with no fixed point (n ≥ 2): a random cycle, so every
    image gets another image's mask (A.6 "unpaired")."""
    order = torch.randperm(n, generator=generator)
    perm = torch.empty(n, dtype=torch.long)
    perm[order] = order.roll(-1)
    return perm


def build_pseudo_masks(attn: torch.Tensor, images: torch.Tensor, cfg: PseudoMaskConfig,
                       generator: torch.Generator | None = None) -> PseudoMasks:
    """``attn``: B×heads×h×w attention-pool weights; ``images``: B×1×H×W in [0, 1] (as the model
    sees them, before normalisation) → :class:`PseudoMasks` on ``attn``'s device, no gradient."""
    with torch.no_grad():
        size = tuple(images.shape[-2:])
        attention = aggregate_upsample(attn, size, cfg)
        body = body_masks(images, cfg.body_min_fraction).to(attention.device) if cfg.body_mask else None
        # §3.2: attention outside the body set to zero
        maps = attention * body if body is not None else attention
        region = body if (body is not None and cfg.quantile_over == "body") else None
        binary = threshold_masks(maps, region, cfg)
        if body is not None:
            binary &= body  # the mask lives "within the body mask" (§3.2), whatever the statistic
        target = binary.float()
        if cfg.smooth:
            stride = size[0] / attn.shape[-2]
            sigma = cfg.sigma_space if cfg.sigma_space is not None else stride / 4  # ours
            target = smooth_masks(target, sigma, cfg.sigma_color)
            if cfg.target == "binary":
                target = (target >= cfg.target_threshold).float()
        if cfg.shuffle and target.shape[0] > 1:
            target = target[derangement(target.shape[0], generator).to(target.device)]
        return PseudoMasks(target=target, attention=attention, binary=binary, body=body)
