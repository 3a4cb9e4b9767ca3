#!/usr/bin/env python
"""What a pretrained G2D's global image embedding has learned to encode, on its own pretraining images.

For each checkpoint: the attention-pooled, projected image embedding of every SynthCXR MIMIC-format
training image (centre crop at the model's size), then a 5-fold cross-validated logistic
regression per attribute (CheXpert labels of the copy and the view; pretraining never saw
them). It prints one AUC per attribute: 0.5 = not encoded. docs/g2d.md "CPU-scale pretraining"
reports its numbers. Usage::

    python scripts/probe_alignment.py CHECKPOINT [CHECKPOINT ...] [--folds 5]
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

ATTRIBUTES = ("Support Devices", "No Finding", "Lung Opacity", "Cardiomegaly", "Pleural Effusion", "Pneumothorax")


def pretraining_images_and_targets(cache_size: int):
    """Training images (N×S×S uint8, the engine's cache) and {attribute: bool array}."""
    import numpy as np

    from g2d_bench.data import ensure_synthcxr
    from g2d_bench.datasets import DATASETS
    from g2d_bench.datasets.mimic import LABELS
    from g2d_bench.pretrain import PretrainConfig, load_pairs

    images, reports, _ = load_pairs(PretrainConfig(method="g2d", out=Path("unused"), progress=False), cache_size)
    by_report = {s.report: s for s in DATASETS.get("mimic-cxr")(ensure_synthcxr("mimic-cxr")).samples()}
    samples = [by_report[r] for r in reports]
    targets = {name: np.array([s.labels[LABELS.index(name)] == 1 for s in samples]) for name in ATTRIBUTES}
    targets["AP view"] = np.array([s.extra.get("view") == "AP" for s in samples])
    return images, targets


def embeddings(model, images):
    import numpy as np
    import torch

    size = model.cfg.image_size
    top = (images.shape[1] - size) // 2
    out = []
    with torch.no_grad():
        for start in range(0, len(images), 100):
            crop = np.array(images[start:start + 100, top:top + size, top:top + size])  # a writable copy of the memmap
            x = torch.from_numpy(crop).float().div(255).unsqueeze(1)
            out.append(model.encode_image(x)["global"])
    return torch.cat(out).numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoints", nargs="+", type=Path)
    parser.add_argument("--folds", type=int, default=5)
    args = parser.parse_args()
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict

    from g2d_bench.methods.g2d.config import training_profile
    from g2d_bench.methods.g2d.inspect_masks import load_model

    by_size = {}  # cache size → (images, targets), read once per size
    for checkpoint in args.checkpoints:
        model = load_model(checkpoint)
        # the images as the engine cached them for this model (e.g. 110 px for a 96 px crop)
        size = training_profile(model.cfg)["cache_size"]
        if size not in by_size:
            by_size[size] = pretraining_images_and_targets(size)
        images, targets = by_size[size]
        if checkpoint == args.checkpoints[0]:
            print(f"{len(images)} pretraining images; positives: " + ", ".join(f"{k} {int(v.sum())}" for k, v in targets.items()))
        feats = embeddings(model, images)
        aucs = {}
        for name, y in targets.items():
            if min(y.sum(), (~y).sum()) < 2 * args.folds:
                continue
            p = cross_val_predict(LogisticRegression(max_iter=3000), feats, y, cv=args.folds, method="predict_proba")[:, 1]
            aucs[name] = roc_auc_score(y, p)
        print(f"{checkpoint}: " + ", ".join(f"{k} {v:.3f}" for k, v in aucs.items()))


if __name__ == "__main__":
    main()
