"""Look at what G2D's pseudo segmentation learns, on SynthCXR where the true lesion masks are known:
the mean IoU of pseudo masks vs the true lesions (against two controls), and a figure like the
paper's Fig. 4. Used by ``g2d-bench g2d masks`` and ``g2d-bench g2d figure``.

Images are SynthCXR's MIMIC-format copy, held-out ``test`` split (never seen in pretraining),
frontal views with at least one drawn lesion; the truth is the ``_truth/`` sidecar's union mask.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from g2d_bench.errors import G2DBenchError


def truth_pairs(root: Path, size: int, n: int, seed: int = 0):
    """(images B×1×size×size float in [0,1], true masks B×size×size bool, reports) from a SynthCXR
    MIMIC-format folder."""
    import cv2
    import pandas as pd
    import torch

    from g2d_bench.datasets.imageio import read_image
    from g2d_bench.datasets.mimic import MimicCXR

    truth = Path(root) / "_truth" / "images.csv"
    if not truth.exists():
        raise G2DBenchError(f"{truth} not found: pseudo-mask evaluation needs SynthCXR's MIMIC copy (its _truth/ sidecar)")
    table = pd.read_csv(truth, dtype=str, keep_default_na=False)
    table = table[(table["split"] == "test") & table["view"].isin(["PA", "AP"]) & (table["findings"] != "")]
    reports = {s.sample_id: s.report for s in MimicCXR(root).samples()}
    table = table[table["key"].isin(reports)]
    if table.empty:
        raise G2DBenchError(f"{truth}: no held-out frontal image with a lesion")
    table = table.sample(n=min(n, len(table)), random_state=seed).sort_values("key")
    images, masks = [], []
    for row in table.itertuples():
        image = read_image(Path(root) / row.image)
        mask = cv2.imread(str(Path(root) / "_truth" / row.mask), cv2.IMREAD_GRAYSCALE)
        images.append(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA))
        masks.append(cv2.resize(mask, (size, size), interpolation=cv2.INTER_AREA) >= 128)
    x = torch.from_numpy(np.stack(images)).float().div(255).unsqueeze(1)
    return x, np.stack(masks), [reports[k] for k in table["key"]]


def load_model(checkpoint: str | Path):
    from g2d_bench.methods.g2d.checkpoint import load_g2d

    path = Path(checkpoint)
    if not (path / "config.json").exists():
        raise G2DBenchError(f"{path} is not a G2D checkpoint folder (no config.json); pass one written by g2d-bench pretrain")
    return load_g2d(path).eval()
