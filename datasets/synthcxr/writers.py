"""One writer per release format: plans the population, writes images and the label files exactly as
docs/formats.md describes, so the real-data loaders read SynthCXR unchanged.

Each :class:`SynthRelease` has ``plan`` (who is in the dataset: ids, views, findings, reports, labels;
no pixels), ``write_image`` (the release's encoding and path) and ``tables`` (label/list files,
written after the images because boxes, RLE and shapes come from drawing).
"""
from __future__ import annotations

import csv
import gzip
import io
import math
from dataclasses import replace
from pathlib import Path

import numpy as np

from g2d_bench.datasets.synthcxr import labels as L
from g2d_bench.datasets.synthcxr.cases import Case
from g2d_bench.datasets.synthcxr.findings import Finding
from g2d_bench.datasets.synthcxr.population import (
    PREVALENCE, finalize_anatomy, sample_finding, sample_findings,
)
from g2d_bench.datasets.synthcxr.reports import compose_report, plan_mentions
from g2d_bench.datasets.synthcxr.world import jitter_body, sample_body

#: JPEG quality of the JPEG releases (MIMIC-CXR-JPG was written at quality 95, Johnson et al. 2019).
JPEG_QUALITY = 95

#: Detector pixel spacings (mm) of the NIH ChestX-ray14 originals, spelled as the release spells them, with
#: the commonest original size (width, height) at each. RSNA's and SIIM's DICOMs are NIH images, and their
#: PixelSpacing takes the same values (Data_Entry_2017_v2020.csv and
#: kaggle_stage_2_train_images_dicom_headers.csv.gz, both in the torchxrayvision wheel).
DETECTORS: dict[str, tuple[int, int]] = {
    "0.139": (3056, 2544), "0.14300000000000002": (2992, 2991), "0.168": (2500, 2048), "0.171": (2500, 2048),
    "0.19431099999999998": (2021, 2021),
}
#: Images per (view, spacing) in Data_Entry_2017_v2020.csv; spacings below 1 % of a view left out.
DETECTOR_COUNTS: dict[str, dict[str, int]] = {
    "AP": {"0.139": 15382, "0.168": 24638, "0.171": 4715},
    "PA": {"0.139": 4709, "0.14300000000000002": 39846, "0.168": 11165, "0.171": 5264, "0.19431099999999998": 6106},
}
#: UID root of the RSNA and SIIM DICOMs (DCMTK's; both releases were converted with it).
KAGGLE_UID_ROOT = "1.2.276.0.7230010.3.1"
#: PatientAge of the RSNA DICOMs: mean 47.0, SD 16.8 years (the wheel's header table); adults only here.
KAGGLE_AGE = (47.0, 16.8, 18, 92)


def _hex(rng: np.random.Generator, digits: int) -> str:
    return "".join(f"{int(v):x}" for v in rng.integers(0, 16, digits))


def _unique(rng: np.random.Generator, low: int, high: int, count: int) -> list[int]:
    """``count`` distinct integers in [low, high), in random order."""
    out: dict[int, None] = {}
    while len(out) < count:
        for v in rng.integers(low, high, count):
            out.setdefault(int(v), None)
    return list(out)[:count]


def _header_rng(rng: np.random.Generator) -> np.random.Generator:
    """A generator for header-only values (ages, detectors, UIDs), seeded from the planning generator once
    every case is planned: the draws before it, hence every image and label, are what they were before
    these headers were written (SYNTH_VERSION 1)."""
    return np.random.default_rng(int(rng.integers(2**63)))


def _spacing(rng: np.random.Generator, view: str) -> str:
    """A detector pixel spacing for a frontal ``view`` ("AP"/"PA"), at the release's frequencies."""
    counts = DETECTOR_COUNTS[view]
    weights = np.array(list(counts.values()), dtype=np.float64)
    return list(counts)[int(rng.choice(len(counts), p=weights / weights.sum()))]


def _kaggle_age(rng: np.random.Generator) -> int:
    mean, sd, low, high = KAGGLE_AGE
    while True:
        age = int(round(rng.normal(mean, sd)))
        if low <= age <= high:
            return age


def _uuid4(rng: np.random.Generator) -> str:
    """A random version-4 UUID string (the RSNA patientId / SIIM PatientID spelling)."""
    return f"{_hex(rng, 8)}-{_hex(rng, 4)}-4{_hex(rng, 3)}-{'89ab'[int(rng.integers(4))]}{_hex(rng, 3)}-{_hex(rng, 12)}"


def _plan_kaggle_headers(rng: np.random.Generator, cases: list[Case], uids: bool) -> None:
    """Age, detector spacing, PatientID (SIIM) or UIDs (RSNA) of each case's DICOM header, into the case."""
    side = _header_rng(rng)
    for c in cases:
        c.age = _kaggle_age(side)
        c.meta["pixel_spacing"] = _spacing(side, c.view)
        if uids:  # RSNA: release-like UIDs (SIIM's are planned with the image: its ImageId is the SOP UID)
            stamp = f"{int(side.integers(1000, 30000))}.{1517874000 + c.index}"
            c.meta["uids"] = {kind: f"{KAGGLE_UID_ROOT}.{number}.8323329.{stamp}.{int(side.integers(100000, 999999))}"
                              for kind, number in (("sop_uid", 4), ("study_uid", 2), ("series_uid", 3))}
        else:  # SIIM: PatientID is a UUID of its own, not the ImageId
            c.meta["patient_uuid"] = _uuid4(side)


def kaggle_dicom_headers(case: Case, patient_id: str) -> dict[str, object]:
    """The header elements of an RSNA or SIIM DICOM for ``case`` (keyword → value as the release writes it).

    Both releases are NIH ChestX-ray14 images converted by the same DCMTK tool (UID root
    1.2.276.0.7230010.3.1, Secondary Capture): the same elements with the same values. Tabulated in
    kaggle_stage_2_train_images_dicom_headers.csv.gz (torchxrayvision wheel): BodyPartExamined CHEST,
    ConversionType WSD, Modality CR, PatientAge (years, no unit: "51"), PatientID, PatientSex M/F,
    PixelSpacing, SamplesPerPixel 1, SeriesNumber 1, InstanceNumber 1, ViewPosition AP/PA, PatientOrientation
    empty; the others as pydicom prints a release file (dummy StudyDate 19010101, "view: PA" description).
    ``case.meta["pixel_spacing"]`` is the detector's (the release's 1024-px images are downsampled, their
    spacing is not rescaled either).
    """
    spacing = case.meta["pixel_spacing"]
    return {
        "SpecificCharacterSet": "ISO_IR 100", "StudyDate": "19010101", "StudyTime": "000000.00",
        "AccessionNumber": "", "Modality": "CR", "ConversionType": "WSD", "ReferringPhysicianName": "",
        "SeriesDescription": f"view: {case.view}", "PatientName": patient_id, "PatientID": patient_id,
        "PatientBirthDate": "", "PatientSex": "F" if case.female else "M", "PatientAge": str(case.age),
        "BodyPartExamined": "CHEST", "ViewPosition": case.view, "StudyID": "", "SeriesNumber": "1",
        "InstanceNumber": "1", "PatientOrientation": "", "PixelSpacing": [spacing, spacing],
        "LossyImageCompressionMethod": "ISO_10918_1",
    }


def _csv_text(header: list[str], rows: list[list], sep: str = ",") -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, delimiter=sep, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue()


def _write_gz(path: Path, text: str) -> None:
    """gzip with a zero timestamp, so identical content gives identical bytes."""
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as handle:
        handle.write(text.encode("utf-8"))


def _label_text(value: float) -> str:
    return "" if math.isnan(value) else f"{value:.1f}"


def _study_findings(rng: np.random.Generator, prevalence: dict[str, float], view: str) -> list[Finding]:
    """Findings of one general-population study; portable AP films carry more devices (sicker patients)."""
    prev = dict(prevalence)
    prev["support_devices"] = min(0.9, prev.get("support_devices", 0.0) * (2.0 if view == "AP" else 0.4))
    return sample_findings(rng, prev)


def _patient_body(rng: np.random.Generator, female: bool):
    return sample_body(rng, female=female, view="PA", ctr=0.45, mediastinum=0.17)


def _study_body(rng: np.random.Generator, base, findings: list[Finding], view: str):
    ctr, width = finalize_anatomy(rng, findings)
    return replace(jitter_body(rng, base, view=view), ctr=ctr, mediastinum=width)


class SynthRelease:
    """A release format. ``text_labels``: labels come from report text (carry hedges and noise)."""

    name = ""
    text_labels = False
    #: finding → label names of this release (for the truth sidecar's ``label`` column)
    label_space: dict[str, tuple[str, ...]] = {}

    def plan(self, rng: np.random.Generator, n: int) -> list[Case]:
        raise NotImplementedError

    def write_image(self, root: Path, case: Case, image: np.ndarray) -> None:
        import cv2

        path = root / case.path
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.suffix == ".jpg":
            ok, data = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
        else:
            ok, data = cv2.imencode(".png", image, [cv2.IMWRITE_PNG_COMPRESSION, 1])
        path.write_bytes(data.tobytes())

    def record(self, case: Case, masks: list[np.ndarray]) -> None:
        """Keep what the label files need from the drawn masks (SIIM's RLE); default nothing."""

    def tables(self, root: Path, cases: list[Case], size: int) -> None:
        raise NotImplementedError

    def counts(self, cases: list[Case]) -> dict:
        """Images per official split (and per class where there are classes)."""
        out: dict[str, int] = {"images": len(cases), "patients": len({c.patient for c in cases})}
        for c in cases:
            if c.split:
                out[f"split:{c.split}"] = out.get(f"split:{c.split}", 0) + 1
        return out


# ------------------------------------------------------------------------------------------------
# MIMIC-CXR-JPG
# ------------------------------------------------------------------------------------------------
class MimicWriter(SynthRelease):
    """Subjects with 1–4 studies; PA or portable AP, half the PA studies with a lateral; one report
    per study; splits by subject 90/5/5 (the official file is 98/1/1 — a small copy needs a test set)."""

    name = "mimic-cxr"
    text_labels = True
    label_space = L.CHEXPERT_MAP

    def plan(self, rng: np.random.Generator, n: int) -> list[Case]:
        cases: list[Case] = []
        subjects = _unique(rng, 10_000_000, 20_000_000, n)
        studies = iter(_unique(rng, 50_000_000, 60_000_000, n))
        for subject in subjects:
            if len(cases) >= n:
                break
            female, age = bool(rng.random() < 0.48), int(rng.integers(18, 95))
            base = _patient_body(rng, female)
            u = rng.random()
            split = "train" if u < 0.9 else ("validate" if u < 0.95 else "test")
            for _ in range(min(int(rng.geometric(0.5)), 4)):
                if len(cases) >= n:
                    break
                self._study(rng, cases, n, str(subject), str(next(studies)), base, female, age, split)
        return cases

    def _study(self, rng, cases, n, subject, study, base, female, age, split) -> None:
        view = "AP" if rng.random() < 0.45 else "PA"
        findings = _study_findings(rng, PREVALENCE["mimic-cxr"], view)
        body = _study_body(rng, base, findings, view)
        mentions = plan_mentions(findings, rng, body.ctr)
        report, written = compose_report(mentions, rng, view=view, female=female, age=age)
        labels = L.chexpert_from_mentions(written)
        date = f"{int(rng.integers(2110, 2200))}{int(rng.integers(1, 13)):02d}{int(rng.integers(1, 29)):02d}"
        time = f"{int(rng.integers(0, 24)):02d}{int(rng.integers(0, 60)):02d}{int(rng.integers(0, 60)):02d}.{int(rng.integers(0, 1000)):03d}"
        views = [view] + (["LATERAL"] if rng.random() < (0.5 if view == "PA" else 0.1) else [])
        folder = f"files/p{subject[:2]}/p{subject}/s{study}"
        for v in views[: n - len(cases)]:
            dicom = "-".join(_hex(rng, 8) for _ in range(5))
            cases.append(Case(
                index=len(cases), key=dicom, path=f"{folder}/{dicom}.jpg", patient=subject, view=v,
                body=replace(body, view=v), findings=findings, split=split, study=study, female=female, age=age,
                mentions=written, report=report if v == view else None, labels=labels,
                meta={"date": date, "time": time, "study_view": view},
            ))

    def tables(self, root: Path, cases: list[Case], size: int) -> None:
        meta_rows, split_rows, label_rows, seen = [], [], [], set()
        for c in cases:
            desc = "CHEST (PA AND LAT)" if c.meta["study_view"] == "PA" else "CHEST (PORTABLE AP)"
            code = {"PA": "postero-anterior", "AP": "antero-posterior", "LATERAL": "lateral"}[c.view]
            orient = "Erect" if c.meta["study_view"] == "PA" else ("Recumbent" if c.index % 3 else "")
            meta_rows.append([c.key, c.patient, c.study, desc, c.view, size, size, c.meta["date"], c.meta["time"],
                              desc, code, orient])
            split_rows.append([c.key, c.study, c.patient, c.split])
            if c.study not in seen:
                seen.add(c.study)
                label_rows.append([c.patient, c.study] + [_label_text(c.labels[k]) for k in L.MIMIC_LABELS])
            if c.report is not None:
                (root / c.path).parent.with_suffix(".txt").write_text(c.report, encoding="utf-8")
        meta_header = ["dicom_id", "subject_id", "study_id", "PerformedProcedureStepDescription", "ViewPosition",
                       "Rows", "Columns", "StudyDate", "StudyTime", "ProcedureCodeSequence_CodeMeaning",
                       "ViewCodeSequence_CodeMeaning", "PatientOrientationCodeSequence_CodeMeaning"]
        _write_gz(root / "mimic-cxr-2.0.0-metadata.csv.gz", _csv_text(meta_header, meta_rows))
        _write_gz(root / "mimic-cxr-2.0.0-split.csv.gz", _csv_text(["dicom_id", "study_id", "subject_id", "split"], split_rows))
        _write_gz(root / "mimic-cxr-2.0.0-chexpert.csv.gz",
                  _csv_text(["subject_id", "study_id", *L.MIMIC_LABELS], label_rows))

    def counts(self, cases: list[Case]) -> dict:
        out = super().counts(cases)
        out["studies"] = len({c.study for c in cases})
        out["frontal"] = sum(c.view != "LATERAL" for c in cases)
        out["reports_without_findings_or_impression"] = sum(
            1 for c in cases if c.report is not None and "FINDINGS:" not in c.report and "IMPRESSION:" not in c.report)
        return out


# ------------------------------------------------------------------------------------------------
# CheXpert
# ------------------------------------------------------------------------------------------------
class CheXpertWriter(SynthRelease):
    """Patients with 1–3 studies (frontal, a quarter with a lateral); train.csv labels come from the
    (unpublished) report with its hedges, valid.csv labels from what was drawn (radiologist consensus,
    0/1 only, as the real valid.csv). About 10 % of the patients are in valid."""

    name = "chexpert"
    text_labels = True
    label_space = L.CHEXPERT_MAP
    folder = "CheXpert-v1.0-small"

    def plan(self, rng: np.random.Generator, n: int) -> list[Case]:
        groups: list[tuple[str, list[Case]]] = []
        total = 0
        while total < n:
            female, age = bool(rng.random() < 0.45), int(rng.integers(18, 91))
            base = _patient_body(rng, female)
            split = "valid" if rng.random() < 0.1 else "train"
            images: list[Case] = []
            for k in range(1, min(int(rng.geometric(0.55)), 3) + 1):
                if total + len(images) >= n:
                    break
                images += self._study(rng, base, female, age, split, k, n - total - len(images))
            groups.append((split, images))
            total += len(images)
        return self._number(groups)

    def _study(self, rng, base, female, age, split, k, room) -> list[Case]:
        view = "AP" if rng.random() < 0.75 else "PA"
        findings = _study_findings(rng, PREVALENCE["chexpert"], view)
        body = _study_body(rng, base, findings, view)
        mentions = plan_mentions(findings, rng, body.ctr)
        labels = L.chexpert_from_truth(findings) if split == "valid" else L.chexpert_from_mentions(mentions)
        views = [view] + (["LATERAL"] if rng.random() < 0.25 else [])
        return [Case(index=-1, key="", path="", patient="", view=v, body=replace(body, view=v), findings=findings,
                     split=split, study=f"study{k}", female=female, age=age,
                     mentions=mentions if split == "train" else [], labels=labels, curated=split == "valid")
                for v in views[:room]]

    def _number(self, groups: list[tuple[str, list[Case]]]) -> list[Case]:
        """Train patients first (patient00001…), valid patients after; paths as in the release."""
        ordered = [g for g in groups if g[0] == "train"] + [g for g in groups if g[0] == "valid"]
        cases = []
        for number, (split, images) in enumerate(ordered, start=1):
            for case in images:
                name = "view1_frontal.jpg" if case.view != "LATERAL" else "view2_lateral.jpg"
                case.patient = f"patient{number:05d}"
                case.path = f"{self.folder}/{split}/{case.patient}/{case.study}/{name}"
                case.key, case.index = case.path, len(cases)
                cases.append(case)
        return cases

    def tables(self, root: Path, cases: list[Case], size: int) -> None:
        header = ["Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", *L.CHEXPERT_LABELS]
        for split in ("train", "valid"):
            rows = [[c.path, "Female" if c.female else "Male", c.age, "Lateral" if c.view == "LATERAL" else "Frontal",
                     "" if c.view == "LATERAL" else c.view] + [_label_text(c.labels[k]) for k in L.CHEXPERT_LABELS]
                    for c in cases if c.split == split]
            (root / f"{split}.csv").write_text(_csv_text(header, rows), encoding="utf-8")


# ------------------------------------------------------------------------------------------------
# RSNA Pneumonia
# ------------------------------------------------------------------------------------------------
class RSNAWriter(SynthRelease):
    """27 % "Lung Opacity" (consolidation with boxes), 40 % "No Lung Opacity / Not Normal" (other
    findings, look-alikes included), 33 % normal (RSNA stage 2 class shares: 22.5 / 40 / 29 %,
    positives raised to the brief's 25–30 %). Positives are more often AP (as in the release)."""

    name = "rsna"
    label_space = {"consolidation": ("Target",)}

    def plan(self, rng: np.random.Generator, n: int) -> list[Case]:
        cases = []
        for i in range(n):
            u = rng.random()
            positive = u < 0.27
            view = "AP" if rng.random() < (0.7 if positive else 0.4) else "PA"
            if positive:
                side = ("bilateral", "right", "left")[int(rng.choice(3, p=[0.45, 0.3, 0.25]))]
                f = sample_finding(rng, "consolidation", severity=(1.6, 1.6))
                f.side = side
                findings = [f] + sample_findings(rng, PREVALENCE["mimic-cxr"], 0.3,
                                                 exclude=("consolidation", "infiltration", "covid"))
            elif u < 0.67:
                findings = self._not_normal(rng)
            else:
                findings = []
            female = bool(rng.random() < 0.45)
            body = _study_body(rng, _patient_body(rng, female), findings, view)
            pid = _uuid4(rng)
            cases.append(Case(i, pid, f"stage_2_train_images/{pid}.dcm", pid, view, body, findings, female=female,
                              labels={"Target": float(positive)}))
        _plan_kaggle_headers(rng, cases, uids=True)
        return cases

    @staticmethod
    def _not_normal(rng: np.random.Generator) -> list[Finding]:
        for _ in range(50):
            found = sample_findings(rng, PREVALENCE["mimic-cxr"], 1.5, exclude=("consolidation", "infiltration", "covid"))
            if found:
                return found
        return [sample_finding(rng, "atelectasis")]

    def write_image(self, root: Path, case: Case, image: np.ndarray) -> None:
        from g2d_bench.datasets.imageio import write_dicom

        path = root / case.path
        path.parent.mkdir(parents=True, exist_ok=True)
        write_dicom(path, image, patient_id=case.key, **case.meta["uids"],
                    headers=kaggle_dicom_headers(case, patient_id=case.key))

    def tables(self, root: Path, cases: list[Case], size: int) -> None:
        rows = []
        for c in cases:
            boxes = [b for f in c.findings if f.name == "consolidation" for b in f.boxes]
            if c.labels["Target"] and boxes:
                rows += [[c.key, f"{x:.1f}", f"{y:.1f}", f"{w:.1f}", f"{h:.1f}", 1] for x, y, w, h in boxes]
            else:
                rows.append([c.key, "", "", "", "", 0])
        text = _csv_text(["patientId", "x", "y", "width", "height", "Target"], rows)
        (root / "stage_2_train_labels.csv").write_text(text, encoding="utf-8")

    def counts(self, cases: list[Case]) -> dict:
        out = super().counts(cases)
        out["positive"] = sum(1 for c in cases if c.labels["Target"])
        out["boxes"] = sum(len(f.boxes) for c in cases for f in c.findings if f.name == "consolidation")
        return out


# ------------------------------------------------------------------------------------------------
# SIIM-ACR Pneumothorax
# ------------------------------------------------------------------------------------------------
class SIIMWriter(SynthRelease):
    """22 % pneumothorax (SIIM train: 2,669 of 12,047 images); chest drains are commoner in the
    positives, as in the release; one RLE row per connected lesion, "-1" for negatives."""

    name = "siim"
    label_space = {"pneumothorax": ("Pneumothorax",)}
    uid_root = KAGGLE_UID_ROOT

    def plan(self, rng: np.random.Generator, n: int) -> list[Case]:
        cases = []
        for i in range(n):
            positive = rng.random() < 0.22
            others = sample_findings(rng, PREVALENCE["mimic-cxr"], 0.6, exclude=("pneumothorax", "support_devices"))
            findings = ([sample_finding(rng, "pneumothorax", severity=(1.3, 2.0))] if positive else []) + others
            if rng.random() < (0.3 if positive else 0.1):
                drain = sample_finding(rng, "support_devices")
                drain.shapes = ["chest_tube"]
                findings.append(drain)
            view = "AP" if rng.random() < 0.5 else "PA"
            female = bool(rng.random() < 0.45)
            body = _study_body(rng, _patient_body(rng, female), findings, view)
            stamp = f"{int(rng.integers(1000, 15000))}.{1517875000 + i}"
            sop = f"{self.uid_root}.4.8323329.{stamp}.{int(rng.integers(100000, 999999))}"
            study = f"{self.uid_root}.2.8323329.{stamp}.{int(rng.integers(100000, 999999))}"
            series = f"{self.uid_root}.3.8323329.{stamp}.{int(rng.integers(100000, 999999))}"
            cases.append(Case(i, sop, f"dicom-images-train/{study}/{series}/{sop}.dcm", sop, view, body, findings,
                              female=female, labels={"Pneumothorax": float(positive)},
                              meta={"study_uid": study, "series_uid": series}))
        _plan_kaggle_headers(rng, cases, uids=False)
        return cases

    def write_image(self, root: Path, case: Case, image: np.ndarray) -> None:
        from g2d_bench.datasets.imageio import write_dicom

        path = root / case.path
        path.parent.mkdir(parents=True, exist_ok=True)
        patient = case.meta["patient_uuid"]
        write_dicom(path, image, patient_id=patient, study_uid=case.meta["study_uid"],
                    series_uid=case.meta["series_uid"], sop_uid=case.key,
                    headers=kaggle_dicom_headers(case, patient_id=patient))

    def record(self, case: Case, masks: list[np.ndarray]) -> None:
        """One RLE per connected pneumothorax region (several rows per image = several lesions)."""
        import cv2

        from g2d_bench.datasets.rle import rle_encode

        union = np.zeros_like(masks[0]) if masks else None
        for f, m in zip(case.findings, masks):
            if f.name == "pneumothorax":
                union |= m
        if union is None or not union.any():
            return
        n, labels = cv2.connectedComponents(union.astype(np.uint8), connectivity=8)
        case.meta["rles"] = [rle_encode(labels == k) for k in range(1, n)]

    def tables(self, root: Path, cases: list[Case], size: int) -> None:
        # the release: a space after the comma in the header only; data rows "<ImageId>,-1" (REFERENCE.md)
        lines = ["ImageId, EncodedPixels"]
        for c in cases:
            rles = c.meta.get("rles") or ["-1"]
            lines += [f"{c.key},{rle}" for rle in rles]
        (root / "train-rle.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")

    def counts(self, cases: list[Case]) -> dict:
        out = super().counts(cases)
        out["positive"] = sum(1 for c in cases if c.labels["Pneumothorax"])
        return out


# ------------------------------------------------------------------------------------------------
# NIH ChestX-ray14
# ------------------------------------------------------------------------------------------------
class NIHWriter(SynthRelease):
    """Patients with follow-ups; labels text-mined from the (unpublished) report, hedges counted as
    positive; official lists by patient, ~23 % of the images in test_list (25,596 / 112,120)."""

    name = "nih-cxr14"
    text_labels = True
    label_space = L.NIH_MAP

    def plan(self, rng: np.random.Generator, n: int) -> list[Case]:
        cases: list[Case] = []
        patient = 0
        while len(cases) < n:
            patient += 1
            female, age = bool(rng.random() < 0.44), int(rng.integers(10, 90))
            base = _patient_body(rng, female)
            split = "test" if rng.random() < 0.23 else "train"
            for follow_up in range(min(int(rng.geometric(0.45)), 6, n - len(cases))):
                view = "AP" if rng.random() < 0.4 else "PA"
                findings = _study_findings(rng, PREVALENCE["nih-cxr14"], view)
                body = _study_body(rng, base, findings, view)
                mentions = plan_mentions(findings, rng, body.ctr)
                name = f"{patient:08d}_{follow_up:03d}.png"
                cases.append(Case(len(cases), name, f"images/{name}", str(patient), view, body, findings, split,
                                  female=female, age=age + follow_up // 3, mentions=mentions,
                                  labels={"Finding Labels": L.nih_from_mentions(mentions)}, meta={"follow_up": follow_up}))
        side = _header_rng(rng)
        for c in cases:  # OriginalImage*: the detector's original, as in the release (its PNGs are 1024 px)
            c.meta["pixel_spacing"] = _spacing(side, c.view)
        return cases

    def tables(self, root: Path, cases: list[Case], size: int) -> None:
        header = ["Image Index", "Finding Labels", "Follow-up #", "Patient ID", "Patient Age", "Patient Gender",
                  "View Position", "OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]"]
        rows = []
        for c in cases:
            spacing = c.meta["pixel_spacing"]
            width, height = DETECTORS[spacing]
            rows.append([c.key, "|".join(c.labels["Finding Labels"]) or "No Finding", c.meta["follow_up"], c.patient,
                         c.age, "F" if c.female else "M", c.view, width, height, spacing, spacing])
        (root / "Data_Entry_2017_v2020.csv").write_text(_csv_text(header, rows), encoding="utf-8")
        for split, name in (("train", "train_val_list.txt"), ("test", "test_list.txt")):
            keys = [c.key for c in cases if c.split == split]
            (root / name).write_text("".join(k + "\n" for k in keys), encoding="utf-8")


# ------------------------------------------------------------------------------------------------
# COVIDx CXR
# ------------------------------------------------------------------------------------------------
COVIDX_SOURCES = {
    "normal": ("rsna", "rsna", "cohen", "bimcv"), "pneumonia": ("rsna", "rsna", "cohen", "actmed"),
    "COVID-19": ("bimcv", "ricord", "stonybrook", "cohen", "sirm", "fig1", "actmed"),
}


class COVIDxWriter(SynthRelease):
    """Classes normal / pneumonia / COVID-19 by patient (train 35/25/40 %, COVIDx-9-like); test list
    ~15 % of the images with the official test set's 1:1:2 class ratio; PNG and JPEG files mixed."""

    name = "covidx"
    label_space = {"consolidation": ("pneumonia",), "covid": ("COVID-19",)}

    def plan(self, rng: np.random.Generator, n: int) -> list[Case]:
        cases: list[Case] = []
        patient = 0
        while len(cases) < n:
            patient += 1
            cls = ("normal", "pneumonia", "COVID-19")[int(rng.choice(3, p=[0.35, 0.25, 0.4]))]
            female = bool(rng.random() < 0.45)
            base = _patient_body(rng, female)
            pid = f"patient {patient}" if rng.random() < 0.05 else str(patient)  # some ids contain spaces
            source = str(rng.choice(COVIDX_SOURCES[cls]))
            for _ in range(min(int(rng.geometric(0.7 if cls == "COVID-19" else 0.9)), 3, n - len(cases))):
                findings = self._findings(rng, cls)
                view = "AP" if rng.random() < (0.6 if cls != "normal" else 0.3) else "PA"
                body = _study_body(rng, base, findings, view)
                name = f"{_hex(rng, 16)}.{'jpg' if rng.random() < 0.3 else 'png'}"
                cases.append(Case(len(cases), name, name, pid, view, body, findings, female=female,
                                  labels={"class": cls}, meta={"source": source, "name": name}))
        self._split(rng, cases)
        return cases

    @staticmethod
    def _findings(rng: np.random.Generator, cls: str) -> list[Finding]:
        if cls == "COVID-19":
            return [sample_finding(rng, "covid", severity=(1.8, 1.5))]
        if cls == "pneumonia":
            f = sample_finding(rng, "consolidation", severity=(1.8, 1.5))
            return [f] + ([sample_finding(rng, "effusion")] if rng.random() < 0.15 else [])
        return [sample_finding(rng, "support_devices")] if rng.random() < 0.05 else []

    @staticmethod
    def _split(rng: np.random.Generator, cases: list[Case]) -> None:
        """Test patients per class until each class has its share (1:1:2) of 15 % of the images."""
        target = {"normal": 0.25, "pneumonia": 0.25, "COVID-19": 0.5}
        by_patient: dict[str, list[Case]] = {}
        for c in cases:
            by_patient.setdefault(c.patient, []).append(c)
        patients = list(by_patient)
        order = rng.permutation(len(patients))
        taken = dict.fromkeys(target, 0)
        for i in order:
            group = by_patient[patients[i]]
            cls = group[0].labels["class"]
            test = taken[cls] + len(group) <= max(1, round(0.15 * len(cases) * target[cls]))
            taken[cls] += len(group) if test else 0
            for c in group:
                c.split = "test" if test else "train"
                c.path = c.key = f"{c.split}/{c.meta['name']}"  # the loader's sample_id

    def tables(self, root: Path, cases: list[Case], size: int) -> None:
        for split in ("train", "test"):
            lines = [f"{c.patient} {c.meta['name']} {c.labels['class']} {c.meta['source']}\n"
                     for c in cases if c.split == split]
            (root / f"{split}.txt").write_text("".join(lines), encoding="utf-8")

    def counts(self, cases: list[Case]) -> dict:
        out = super().counts(cases)
        for c in cases:
            key = f"{c.split}:{c.labels['class']}"
            out[key] = out.get(key, 0) + 1
        return out


# ------------------------------------------------------------------------------------------------
# Object-CXR
# ------------------------------------------------------------------------------------------------
class ObjectCXRWriter(SynthRelease):
    """Half the images with 1–4 foreign objects (Object-CXR: 50 % positive); dev.csv holds 1/9 of the
    images (the release's 1,000 dev of 9,000 labelled); other findings unlabelled in the background."""

    name = "object-cxr"
    label_space = {"foreign_object": ("object",)}

    def plan(self, rng: np.random.Generator, n: int) -> list[Case]:
        n_dev = max(1, round(n / 9))
        cases = []
        for i in range(n):
            split = "train" if i < n - n_dev else "dev"
            findings = sample_findings(rng, PREVALENCE["mimic-cxr"], 0.5, exclude=("support_devices",))
            if rng.random() < 0.5:
                findings.append(Finding("foreign_object"))
            female = bool(rng.random() < 0.5)
            view = "PA" if rng.random() < 0.8 else "AP"
            body = _study_body(rng, _patient_body(rng, female), findings, view)
            name = f"{i + 1:05d}.jpg"
            cases.append(Case(i, f"{split}/{name}", f"{split}/{name}", f"{split}/{name}", view, body, findings, split,
                              female=female, meta={"name": name}))
        return cases

    def tables(self, root: Path, cases: list[Case], size: int) -> None:
        for split, file in (("train", "train.csv"), ("dev", "dev.csv")):
            rows = []
            for c in cases:
                if c.split != split:
                    continue
                shapes = [s for f in c.findings if f.name == "foreign_object" for s in f.shapes]
                rows.append([c.meta["name"], ";".join(f"{kind} " + " ".join(map(str, coords)) for kind, coords in shapes)])
            (root / file).write_text(_csv_text(["image_name", "annotation"], rows), encoding="utf-8")


WRITERS: dict[str, type[SynthRelease]] = {
    w.name: w for w in (MimicWriter, CheXpertWriter, RSNAWriter, SIIMWriter, NIHWriter, COVIDxWriter, ObjectCXRWriter)
}
