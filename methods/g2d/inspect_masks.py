"""Look at what G2D's pseudo segmentation learns, on SynthCXR where the true lesion masks are known:
the mean IoU of pseudo masks vs the true lesions (against two controls), and a figure like the
paper's Fig. 4. Used by ``g2d-bench g2d masks`` and ``g2d-bench g2d figure``.

Images are SynthCXR's MIMIC-format copy, held-out ``validate`` and ``test`` splits (pretraining reads
only ``train``), frontal views with at least one drawn lesion; the truth is the ``_truth/`` sidecar's
union mask. (Before 2026-12-02 only ``test`` was used: 48 images on the default copy, too few to
tell a 0.005 IoU difference; with both, 117.)
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from g2d_bench.errors import G2DBenchError


#: the MIMIC official splits pretraining never reads (benchmark/pretrain.py ``load_pairs``: train only)
HELD_OUT = ("validate", "test")


def _read_mask(path: Path, size: int) -> np.ndarray:
    """A ``_truth/`` 0/255 mask PNG → ``size×size`` bool (area-resized, at least half covered)."""
    import cv2

    mask = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if mask is None:
        raise G2DBenchError(f"{path} is missing or not an image; regenerate SynthCXR")
    return cv2.resize(mask, (size, size), interpolation=cv2.INTER_AREA) >= 128


def truth_pairs(root: Path, size: int, n: int, seed: int = 0):
    """(images B×1×size×size float in [0,1], true masks B×size×size bool, reports, keys) from a
    SynthCXR MIMIC-format folder."""
    import cv2
    import pandas as pd
    import torch

    from g2d_bench.datasets.imageio import read_image
    from g2d_bench.datasets.mimic import MimicCXR

    truth = Path(root) / "_truth" / "images.csv"
    if not truth.exists():
        raise G2DBenchError(f"{truth} not found: pseudo-mask evaluation needs SynthCXR's MIMIC copy (its _truth/ sidecar)")
    table = pd.read_csv(truth, dtype=str, keep_default_na=False)
    table = table[table["split"].isin(HELD_OUT) & table["view"].isin(["PA", "AP"]) & (table["findings"] != "")]
    reports = {s.sample_id: s.report for s in MimicCXR(root).samples()}
    table = table[table["key"].isin(reports)]
    if table.empty:
        raise G2DBenchError(f"{truth}: no held-out frontal image with a lesion")
    table = table.sample(n=min(n, len(table)), random_state=seed).sort_values("key")
    images, masks = [], []
    for row in table.itertuples():
        image = read_image(Path(root) / row.image)
        images.append(cv2.resize(image, (size, size), interpolation=cv2.INTER_AREA))
        masks.append(_read_mask(Path(root) / "_truth" / row.mask, size))
    x = torch.from_numpy(np.stack(images)).float().div(255).unsqueeze(1)
    return x, np.stack(masks), [reports[k] for k in table["key"]], list(table["key"])


def finding_masks(root: Path, keys, size: int) -> list[tuple[int, str, np.ndarray]]:
    """``(image index in keys, finding, size×size bool mask)`` for every drawn finding of these
    images, from the ``_truth/findings.csv`` per-finding masks (cardiomegaly: the heart silhouette,
    which the union mask leaves out; docs/synthcxr.md). Findings whose mask vanishes at ``size``
    are skipped."""
    import pandas as pd

    path = Path(root) / "_truth" / "findings.csv"
    if not path.exists():
        raise G2DBenchError(f"{path} not found: per-finding scores need SynthCXR's _truth/ sidecar")
    table = pd.read_csv(path, dtype=str, keep_default_na=False)
    index = {key: i for i, key in enumerate(keys)}
    out = []
    for row in table[table["key"].isin(index) & (table["drawn"] == "1") & (table["mask"] != "")].itertuples():
        mask = _read_mask(Path(root) / "_truth" / row.mask, size)
        if mask.any():
            out.append((index[row.key], row.finding, mask))
    return out


def load_model(checkpoint: str | Path):
    from g2d_bench.methods.g2d.checkpoint import load_g2d

    path = Path(checkpoint)
    if not (path / "config.json").exists():
        raise G2DBenchError(f"{path} is not a G2D checkpoint folder (no config.json); pass one written by g2d-bench pretrain")
    return load_g2d(path).eval()


def across_seeds(results: list[dict]) -> dict:
    """Whether pseudo masks beat the same-area random mask across pretraining seeds.

    ``results``: one :func:`~g2d_bench.methods.g2d.figure.pseudo_mask_overlap` dict per
    pretraining seed, scored on the same images. Returns the mean pseudo and random IoU over seeds,
    the per-seed differences, their mean, SD and standard error, how many seeds are above zero,
    and one-sided p-values that the mean difference is > 0 over seeds (t-test and Wilcoxon
    signed-rank, scipy); the seed, not the image, is the unit, as the criterion is about training
    runs. The SD, standard error and p-values are NaN with fewer than two seeds.
    """
    from scipy import stats

    if not results:
        raise G2DBenchError("across_seeds: no scored checkpoints")
    pseudo = np.array([r["pseudo_iou"] for r in results], dtype=float)
    random = np.array([r["random_iou"] for r in results], dtype=float)
    gain = pseudo - random
    n = len(gain)
    sd = t_p = w_p = float("nan")
    if n > 1:
        sd = float(gain.std(ddof=1))
        t_p = float(stats.ttest_1samp(gain, 0.0, alternative="greater").pvalue)
        w_p = float(stats.wilcoxon(gain, alternative="greater").pvalue)
    return {"seeds": n, "pseudo_iou": float(pseudo.mean()), "random_iou": float(random.mean()),
            "gains": gain.tolist(), "gain": float(gain.mean()), "gain_sd": sd, "gain_se": float(sd / np.sqrt(n)),
            "above": int((gain > 0).sum()), "t_p": t_p, "wilcoxon_p": w_p}
