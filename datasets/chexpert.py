"""CheXpert v1.0 (small or full): ``train.csv`` / ``valid.csv`` with 14 labels (1, 0, -1 uncertain, blank).

- Samples: one per CSV row; ``sample_id`` = the ``Path`` value; ``patient_id`` = its ``patientNNNNN``
  component; ``labels`` = the 14 raw values (NaN for blank) in :data:`LABELS` order;
  ``official_split`` = ``"train"`` / ``"valid"``; ``extra["frontal"]``, ``extra["view"]`` (AP/PA/LL…).
- ``Path`` starts with the release folder name; it is resolved against the data root if the root
  holds that folder, else with the folder name stripped (the root is the release folder itself).
- The five competition labels and the uncertainty policies: :func:`competition_labels`.
- Splits (frontal images only): ``g2d`` (G2D Table 6), ``mgca`` (MGCA code: the 5×200 zero-shot images
  removed first) and ``zeroshot-5x200`` (GLoRIA's CheXpert 5×200).
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from g2d_bench.datasets.base import Release, Sample
from g2d_bench.datasets.labelfiles import read_csv, value_error
from g2d_bench.datasets.splits import SplitSpec, assign_splits, rank_key
from g2d_bench.errors import G2DBenchError

#: The 14 label columns, in the order of the release's CSV header (docs/formats.md).
LABELS = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
    "Fracture", "Support Devices",
)
#: CheXpert competition tasks (Irvin et al. 2019; REFERENCE.md linear classification).
COMPETITION = ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
#: What an uncertain (-1) label becomes, per policy. "mgca": U-ones for Atelectasis, Edema, Pleural
#: Effusion and U-zeros for Cardiomegaly, Consolidation (REFERENCE.md; MGCA code, after CheXpert paper).
UNCERTAIN_POLICIES: dict[str, dict[str, float]] = {
    "mgca": {"Atelectasis": 1.0, "Cardiomegaly": 0.0, "Consolidation": 0.0, "Edema": 1.0, "Pleural Effusion": 1.0},
    "ones": dict.fromkeys(COMPETITION, 1.0),
    "zeros": dict.fromkeys(COMPETITION, 0.0),
}
#: Images per competition label in the zero-shot set (GLoRIA "CheXpert 5×200").
ZEROSHOT_PER_LABEL = 200
#: Validation images drawn from train.csv (G2D Table 6: 5,000; MGCA code CHEXPERT_VALID_NUM = 5000).
VALID_IMAGES = 5000


def competition_labels(labels14: np.ndarray, policy: str = "mgca") -> np.ndarray:
    """The five competition labels as float32 in {0, 1}: N×14 raw labels (:data:`LABELS` order) → N×5.

    Blank (NaN) → 0; uncertain (-1) → the ``policy``'s value: ``"mgca"`` (U-ones / U-zeros per label),
    ``"ones"`` or ``"zeros"``. A single 14-vector gives a 1×5 array.
    """
    if policy not in UNCERTAIN_POLICIES:
        raise G2DBenchError(f"unknown CheXpert uncertainty policy {policy!r}; choose one of {', '.join(UNCERTAIN_POLICIES)}")
    raw = np.atleast_2d(np.asarray(labels14, dtype=np.float32))
    if raw.shape[-1] != len(LABELS):
        raise G2DBenchError(f"competition_labels: expected N×{len(LABELS)} CheXpert labels, got shape {raw.shape}")
    picked = raw[:, [LABELS.index(name) for name in COMPETITION]].copy()
    picked[np.isnan(picked)] = 0.0
    for j, name in enumerate(COMPETITION):
        column = picked[:, j]
        column[column == -1] = UNCERTAIN_POLICIES[policy][name]
    return picked


class CheXpert(Release):
    """CheXpert v1.0 under ``root`` (the folder holding ``train.csv`` and ``valid.csv``)."""

    name = "chexpert"
    title = "CheXpert"
    label_names = LABELS
    provides = frozenset({"labels"})
    label_files = ("train.csv", "valid.csv")

    def _load_samples(self) -> list[Sample]:
        samples = self._parse("train.csv", "train") + self._parse("valid.csv", "valid")
        if len({s.sample_id for s in samples}) != len(samples):
            raise G2DBenchError(f"{self.title}: the same Path appears twice in train.csv/valid.csv; re-download the release")
        return samples

    def _parse(self, relative: str, split: str) -> list[Sample]:
        import pandas as pd

        table = read_csv(self, relative, ("Path", "Frontal/Lateral", *LABELS), dtype={"Path": str})
        labels = table[list(LABELS)].apply(pd.to_numeric, errors="coerce").to_numpy(dtype=np.float32)
        unparsable = table[list(LABELS)].notna().to_numpy() & np.isnan(labels)
        bad = unparsable | ~(np.isnan(labels) | np.isin(labels, (-1.0, 0.0, 1.0)))
        if bad.any():
            row, col = np.argwhere(bad)[0]
            value = table[LABELS[col]].iloc[row]
            raise value_error(self, relative, int(row) + 2, f"{LABELS[col]} = {value!r} (expected 1, 0, -1 or blank)")
        paths = table["Path"].fillna("").astype(str)
        patients = paths.str.extract(r"(patient\d+)", expand=False)
        if patients.isna().any():
            row = int(np.flatnonzero(patients.isna().to_numpy())[0])
            raise value_error(self, relative, row + 2, f"Path {paths.iloc[row]!r} has no 'patientNNNNN' component")
        frontal = (table["Frontal/Lateral"] == "Frontal").to_numpy()
        views = table["AP/PA"].fillna("").astype(str).tolist() if "AP/PA" in table.columns else [""] * len(table)
        images = self._resolve(paths.tolist())
        return [
            Sample(sample_id=p, patient_id=pat, image_path=img, labels=lab, official_split=split,
                   extra={"frontal": bool(f), "view": v})
            for p, pat, img, lab, f, v in zip(paths.tolist(), patients.tolist(), images, labels, frontal, views)
        ]

    def _resolve(self, paths: Sequence[str]) -> list[Path]:
        """Image files of CSV ``Path`` values: under the root if it holds the release folder named in
        the path, else under the root with that first component stripped."""
        keep: dict[str, bool] = {}
        resolved = []
        for path in paths:
            first, _, rest = path.partition("/")
            if first not in keep:
                keep[first] = (self.root / first).is_dir()
            resolved.append(self.root / path if keep[first] or not rest else self.root / rest)
        return resolved

    @classmethod
    def split_specs(cls) -> dict[str, SplitSpec]:
        return {
            "g2d": SplitSpec(
                name="g2d", source="G2D Table 6: 186,027 / 5,000 / 202 (frontal images)",
                test="valid", valid=VALID_IMAGES, group_by="image", pool=is_frontal,
                notes="test = official valid.csv (frontal); valid = 5,000 frontal train images; the 5x200 "
                      "zero-shot images stay in the pool (matches G2D's 186,027 = 191,027 - 5,000)",
            ),
            "mgca": SplitSpec(
                name="mgca", source="MGCA code (preprocess/chexpert.py): 5x200 removed, then 5,000 valid",
                test="valid", valid=VALID_IMAGES, group_by="image", pool=is_frontal, select=select_mgca,
                notes="as g2d, but the zeroshot-5x200 images (same seed) are removed from the pool first: "
                      "185,027 train on the real release; MGCA draws its 5,000 from all views, this manifest "
                      "from frontal images",
            ),
            "zeroshot-5x200": SplitSpec(
                name="zeroshot-5x200", source="GLoRIA code (preprocess_datasets.py) / G2D Table 6 zero-shot: 5 x 200",
                group_by="image", pool=is_frontal, select=select_5x200,
                notes="frontal train.csv images positive for exactly one competition label and 0/blank for "
                      "the other 12 findings (No Finding ignored); 200 per label, lowest rank first; all 'test'",
            ),
        }


def is_frontal(sample: Sample) -> bool:
    """Pool predicate of the CheXpert manifests: frontal views only."""
    return bool(sample.extra.get("frontal", False))


def zeroshot_candidates(samples: Sequence[Sample], rule: str = "gloria") -> dict[str, list[Sample]]:
    """Frontal official-train images eligible for the 5×200 set, per competition label.

    ``rule="gloria"`` (GLoRIA/MGCA code): the label == 1 and every other finding except No Finding
    == 0 or blank (an uncertain -1 excludes the image). ``rule="one-of-five"``: exactly one of the
    five competition labels is 1, and it is that label.
    """
    if rule not in ("gloria", "one-of-five"):
        raise G2DBenchError(f"unknown 5x200 rule {rule!r}; choose 'gloria' or 'one-of-five'")
    pool = [s for s in samples if s.official_split == "train" and is_frontal(s)]
    if not pool:
        return {label: [] for label in COMPETITION}
    raw = np.stack([s.labels for s in pool])
    positive = raw == 1
    if rule == "gloria":
        findings = [i for i, name in enumerate(LABELS) if name != "No Finding"]
        zero = np.nan_to_num(raw, nan=0.0) == 0
        eligible = positive[:, findings].sum(axis=1) == 1
        eligible &= (positive | zero)[:, findings].all(axis=1)
    else:
        eligible = positive[:, [LABELS.index(n) for n in COMPETITION]].sum(axis=1) == 1
    out = {}
    for label in COMPETITION:
        keep = eligible & positive[:, LABELS.index(label)]
        out[label] = [pool[i] for i in np.flatnonzero(keep)]
    return out


def select_5x200(samples: Sequence[Sample], seed: int, rule: str = "gloria") -> dict[str, str]:
    """``{sample_id: "test"}`` for up to 200 images per competition label (fewer if unavailable)."""
    chosen: dict[str, str] = {}
    for label, candidates in zeroshot_candidates(samples, rule).items():
        ranked = sorted(candidates, key=lambda s: (rank_key(seed, f"5x200:{label}", s.sample_id), s.sample_id))
        chosen.update({s.sample_id: "test" for s in ranked[:ZEROSHOT_PER_LABEL]})
    return chosen


def select_mgca(samples: Sequence[Sample], seed: int) -> dict[str, str]:
    """MGCA's manifest: drop the 5×200 images (same seed), then the g2d rule on what is left."""
    held_out = select_5x200(samples, seed)
    rest = [s for s in samples if s.sample_id not in held_out]
    plain = SplitSpec(name="mgca", source="MGCA code", test="valid", valid=VALID_IMAGES, group_by="image")
    return assign_splits(rest, plain, seed)
