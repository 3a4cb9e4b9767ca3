"""SIIM-ACR Pneumothorax: ``train-rle.csv`` + nested DICOMs.

- ``train-rle.csv``: header ``ImageId, EncodedPixels``; data rows ``<ImageId>,-1`` or ``<ImageId>,<RLE>``
  (also read: ``<ImageId>, -1``, the spelling of another circulating copy).
- Samples: one per unique ``ImageId`` (the CSV has one row per lesion; rows of an image are united);
  ``extra["rles"]`` = that image's lesion RLE strings (empty list for ``-1``); ``labels`` = ``[any
  lesion]`` ("Pneumothorax"); ``patient_id`` = the ImageId (the CSV has no patient column; the split
  is by image anyway); ``official_split`` is None.
- Images: ``dicom-images-train/{StudyUID}/{SeriesUID}/{SOPUID}.dcm``, found by walking the folder once
  (ImageId = file stem). ``require_images=False`` parses the CSV without the DICOM tree (image paths
  are then placeholders ``dicom-images-train/{ImageId}.dcm``).
- Masks: union of the lesion RLEs decoded at the size the caller passes (the DICOM's own size).
- Split ``g2d``: by image, 70/15/15 (G2D Table 6: 8,433 / 1,807 / 1,807).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from g2d_bench.datasets.base import Release, Sample
from g2d_bench.datasets.labelfiles import read_csv, value_error
from g2d_bench.datasets.rle import EMPTY, rle_decode_union, rle_runs
from g2d_bench.datasets.splits import SplitSpec
from g2d_bench.errors import G2DBenchError

LABELS_CSV = "train-rle.csv"
IMAGE_DIR = "dicom-images-train"


class SIIMPneumothorax(Release):
    """SIIM-ACR Pneumothorax under ``root``: ``train-rle.csv`` and ``dicom-images-train/``."""

    name = "siim"
    title = "SIIM-ACR Pneumothorax"
    label_names = ("Pneumothorax",)
    provides = frozenset({"labels", "mask"})
    label_files = (LABELS_CSV,)

    def __init__(self, root: str | Path, *, require_images: bool = True) -> None:
        super().__init__(root)
        self.require_images = require_images

    def _load_samples(self) -> list[Sample]:
        # the header is "ImageId, EncodedPixels"; data rows are "<ImageId>,-1" in the release and "<ImageId>, -1"
        # in another circulating copy: skipinitialspace reads both spellings alike (REFERENCE.md)
        table = read_csv(self, LABELS_CSV, ("ImageId", "EncodedPixels"), skipinitialspace=True, dtype=str)
        ids = table["ImageId"].fillna("").str.strip().tolist()
        codes = table["EncodedPixels"].fillna("").str.strip().tolist()
        rles: dict[str, list[str]] = {}
        for row, (image_id, code) in enumerate(zip(ids, codes)):
            if not image_id or not code:
                raise value_error(self, LABELS_CSV, row + 2, "blank ImageId or EncodedPixels (use -1 for no lesion)")
            lesions = rles.setdefault(image_id, [])
            if code != EMPTY:
                rle_runs(code, where=f"{self.title}: {LABELS_CSV} line {row + 2}")  # structure only
                lesions.append(code)
        paths = self._image_paths(list(rles))
        return [
            Sample(
                sample_id=image_id, patient_id=image_id, image_path=paths[image_id],
                labels=np.array([1.0 if lesions else 0.0], dtype=np.float32), extra={"rles": lesions},
            )
            for image_id, lesions in rles.items()
        ]

    def _image_paths(self, image_ids: list[str]) -> dict[str, Path]:
        """``ImageId → DICOM path`` from one walk of ``dicom-images-train`` (or placeholders)."""
        if not self.require_images:
            return {i: self.root / IMAGE_DIR / f"{i}.dcm" for i in image_ids}
        top = self.require(IMAGE_DIR)
        found: dict[str, Path] = {}
        for folder, _, files in os.walk(top):
            for file in files:
                if file.lower().endswith(".dcm"):
                    found[file[:-4]] = Path(folder) / file
        missing = [i for i in image_ids if i not in found]
        if missing:
            raise G2DBenchError(
                f"{self.title}: {len(missing):,} of {len(image_ids):,} ImageIds in {LABELS_CSV} have no DICOM under "
                f"{top} (e.g. {missing[0]}.dcm); is the release completely unpacked?"
            )
        return {i: found[i] for i in image_ids}

    def read_mask(self, sample: Sample, height: int, width: int) -> np.ndarray:
        """Union of the image's lesion masks, bool height×width (column-major RLE, REFERENCE.md)."""
        where = f"{self.title}: {LABELS_CSV} ImageId {sample.sample_id}"
        return rle_decode_union(sample.extra.get("rles", ()), height, width, where=where)

    @classmethod
    def split_specs(cls) -> dict[str, SplitSpec]:
        return {
            "g2d": SplitSpec(
                name="g2d", source="G2D Table 6: 8,433 / 1,807 / 1,807 (70/15/15 of 12,047 images)",
                test=0.15, valid=0.15 / 0.85, group_by="image",
                notes="split by image, never by CSV row (an image's lesion rows stay together)",
            ),
        }
