"""Who is in each SynthCXR dataset: finding priors, per-release prevalences, hearts and mediastina.

``PRIORS`` describe one finding in a general adult chest-radiograph population (side, zone and
severity distributions, and a prevalence roughly like MIMIC-CXR's CheXpert labels). Each release
overrides prevalences to resemble its own population (``PREVALENCE``); class-based releases (RSNA,
COVIDx, SIIM, Object-CXR) draw their target finding separately in ``writers.py``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from g2d_bench.datasets.synthcxr.findings import CTR_THRESHOLD, DEVICES, MEDIASTINUM_THRESHOLD, Finding


@dataclass(frozen=True)
class Prior:
    """How one finding presents: prevalence, P(side), P(zone), severity ~ Beta(a, b)."""

    prevalence: float
    sides: tuple[tuple[str, float], ...] = (("right", 0.5), ("left", 0.5))
    zones: tuple[tuple[str, float], ...] = (("diffuse", 1.0),)
    severity: tuple[float, float] = (1.5, 2.0)


_RLB = (("right", 0.4), ("left", 0.35), ("bilateral", 0.25))
_BILATERAL = (("bilateral", 1.0),)
_NONE = (("none", 1.0),)
_LOWER = (("lower", 1.0),)

#: General population (MIMIC-CXR-like). Prevalences: MIMIC-CXR CheXpert-label frequencies rounded
#: (Johnson et al. 2019, Table 3), with rare findings raised to ≥ 2 % so a 2,000-image copy has positives.
PRIORS: dict[str, Prior] = {
    "atelectasis": Prior(0.18, _RLB, (("lower", 0.85), ("upper", 0.15)), (1.5, 2.5)),
    "cardiomegaly": Prior(0.18, _NONE),
    "consolidation": Prior(0.09, (("right", 0.45), ("left", 0.35), ("bilateral", 0.2)),
                           (("lower", 0.65), ("upper", 0.35)), (1.5, 1.8)),
    "covid": Prior(0.02, _BILATERAL, _LOWER, (1.5, 1.8)),
    "edema": Prior(0.10, _BILATERAL, (("diffuse", 1.0),), (1.2, 2.5)),
    "effusion": Prior(0.20, (("right", 0.35), ("left", 0.3), ("bilateral", 0.35)), _LOWER, (1.2, 2.8)),
    "emphysema": Prior(0.03, _BILATERAL, (("upper", 1.0),), (1.5, 1.5)),
    "enlarged_cardiomediastinum": Prior(0.05, _NONE),
    "fibrosis": Prior(0.03, _BILATERAL, _LOWER, (1.5, 1.5)),
    "fracture": Prior(0.03, zones=(("upper", 0.5), ("lower", 0.5)), severity=(2.0, 2.0)),
    "hernia": Prior(0.02, _NONE, severity=(1.5, 1.5)),
    "infiltration": Prior(0.06, _RLB, (("lower", 0.6), ("upper", 0.4)), (1.3, 2.0)),
    "mass": Prior(0.03, zones=(("upper", 0.6), ("lower", 0.4)), severity=(1.5, 2.0)),
    "nodule": Prior(0.06, zones=(("upper", 0.55), ("lower", 0.45)), severity=(1.2, 2.0)),
    "pleural_thickening": Prior(0.03, (("right", 0.4), ("left", 0.4), ("bilateral", 0.2)),
                                (("upper", 0.5), ("lower", 0.5)), (1.5, 1.5)),
    "pneumothorax": Prior(0.06, (("right", 0.5), ("left", 0.45), ("bilateral", 0.05)),
                          (("upper", 0.8), ("lower", 0.2)), (1.4, 2.0)),
    "support_devices": Prior(0.22, _NONE),
    "foreign_object": Prior(0.0, _NONE),
}

#: NIH ChestX-ray14 label frequencies (Wang et al. 2017, Data_Entry_2017), floored at 3 %.
NIH_PREVALENCE = {
    "infiltration": 0.177, "effusion": 0.119, "atelectasis": 0.103, "nodule": 0.056, "mass": 0.052,
    "pneumothorax": 0.047, "consolidation": 0.042, "pleural_thickening": 0.03, "cardiomegaly": 0.03,
    "emphysema": 0.03, "edema": 0.03, "fibrosis": 0.03, "hernia": 0.03, "support_devices": 0.08,
}

#: Prevalences per release for the general (non class-based) part of the population.
PREVALENCE: dict[str, dict[str, float]] = {
    "mimic-cxr": {name: p.prevalence for name, p in PRIORS.items()},
    "chexpert": {**{name: p.prevalence for name, p in PRIORS.items()}, "effusion": 0.26, "support_devices": 0.35,
                 "edema": 0.14, "covid": 0.0},
    "nih-cxr14": NIH_PREVALENCE,
}


def _choice(rng: np.random.Generator, options: tuple[tuple[str, float], ...]) -> str:
    names = [o[0] for o in options]
    p = np.array([o[1] for o in options], dtype=float)
    return str(names[int(rng.choice(len(names), p=p / p.sum()))])


def sample_finding(rng: np.random.Generator, name: str, severity: tuple[float, float] | None = None) -> Finding:
    """One instance of ``name`` with side, zone and severity from its prior."""
    prior = PRIORS[name]
    a, b = severity or prior.severity
    f = Finding(name, _choice(rng, prior.sides), _choice(rng, prior.zones), float(rng.beta(a, b)))
    if name == "support_devices":  # which devices: decided here so the report can name them
        f.shapes = [str(k) for k in rng.choice(DEVICES, size=int(rng.integers(1, 4)), replace=False)]
    return f


def sample_findings(rng: np.random.Generator, prevalence: dict[str, float], scale: float = 1.0,
                    exclude: tuple[str, ...] = ()) -> list[Finding]:
    """Independent draws of every finding at ``scale × prevalence``; a few clinical co-occurrences:
    edema brings effusion and cardiomegaly along half the time (heart failure)."""
    present = [name for name, p in sorted(prevalence.items()) if name not in exclude and rng.random() < p * scale]
    if "edema" in present and "cardiomegaly" not in exclude:
        for extra in ("effusion", "cardiomegaly"):
            if extra not in present and extra not in exclude and rng.random() < 0.5:
                present.append(extra)
    return [sample_finding(rng, name) for name in sorted(present)]


def heart_size(rng: np.random.Generator, enlarged: bool) -> tuple[float, float]:
    """(true CTR, severity). Normal hearts crowd up to the threshold, enlarged ones start at it."""
    if enlarged:
        ctr = CTR_THRESHOLD + min(rng.exponential(0.04), 0.2)
        return ctr, (ctr - CTR_THRESHOLD) / 0.2
    while True:
        ctr = rng.normal(0.46, 0.04)
        if 0.36 <= ctr < CTR_THRESHOLD:
            return ctr, 0.0


def mediastinal_width(rng: np.random.Generator, widened: bool) -> tuple[float, float]:
    """(upper mediastinal half-width in body units, severity), same construction as the heart."""
    if widened:
        w = MEDIASTINUM_THRESHOLD + min(rng.exponential(0.03), 0.12)
        return w, (w - MEDIASTINUM_THRESHOLD) / 0.12
    while True:
        w = rng.normal(0.17, 0.02)
        if 0.12 <= w < MEDIASTINUM_THRESHOLD:
            return w, 0.0


def finalize_anatomy(rng: np.random.Generator, findings: list[Finding]) -> tuple[float, float]:
    """CTR and mediastinal width consistent with the (possibly) drawn cardiomegaly / widening;
    sets those findings' severities from the sizes."""
    by_name = {f.name: f for f in findings}
    ctr, sev = heart_size(rng, "cardiomegaly" in by_name)
    if "cardiomegaly" in by_name:
        by_name["cardiomegaly"].severity = float(sev)
    width, sev = mediastinal_width(rng, "enlarged_cardiomediastinum" in by_name)
    if "enlarged_cardiomediastinum" in by_name:
        by_name["enlarged_cardiomediastinum"].severity = float(sev)
    return float(ctr), float(width)

#: Findings of the difficulty gates (docs/synthcxr.md) and the "hard" subset whose macro AUC the
#: raw-pixel gate bounds (SYNTHCXR.md's hard three: opacity, pneumothorax, nodule).
GATE_FINDINGS = ("atelectasis", "cardiomegaly", "consolidation", "edema", "effusion", "mass", "nodule", "pneumothorax")
HARD_FINDINGS = ("consolidation", "nodule", "pneumothorax")
#: The gate population: each gate finding at 20 % (enough positives in a few hundred images),
#: everything else at its general prevalence.
PREVALENCE["gate"] = {**PREVALENCE["mimic-cxr"], **dict.fromkeys(GATE_FINDINGS, 0.2)}
