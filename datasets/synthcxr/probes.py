"""Difficulty probes of the SynthCXR world: can a linear model on global statistics or raw pixels
read the findings? (SYNTHCXR.md: a 16-bin histogram probe must stay near chance; a raw-pixel probe
should land around 0.6–0.8 AUC, neither trivial nor impossible.)

:func:`render_population` draws frontal images in memory (no files); :func:`probe_aucs` scores
cross-validated logistic-regression probes per finding.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

#: Histogram bins of the global-statistics probe (SYNTHCXR.md).
HIST_BINS = 16
#: Raw-pixel probe input side (SYNTHCXR.md's prototype used 24×24 raw pixels; 32 keeps 3.5-px nodules
#: at 96 px above one pixel).
RAW_SIDE = 32


def render_population(population: str, n: int, size: int = 64, seed: int = 0) -> tuple[np.ndarray, list[set[str]]]:
    """``n`` frontal images (uint8 n×size×size) of a population and each image's drawn findings.

    ``population`` is a key of ``population.PREVALENCE`` ("gate", "mimic-cxr", "chexpert", "nih-cxr14").
    """
    from g2d_bench.datasets.synthcxr import subseed
    from g2d_bench.datasets.synthcxr.cases import Case, render_case
    from g2d_bench.datasets.synthcxr.population import PREVALENCE, finalize_anatomy, sample_findings
    from g2d_bench.datasets.synthcxr.world import sample_body

    sub = subseed(seed, f"probe:{population}")
    rng = np.random.default_rng(sub)
    images = np.empty((n, size, size), np.uint8)
    truth = []
    for i in range(n):
        view = "AP" if rng.random() < 0.45 else "PA"
        findings = sample_findings(rng, PREVALENCE[population])
        ctr, width = finalize_anatomy(rng, findings)
        body = sample_body(rng, female=bool(rng.random() < 0.5), view=view, ctr=ctr, mediastinum=width)
        case = Case(i, str(i), "", str(i), view, body, findings)
        images[i], _ = render_case(case, size, sub)
        truth.append({f.name for f in findings})
    return images, truth


def histogram_features(images: np.ndarray) -> np.ndarray:
    """n×16 normalised intensity histograms."""
    bins = np.linspace(0, 256, HIST_BINS + 1)
    return np.stack([np.histogram(im, bins=bins)[0] / im.size for im in images]).astype(np.float32)


def pixel_features(images: np.ndarray) -> np.ndarray:
    """n×(32·32) raw pixels, area-downsampled, scaled to [0, 1]."""
    import cv2

    return np.stack([cv2.resize(im, (RAW_SIDE, RAW_SIDE), interpolation=cv2.INTER_AREA).ravel() / 255.0
                     for im in images]).astype(np.float32)


def probe_aucs(features: np.ndarray, truth: list[set[str]], findings: Sequence[str], folds: int = 5,
               c: float = 0.1, seed: int = 0) -> dict[str, float]:
    """Cross-validated ROC AUC of a standardised logistic-regression probe per finding."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.metrics import roc_auc_score

    out = {}
    for name in findings:
        y = np.array([name in t for t in truth], dtype=int)
        if y.sum() < folds or (len(y) - y.sum()) < folds:
            continue
        probe = LogisticRegression(C=c, solver="liblinear", max_iter=2000, random_state=seed)
        model = make_pipeline(StandardScaler(), probe)
        cv = StratifiedKFold(folds, shuffle=True, random_state=seed)
        scores = cross_val_predict(model, features, y, cv=cv, method="decision_function")
        out[name] = float(roc_auc_score(y, scores))
    return out
