"""Label spaces of the releases and how SynthCXR findings map onto them.

Text-derived labels (MIMIC-CXR, CheXpert train, NIH) come from what the report says
(``reports.Mention``), so they carry the report's hedges and its label–text mismatches; curated
labels (CheXpert valid, RSNA, SIIM, COVIDx, Object-CXR) come from what was drawn.
"""
from __future__ import annotations

import math

#: CheXpert / MIMIC-CXR-JPG label columns, in the order of CheXpert's train.csv (docs/formats.md).
CHEXPERT_LABELS = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
    "Fracture", "Support Devices",
)
#: The same 14 labels in mimic-cxr-2.0.0-chexpert.csv's (alphabetical) column order.
MIMIC_LABELS = tuple(sorted(CHEXPERT_LABELS))
#: NIH ChestX-ray14 labels (docs/formats.md).
NIH_LABELS = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax",
    "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
)

#: Finding → CheXpert labels it sets. Pneumonia is added when the report calls a consolidation
#: pneumonia. Emphysema, fibrosis and hernia have no CheXpert label; foreign objects are not reported.
CHEXPERT_MAP: dict[str, tuple[str, ...]] = {
    "atelectasis": ("Atelectasis",),
    "cardiomegaly": ("Cardiomegaly",),
    "consolidation": ("Consolidation", "Lung Opacity"),
    "covid": ("Lung Opacity", "Pneumonia"),
    "edema": ("Edema",),
    "effusion": ("Pleural Effusion",),
    "enlarged_cardiomediastinum": ("Enlarged Cardiomediastinum",),
    "fracture": ("Fracture",),
    "infiltration": ("Lung Opacity",),
    "mass": ("Lung Lesion",),
    "nodule": ("Lung Lesion",),
    "pleural_thickening": ("Pleural Other",),
    "pneumothorax": ("Pneumothorax",),
    "support_devices": ("Support Devices",),
}
#: Finding → NIH labels (Pneumonia added like CheXpert's).
NIH_MAP: dict[str, tuple[str, ...]] = {
    "atelectasis": ("Atelectasis",),
    "cardiomegaly": ("Cardiomegaly",),
    "consolidation": ("Consolidation",),
    "edema": ("Edema",),
    "effusion": ("Effusion",),
    "emphysema": ("Emphysema",),
    "fibrosis": ("Fibrosis",),
    "hernia": ("Hernia",),
    "infiltration": ("Infiltration",),
    "mass": ("Mass",),
    "nodule": ("Nodule",),
    "pleural_thickening": ("Pleural_Thickening",),
    "pneumothorax": ("Pneumothorax",),
}


def merge_status(old: float, new: float) -> float:
    """CheXpert precedence when a label is mentioned twice: positive > uncertain > negative."""
    if math.isnan(old):
        return new
    rank = {1.0: 2, -1.0: 1, 0.0: 0}
    return old if rank[old] >= rank[new] else new


def chexpert_from_mentions(mentions) -> dict[str, float]:
    """CheXpert-style labels of one report: 1 / 0 / -1, NaN (blank) where nothing was said.

    No Finding is 1 when no pathology is positive or uncertain (Support Devices do not count), as
    in the CheXpert labeler; otherwise blank.
    """
    out = {name: math.nan for name in CHEXPERT_LABELS}
    for m in mentions:
        names = list(CHEXPERT_MAP.get(m.finding, ()))
        if m.pneumonia:
            names.append("Pneumonia")
        for name in names:
            out[name] = merge_status(out[name], m.status)
    sick = any(out[n] in (1.0, -1.0) for n in CHEXPERT_LABELS if n not in ("No Finding", "Support Devices"))
    out["No Finding"] = math.nan if sick else 1.0
    return out


def chexpert_from_truth(findings) -> dict[str, float]:
    """Radiologist-style 0/1 labels of what was drawn (CheXpert valid.csv has no blanks or -1)."""
    out = {name: 0.0 for name in CHEXPERT_LABELS}
    for f in findings:
        for name in CHEXPERT_MAP.get(f.name, ()):
            out[name] = 1.0
    out["No Finding"] = 0.0 if any(out[n] for n in CHEXPERT_LABELS if n not in ("No Finding", "Support Devices")) else 1.0
    return out


def nih_from_mentions(mentions) -> list[str]:
    """NIH labels of one (unpublished) report: positive or uncertain mentions count as positive,
    as NIH's text mining kept uncertain findings; sorted, as in Data_Entry_2017."""
    names = set()
    for m in mentions:
        if m.status in (1.0, -1.0):
            names.update(NIH_MAP.get(m.finding, ()))
            if m.pneumonia:
                names.add("Pneumonia")
    return sorted(names)
