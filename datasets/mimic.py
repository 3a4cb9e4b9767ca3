"""MIMIC-CXR-JPG v2.0.0 images with the MIMIC-CXR free-text reports (pretraining pairs).

- Reads ``mimic-cxr-2.0.0-{metadata,chexpert,split}.csv.gz`` (or ``.csv``) and the reports
  ``files/p{sid[:2]}/p{sid}/s{study}.txt``.
- Samples: one per PA/AP image (``ViewPosition``) of a study whose report has a FINDINGS and/or an
  IMPRESSION section (G2D §4 / MGCA preprocessing); ``report`` = findings + impression, whitespace
  normalised; ``labels`` = the study's 14 CheXpert-labeller values (1, 0, -1, NaN; all NaN if the
  study has no row); ``official_split`` = ``"train"`` / ``"validate"`` / ``"test"`` (the split CSV's
  own names); ``extra["view"]``, ``extra["study_id"]``.
- Report sections: a header is an all-caps name followed by a colon at the start of a line
  (``FINDINGS:``, ``IMPRESSION:``); a section runs to the next header; text before the first header
  and other sections (INDICATION, COMPARISON, TECHNIQUE, …) are ignored. ``IMPRESSIONS:`` counts as
  IMPRESSION and a combined ``FINDINGS AND IMPRESSION:`` as FINDINGS.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path

import numpy as np

from g2d_bench.datasets.base import Release, Sample
from g2d_bench.datasets.labelfiles import pick_file, read_csv
from g2d_bench.datasets.splits import SplitSpec
from g2d_bench.errors import G2DBenchError

log = logging.getLogger(__name__)

#: The 14 CheXpert-labeller columns, in the order of mimic-cxr-2.0.0-chexpert.csv (docs/formats.md).
LABELS = (
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum", "Fracture",
    "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia",
    "Pneumothorax", "Support Devices",
)
#: Views kept for pretraining (G2D §4 / MGCA preprocess/mimic_cxr.py: frontal PA and AP only).
FRONTAL_VIEWS = ("PA", "AP")
PREFIX = "mimic-cxr-2.0.0-"
METADATA, CHEXPERT, SPLIT = f"{PREFIX}metadata.csv", f"{PREFIX}chexpert.csv", f"{PREFIX}split.csv"
#: A section header: an all-caps name of 3+ characters (letters, spaces, & / ( ) -) and a colon, at the
#: start of a line (MIMIC-CXR reports: ' FINDINGS:', ' IMPRESSION: text', ' INDICATION:  ___').
_HEADER = re.compile(r"^[ \t]*([A-Z][A-Z &/()\-]+[A-Z)])[ \t]*:", re.MULTILINE)
_KEPT = ("FINDINGS", "IMPRESSION")


def report_sections(text: str) -> dict[str, str]:
    """``{HEADER: body}`` of a report (bodies whitespace-normalised; text before the first header dropped).

    A header that recurs keeps both bodies, joined with a space.
    """
    sections: dict[str, str] = {}
    matches = list(_HEADER.finditer(text))
    for match, following in zip(matches, matches[1:] + [None]):
        body = text[match.end(): following.start() if following else len(text)]
        name = " ".join(match.group(1).split())
        joined = " ".join(filter(None, [sections.get(name, ""), " ".join(body.split())]))
        sections[name] = joined
    return sections


def _kept_as(header: str) -> str | None:
    """Which kept section a header feeds: FINDINGS, IMPRESSION (singular/plural spellings), a combined
    "FINDINGS AND IMPRESSION" header counts as FINDINGS; anything else None."""
    words = set(re.split(r"[ &/]+", header)) - {"AND", ""}
    has_findings, has_impression = bool(words & {"FINDING", "FINDINGS"}), bool(words & {"IMPRESSION", "IMPRESSIONS"})
    if has_findings and (has_impression or len(words) == 1):
        return "FINDINGS"
    if has_impression and len(words) == 1:
        return "IMPRESSION"
    return None


def findings_impression(text: str) -> str | None:
    """FINDINGS then IMPRESSION text of a report, whitespace-normalised; None if both are absent/empty."""
    kept: dict[str, list[str]] = {name: [] for name in _KEPT}
    for header, body in report_sections(text).items():
        target = _kept_as(header)
        if target and body:
            kept[target].append(body)
    parts = [body for name in _KEPT for body in kept[name]]
    return " ".join(parts) if parts else None


class MimicCXR(Release):
    """MIMIC-CXR-JPG v2.0.0 under ``root`` (CSVs at the top, ``files/`` with images and reports)."""

    name = "mimic-cxr"
    title = "MIMIC-CXR-JPG"
    label_names = LABELS
    provides = frozenset({"labels", "report"})
    label_files = (f"{METADATA}.gz", f"{CHEXPERT}.gz", f"{SPLIT}.gz")

    def __init__(self, root: str | Path) -> None:
        super().__init__(root)
        # the gzipped CSVs are what PhysioNet ships; an unpacked .csv is accepted too
        self.label_files = tuple(
            f"{name}.gz" if (self.root / f"{name}.gz").exists() or not (self.root / name).exists() else name
            for name in (METADATA, CHEXPERT, SPLIT)
        )

    def _load_samples(self) -> list[Sample]:
        table = self._image_table()
        reports = self._reports(table)
        table = table[table["study_id"].isin(list(reports))]
        labels = table[list(LABELS)].to_numpy(dtype=np.float32)
        files = self.root / "files"
        samples = []
        for (dicom, subject, study, view, split), label in zip(
            table[["dicom_id", "subject_id", "study_id", "ViewPosition", "split"]].itertuples(index=False), labels
        ):
            folder = files / f"p{subject[:2]}" / f"p{subject}" / f"s{study}"
            samples.append(Sample(
                sample_id=dicom, patient_id=subject, image_path=folder / f"{dicom}.jpg", labels=label,
                report=reports[study], official_split=split if isinstance(split, str) else None,
                extra={"view": view, "study_id": study},
            ))
        return samples

    def _image_table(self):
        """PA/AP images with their split and the study's labels (pandas DataFrame, ids as strings)."""
        import pandas as pd

        ids = {"dicom_id": str, "subject_id": str, "study_id": str}
        def table(name: str, columns: tuple[str, ...]):
            return read_csv(self, pick_file(self, f"{name}.gz", name), columns, dtype=ids)

        meta = table(METADATA, ("dicom_id", "subject_id", "study_id", "ViewPosition"))
        split = table(SPLIT, ("dicom_id", "study_id", "subject_id", "split"))
        labels = table(CHEXPERT, ("subject_id", "study_id", *LABELS))
        labels[list(LABELS)] = labels[list(LABELS)].apply(pd.to_numeric, errors="coerce")
        frontal = meta[meta["ViewPosition"].isin(FRONTAL_VIEWS)][["dicom_id", "subject_id", "study_id", "ViewPosition"]]
        merged = frontal.merge(split[["dicom_id", "split"]], on="dicom_id", how="left")
        merged = merged.merge(labels.drop_duplicates(["subject_id", "study_id"]), on=["subject_id", "study_id"], how="left")
        return merged.reset_index(drop=True)

    def _reports(self, table) -> dict[str, str]:
        """``study_id → findings + impression`` for the studies in ``table`` whose report has either."""
        files = self.root / "files"
        if not files.is_dir():
            self.require("files")
        studies = table[["subject_id", "study_id"]].drop_duplicates()
        reports, missing = {}, 0
        for subject, study in studies.itertuples(index=False):
            path = files / f"p{subject[:2]}" / f"p{subject}" / f"s{study}.txt"
            try:
                text = path.read_text(encoding="utf-8", errors="replace")
            except FileNotFoundError:
                missing += 1
                continue
            kept = findings_impression(text)
            if kept:
                reports[study] = kept
        if missing == len(studies) and missing:
            raise G2DBenchError(
                f"{self.title}: no report files found (e.g. {path}); unpack mimic-cxr-reports.zip into {self.root}"
            )
        if missing:
            log.warning("%s: %d of %d studies have no report file; their images are skipped", self.title, missing, len(studies))
        return reports

    @classmethod
    def split_specs(cls) -> dict[str, SplitSpec]:
        return {
            "official": SplitSpec(
                name="official", source="mimic-cxr-2.0.0-split.csv (official train / validate / test)",
                test="test", valid="validate", group_by="patient",
                notes="pretraining uses the train split; images with neither FINDINGS nor IMPRESSION are dropped",
            ),
        }
