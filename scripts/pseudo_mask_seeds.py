#!/usr/bin/env python
"""Do G2D's pseudo masks beat a same-area random mask across pretraining seeds?

Scores each checkpoint (one per pretraining seed) like ``g2d-bench g2d masks`` on the same held-out
SynthCXR images, then summarises over seeds (``inspect_masks.across_seeds``): mean pseudo and
random IoU, how many seeds are above the random mask, and one-sided p-values with the seed as the
unit. docs/g2d.md "A finer grid at the same cost" gives the recipe and its eight-seed numbers.
Usage::

    python scripts/pseudo_mask_seeds.py RUN_SEED0 RUN_SEED1 ... --data-root DIR/mimic-cxr [--n 1000]
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--data-root", type=Path, default=None, help="SynthCXR MIMIC-format copy (default: the embedded one)")
    parser.add_argument("--n", type=int, default=1000, help="held-out images to use")
    parser.add_argument("--seed", type=int, default=0, help="image sample and random-mask seed")
    args = parser.parse_args()
    import torch

    from g2d_bench.data import ensure_synthcxr
    from g2d_bench.methods.g2d.figure import pseudo_mask_overlap
    from g2d_bench.methods.g2d.inspect_masks import across_seeds, load_model, truth_pairs

    root = args.data_root or ensure_synthcxr("mimic-cxr")
    results, by_size = [], {}
    for checkpoint in args.checkpoints:
        model = load_model(checkpoint)
        size = model.cfg.image_size
        if size not in by_size:
            by_size[size] = truth_pairs(root, size, args.n, args.seed)
        images, truth, _, _ = by_size[size]
        with torch.no_grad():
            result = pseudo_mask_overlap(model, images, truth, seed=args.seed)
        results.append(result)
        print(f"{checkpoint}: {result['n']} images, pseudo IoU {result['pseudo_iou']:.4f}, random {result['random_iou']:.4f},"
              f" pseudo − random {result['pseudo_iou'] - result['random_iou']:+.4f} ± {result['iou_gain_se']:.4f}", flush=True)
    s = across_seeds(results)
    print(f"over {s['seeds']} seeds: mean pseudo IoU {s['pseudo_iou']:.4f}, mean random IoU {s['random_iou']:.4f},"
          f" pseudo − random {s['gain']:+.4f} (SD {s['gain_sd']:.4f}, se {s['gain_se']:.4f});"
          f" {s['above']} of {s['seeds']} seeds above; one-sided p: t-test {s['t_p']:.3f}, Wilcoxon {s['wilcoxon_p']:.3f}")


if __name__ == "__main__":
    main()
