#!/usr/bin/env python
"""How much of a G2D pretraining step the pseudo-mask construction costs (goal: ≤ 5 % on CPU).

Default setting: ResNet-18 U-Net, 128 px, batch 32, a 2-layer BERT (hidden 128, WordPiece trained on
template reports), paper mask settings (body mask, 85th percentile, bilateral smoothing). One step =
forward (mask included) + backward + AdamW update. Usage::

    python benchmarks/bench_pseudomask.py [--image-size 128] [--batch 32] [--steps 3] [--profile paper] [--threads N]
"""
from __future__ import annotations

import argparse
import os
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")

REPORTS = [
    "No acute cardiopulmonary process.",
    "Small left pleural effusion with adjacent atelectasis.",
    "Possible nodule in the right upper lobe, cannot exclude pneumonia.",
    "Mild cardiomegaly. Lungs are clear. No pneumothorax.",
    "Right basilar opacity, likely pneumonia. Small right effusion.",
    "Stable moderate cardiomegaly without pulmonary edema.",
]


def synthetic_batch(n: int, size: int, seed: int = 0):
    """Chest-like images (dark air, bright body ellipse, darker lungs, noise) in [0, 1]."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    shift = 0.1 * torch.randn(n, 1, 1, 1, generator=gen)
    body = (((xx - shift) / 0.8) ** 2 + (yy / 0.9) ** 2 < 1).float()
    lungs = ((((xx - shift).abs() - 0.35) / 0.22) ** 2 + (yy / 0.55) ** 2 < 1).float()
    images = 0.05 + 0.6 * body - 0.3 * lungs + 0.05 * torch.randn(n, 1, size, size, generator=gen)
    return images.clamp(0, 1), [REPORTS[i % len(REPORTS)] for i in range(n)]


def timed(fn, repeats: int) -> float:
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    return (time.perf_counter() - start) / repeats


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--arch", default="resnet18")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--profile", default="paper", choices=["paper", "official"])
    parser.add_argument("--threads", type=int, help="torch intra-op threads (default: torch's)")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)

    from g2d_bench.methods.g2d import pseudo_mask as pm
    from g2d_bench.methods.g2d.config import G2DConfig
    from g2d_bench.methods.g2d.model import build_g2d

    cfg = G2DConfig(profile=args.profile, arch=args.arch, image_size=args.image_size, text_model="scratch",
                    text_max_length=64, text_padding="longest")
    torch.manual_seed(0)
    model = build_g2d(cfg, REPORTS)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=1e-4)
    images, reports = synthetic_batch(args.batch, args.image_size)
    tok = model.tokenize(reports)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        model(images, **tok, step=10**6)["loss"].backward()
        optimizer.step()

    step()  # warm-up (allocations, oneDNN kernels)
    t_step = timed(step, args.steps)
    with torch.no_grad():
        attention = model.encode_image(images)["attention"]
    mask_cfg = cfg.mask
    t_mask = timed(lambda: pm.build_pseudo_masks(attention, images, mask_cfg), args.steps)
    maps = pm.aggregate_upsample(attention, images.shape[-2:], mask_cfg)
    body = pm.body_masks(images)
    binary = pm.threshold_masks(maps * body, body, mask_cfg).float()
    parts = {
        "body mask (3-class Otsu)": timed(lambda: pm.body_masks(images), args.steps),
        "threshold": timed(lambda: pm.threshold_masks(maps * body, body, mask_cfg), args.steps),
        "bilateral smoothing": timed(lambda: pm.smooth_masks(binary, args.image_size / attention.shape[-1] / 4,
                                                              mask_cfg.sigma_color), args.steps),
    }
    print(f"G2D {args.profile} | {args.arch} {args.image_size}px batch {args.batch} | torch threads {torch.get_num_threads()}")
    print(f"training step (fwd+bwd+AdamW): {t_step * 1000:8.1f} ms")
    print(f"pseudo-mask construction:      {t_mask * 1000:8.1f} ms = {100 * t_mask / t_step:.1f} % of a step (goal <= 5 %)")
    for name, t in parts.items():
        print(f"  {name:<28s}{t * 1000:8.1f} ms")


if __name__ == "__main__":
    main()
