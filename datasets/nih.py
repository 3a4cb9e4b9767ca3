"""NIH ChestX-ray14: ``Data_Entry_2017_v2020.csv`` + official ``train_val_list.txt`` / ``test_list.txt``.

- Samples: one per ``Image Index``; ``patient_id`` = ``Patient ID``; ``labels`` = 14-way multi-hot of
  the pipe-separated ``Finding Labels`` (``No Finding`` = all zeros); ``official_split`` = ``"train"``
  (train_val_list) / ``"test"`` (test_list); ``extra["view"]`` = ``View Position``.
- Images: PNGs in ``images/`` or ``images_001/images/`` … (indexed once; not checked at parse time).
- Splits: ``official`` (default; valid = 10 % of the train_val *patients*, so the counts differ a
  little from G2D's 77,872 / 8,652 / 25,596) and ``official-by-image`` (valid = 10 % of the train_val
  images: exactly G2D Table 6's counts, but one patient's images may straddle train and valid).
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from g2d_bench.datasets.base import Release, Sample
from g2d_bench.datasets.labelfiles import pick_file, read_csv, read_lines, value_error
from g2d_bench.datasets.splits import SplitSpec

#: The 14 findings (docs/formats.md; Wang et al. 2017), in the usual order.
LABELS = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia", "Pneumothorax",
    "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
)
NO_FINDING = "No Finding"
ENTRY_CSV = "Data_Entry_2017_v2020.csv"
#: The 2017 release's name of the same table (the v2020 file corrected some patient ids).
ENTRY_CSV_2017 = "Data_Entry_2017.csv"
TRAIN_LIST, TEST_LIST = "train_val_list.txt", "test_list.txt"


class NIHChestXray14(Release):
    """NIH ChestX-ray14 under ``root`` (the folder with the CSV, the two lists and the image folders)."""

    name = "nih-cxr14"
    title = "NIH ChestX-ray14"
    label_names = LABELS
    provides = frozenset({"labels"})
    label_files = (ENTRY_CSV, TRAIN_LIST, TEST_LIST)

    def __init__(self, root: str | Path) -> None:
        super().__init__(root)
        if not (self.root / ENTRY_CSV).exists() and (self.root / ENTRY_CSV_2017).exists():
            self.label_files = (ENTRY_CSV_2017, TRAIN_LIST, TEST_LIST)  # the file actually read, for manifest.json

    def _load_samples(self) -> list[Sample]:
        entry = pick_file(self, ENTRY_CSV, ENTRY_CSV_2017)
        table = read_csv(self, entry, ("Image Index", "Finding Labels", "Patient ID"), dtype=str)
        labels = self._multi_hot(table, entry)
        split = {name.strip(): "train" for name in read_lines(self, TRAIN_LIST) if name.strip()}
        split.update({name.strip(): "test" for name in read_lines(self, TEST_LIST) if name.strip()})
        names = table["Image Index"].str.strip().tolist()
        patients = table["Patient ID"].str.strip().tolist()
        views = table["View Position"].fillna("").tolist() if "View Position" in table.columns else [""] * len(names)
        folder_of = self._image_folders()
        default = self.root / "images"
        return [
            Sample(sample_id=n, patient_id=p, image_path=folder_of.get(n, default) / n, labels=lab,
                   official_split=split.get(n), extra={"view": v})
            for n, p, lab, v in zip(names, patients, labels, views)
        ]

    def _multi_hot(self, table, entry: str) -> np.ndarray:
        """N×14 float32 multi-hot of ``Finding Labels``; an unknown finding or a blank id is an error
        naming its line."""
        column = {name: j for j, name in enumerate(LABELS)}
        matrix = np.zeros((len(table), len(LABELS)), dtype=np.float32)
        blank = (table["Patient ID"].isna() | table["Image Index"].isna()).to_numpy()
        for row, text in enumerate(table["Finding Labels"].fillna("").tolist()):
            for finding in text.split("|"):
                j = column.get(finding.strip())
                if j is not None:
                    matrix[row, j] = 1.0
                elif finding.strip() != NO_FINDING or blank[row]:
                    raise value_error(
                        self, entry, row + 2,
                        f"Finding Labels {text!r}, Patient ID {table['Patient ID'].iloc[row]!r}: expected a patient id "
                        f"and pipe-separated findings from {', '.join(LABELS)} or '{NO_FINDING}'",
                    )
        if blank.any():
            row = int(np.flatnonzero(blank)[0])
            raise value_error(self, entry, row + 2, "blank Image Index or Patient ID")
        return matrix

    def _image_folders(self) -> dict[str, Path]:
        """``image name → folder`` over ``images/`` and ``images_*/images/`` (one scan each)."""
        folders = [self.root / "images"]
        if self.root.is_dir():
            folders += sorted(p / "images" for p in self.root.glob("images_*") if (p / "images").is_dir())
        where: dict[str, Path] = {}
        for folder in folders:
            if folder.is_dir():
                with os.scandir(folder) as entries:
                    where.update({e.name: folder for e in entries if e.is_file()})
        return where

    @classmethod
    def split_specs(cls) -> dict[str, SplitSpec]:
        return {
            "official": SplitSpec(
                name="official", source="NIH official lists; G2D Table 6: 77,872 / 8,652 / 25,596",
                test="test", valid=0.1, group_by="patient",
                notes="valid = 10% of the train_val patients (no patient straddles splits), so train/valid "
                      "counts differ slightly from G2D's image counts",
            ),
            "official-by-image": SplitSpec(
                name="official-by-image", source="G2D Table 6: 77,872 / 8,652 / 25,596 (10% of 86,524 images)",
                test="test", valid=0.1, group_by="image",
                notes="reproduces G2D's counts exactly; a patient's images may be in both train and valid",
            ),
        }
