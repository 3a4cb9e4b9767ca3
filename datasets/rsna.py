"""RSNA Pneumonia Detection Challenge, stage 2: ``stage_2_train_labels.csv`` + DICOMs.

- Samples: one per ``patientId`` (one image each); ``boxes`` = every row's ``x, y, width, height``
  converted to ``x1, y1, x2, y2`` (1024-px image coordinates); ``labels`` = ``[Target]``
  ("Pneumonia"); ``official_split`` is None (the stage-2 test labels were never published).
- Masks (segmentation, zero-shot grounding) are the filled boxes (REFERENCE.md: "RSNA seg masks =
  filled boxes"), which is :meth:`Release.read_mask`'s default.
- Splits by patient: ``g2d`` 60/20/20 (G2D Table 6) and ``mgca`` 70/15/15 (MGCA code).
"""
from __future__ import annotations

import numpy as np

from g2d_bench.datasets.base import Release, Sample
from g2d_bench.datasets.labelfiles import read_csv, value_error
from g2d_bench.datasets.splits import SplitSpec

LABELS_CSV = "stage_2_train_labels.csv"
IMAGE_DIR = "stage_2_train_images"
COLUMNS = ("patientId", "x", "y", "width", "height", "Target")


class RSNAPneumonia(Release):
    """RSNA Pneumonia (stage 2) under ``root``: the CSV and ``stage_2_train_images/{patientId}.dcm``."""

    name = "rsna"
    title = "RSNA Pneumonia"
    label_names = ("Pneumonia",)
    provides = frozenset({"labels", "boxes", "mask"})
    label_files = (LABELS_CSV,)

    def _load_samples(self) -> list[Sample]:
        import pandas as pd

        table = read_csv(self, LABELS_CSV, COLUMNS, dtype={"patientId": str})
        box = table[["x", "y", "width", "height"]].apply(pd.to_numeric, errors="coerce").to_numpy(np.float64)
        target = pd.to_numeric(table["Target"], errors="coerce").to_numpy(np.float64)
        self._check(table, box, target)
        ids = table["patientId"].tolist()
        boxes: dict[str, list[np.ndarray]] = {}
        xyxy = np.concatenate([box[:, :2], box[:, :2] + box[:, 2:]], axis=1).astype(np.float32)
        for row in np.flatnonzero(target == 1):
            boxes.setdefault(ids[row], []).append(xyxy[row])
        image_dir = self.root / IMAGE_DIR
        empty = np.zeros((0, 4), dtype=np.float32)
        return [
            Sample(
                sample_id=pid, patient_id=pid, image_path=image_dir / f"{pid}.dcm",
                labels=np.array([1.0 if pid in boxes else 0.0], dtype=np.float32),
                boxes=np.stack(boxes[pid]) if pid in boxes else empty.copy(),
            )
            for pid in dict.fromkeys(ids)  # first-appearance order, one sample per patient
        ]

    def _check(self, table, box: np.ndarray, target: np.ndarray) -> None:
        """One-line error at the first malformed row: bad Target, missing/invalid box of a positive,
        a box on a negative row, a blank patientId."""
        has_box = ~np.isnan(box).any(axis=1)
        problems = [
            (table["patientId"].isna().to_numpy(), "patientId is blank"),
            (~np.isin(target, (0.0, 1.0)), "Target must be 0 or 1"),
            ((target == 1) & ~has_box, "Target is 1 but x, y, width, height are not all numbers"),
            ((target == 1) & has_box & ((box[:, 2] <= 0) | (box[:, 3] <= 0)), "box width/height must be > 0"),
            ((target == 0) & ~np.isnan(box).all(axis=1), "Target is 0 but the row has box fields"),
        ]
        for bad, message in problems:
            if bad.any():
                row = int(np.flatnonzero(bad)[0])
                values = ",".join("" if pd_isna(v) else str(v) for v in table.iloc[row][list(COLUMNS)])
                raise value_error(self, LABELS_CSV, row + 2, f"{message} ({values})")

    @classmethod
    def split_specs(cls) -> dict[str, SplitSpec]:
        return {
            "g2d": SplitSpec(
                name="g2d", source="G2D Table 6: 16,010 / 5,337 / 5,337 (60/20/20 of 26,684 patients)",
                test=0.2, valid=0.25, group_by="patient",
            ),
            "mgca": SplitSpec(
                name="mgca", source="MGCA code (RSNA_TRAIN_PCT 0.7): 18,678 / 4,003 / 4,003 (70/15/15)",
                test=0.15, valid=0.15 / 0.85, group_by="patient",
            ),
        }


def pd_isna(value: object) -> bool:
    """True for NaN/None (pandas' missing values) without importing pandas at module level."""
    return value is None or (isinstance(value, float) and np.isnan(value))
