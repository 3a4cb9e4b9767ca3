"""Tiny hand-made releases in each official on-disk format (docs/formats.md), for the loader tests.

Each ``write_*`` function writes one release under the folder it is given (a few 64-px images, written
with pydicom / OpenCV) and returns that folder. The contents are literal so that the tests can state
exactly what each loader must find; the constants below are what the tests compare against.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from g2d_bench.datasets.imageio import write_dicom

SIZE = 64


def pattern(seed: int, height: int = SIZE, width: int = SIZE) -> np.ndarray:
    """A smooth uint8 image (so that a JPEG round trip stays close to it), different per seed."""
    y, x = np.mgrid[:height, :width].astype(np.float64)
    image = 128 + 60 * np.sin(x / (7 + seed % 5) + seed) * np.cos(y / (9 + seed % 3)) + 40 * (y / height - 0.5)
    return np.clip(np.rint(image), 0, 255).astype(np.uint8)


def _write_jpeg(path: Path, image: np.ndarray) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image, [cv2.IMWRITE_JPEG_QUALITY, 95])


def _write_png(path: Path, image: np.ndarray) -> None:
    import cv2

    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), image)


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


# -- MIMIC-CXR-JPG ----------------------------------------------------------------------------------
MIMIC_REPORTS = {
    # study: (subject, report text)
    "50000001": ("10000032", """                                 FINAL REPORT
 EXAMINATION:  CHEST (PA AND LAT)

 INDICATION:  ___F with cough  // eval for pneumonia

 COMPARISON:  None.

 FINDINGS:

 The lungs are clear.  No pleural
 effusion.

 IMPRESSION:

 No acute cardiopulmonary process.
"""),
    "50000002": ("10000032", """ WET READ: small effusion
 IMPRESSION: Small left effusion.
"""),
    "50000003": ("11000011", """ INDICATION:  fever
 TECHNIQUE:  AP portable
 COMPARISON:  ___
"""),
    "50000004": ("11000011", """Preamble text that is not a section.
 FINDINGS:  Heart size is normal.
 NOTIFICATION:  discussed with Dr. ___
"""),
    "50000005": ("12000022", """ FINDINGS: Mild cardiomegaly.
 IMPRESSION: Cardiomegaly.
"""),
}
#: dicom_id → (subject, study, view, official split)
MIMIC_IMAGES = {
    "d1": ("10000032", "50000001", "PA", "train"),
    "d2": ("10000032", "50000001", "LATERAL", "train"),
    "d3": ("10000032", "50000002", "AP", "train"),
    "d4": ("11000011", "50000003", "PA", "train"),
    "d5": ("11000011", "50000004", "PA", "validate"),
    "d6": ("12000022", "50000005", "AP", "test"),
}
MIMIC_LABEL_COLUMNS = (
    "Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Enlarged Cardiomediastinum", "Fracture",
    "Lung Lesion", "Lung Opacity", "No Finding", "Pleural Effusion", "Pleural Other", "Pneumonia",
    "Pneumothorax", "Support Devices",
)


def write_mimic(root: Path) -> Path:
    import pandas as pd

    rows = [
        {"dicom_id": d, "subject_id": sub, "study_id": st, "PerformedProcedureStepDescription": "CHEST",
         "ViewPosition": view, "Rows": SIZE, "Columns": SIZE}
        for d, (sub, st, view, _) in MIMIC_IMAGES.items()
    ]
    root.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(root / "mimic-cxr-2.0.0-metadata.csv.gz", index=False)
    split = [{"dicom_id": d, "study_id": st, "subject_id": sub, "split": part} for d, (sub, st, _, part) in MIMIC_IMAGES.items()]
    pd.DataFrame(split).to_csv(root / "mimic-cxr-2.0.0-split.csv.gz", index=False)
    labels = []
    for study, (subject, _) in MIMIC_REPORTS.items():
        if study == "50000004":
            continue  # a study the labeller has no row for
        row = {"subject_id": subject, "study_id": study, **dict.fromkeys(MIMIC_LABEL_COLUMNS, np.nan)}
        row["No Finding"] = 1.0 if study == "50000001" else np.nan
        row["Pleural Effusion"] = -1.0 if study == "50000002" else (0.0 if study == "50000001" else np.nan)
        row["Cardiomegaly"] = 1.0 if study == "50000005" else np.nan
        labels.append(row)
    pd.DataFrame(labels).to_csv(root / "mimic-cxr-2.0.0-chexpert.csv.gz", index=False)
    for study, (subject, text) in MIMIC_REPORTS.items():
        _write(root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}.txt", text)
    for seed, (dicom, (subject, study, _, _)) in enumerate(MIMIC_IMAGES.items()):
        _write_jpeg(root / "files" / f"p{subject[:2]}" / f"p{subject}" / f"s{study}" / f"{dicom}.jpg", pattern(seed))
    return root


# -- CheXpert ---------------------------------------------------------------------------------------
CHEXPERT_LABELS = (
    "No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
    "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
    "Fracture", "Support Devices",
)
CHEXPERT_HEADER = "Path,Sex,Age,Frontal/Lateral,AP/PA," + ",".join(CHEXPERT_LABELS)
#: (path under the release folder, Frontal/Lateral, AP/PA, {label: value})
CHEXPERT_TRAIN = [
    ("train/patient00001/study1/view1_frontal.jpg", "Frontal", "AP", {"Atelectasis": 1, "Support Devices": 1}),
    ("train/patient00001/study1/view2_lateral.jpg", "Lateral", "", {"Atelectasis": 1}),
    ("train/patient00002/study1/view1_frontal.jpg", "Frontal", "PA", {"Cardiomegaly": 1, "Edema": -1}),
    ("train/patient00003/study1/view1_frontal.jpg", "Frontal", "AP", {"Cardiomegaly": 1}),
    ("train/patient00004/study1/view1_frontal.jpg", "Frontal", "AP", {"Edema": 1, "Atelectasis": 1}),
    ("train/patient00005/study2/view1_frontal.jpg", "Frontal", "PA", {"Pleural Effusion": 1, "No Finding": 0}),
    ("train/patient00006/study1/view1_frontal.jpg", "Frontal", "AP", {"No Finding": 1}),
    ("train/patient00007/study1/view1_frontal.jpg", "Frontal", "AP", {"Consolidation": 1, "Pneumonia": -1}),
]
CHEXPERT_VALID = [
    ("valid/patient64541/study1/view1_frontal.jpg", "Frontal", "AP", {"Edema": 1, "Cardiomegaly": 0}),
    ("valid/patient64542/study1/view1_lateral.jpg", "Lateral", "", {"No Finding": 1}),
]


def _chexpert_csv(rows, release: str) -> str:
    lines = [CHEXPERT_HEADER]
    for path, frontal, view, labels in rows:
        values = ["" if labels.get(name) is None else f"{float(labels[name]):.1f}" for name in CHEXPERT_LABELS]
        lines.append(",".join([f"{release}/{path}", "Female", "68", frontal, view, *values]))
    return "\n".join(lines) + "\n"


def write_chexpert(root: Path, release: str = "CheXpert-v1.0-small") -> Path:
    """``root`` is the release folder (it holds train.csv); ``Path`` values start with ``release``."""
    _write(root / "train.csv", _chexpert_csv(CHEXPERT_TRAIN, release))
    _write(root / "valid.csv", _chexpert_csv(CHEXPERT_VALID, release))
    for seed, (path, *_) in enumerate(CHEXPERT_TRAIN + CHEXPERT_VALID):
        _write_jpeg(root / path, pattern(seed))
    return root


# -- RSNA Pneumonia ---------------------------------------------------------------------------------
RSNA_ROWS = [
    ("p-neg-1", "", "", "", "", 0),
    ("p-one", 10, 12, 20, 15, 1),
    ("p-two", 5, 6, 10, 8, 1),
    ("p-two", 40, 30, 12, 20, 1),
    ("p-neg-2", "", "", "", "", 0),
]


def write_rsna(root: Path) -> Path:
    lines = ["patientId,x,y,width,height,Target"] + [",".join(map(str, row)) for row in RSNA_ROWS]
    _write(root / "stage_2_train_labels.csv", "\n".join(lines) + "\n")
    for seed, pid in enumerate(dict.fromkeys(r[0] for r in RSNA_ROWS)):
        write_dicom(root / "stage_2_train_images" / f"{pid}.dcm", pattern(seed), patient_id=pid)
    return root


# -- SIIM-ACR Pneumothorax --------------------------------------------------------------------------
#: ImageId → RLE rows (64×64 images): img-a has two lesions, img-b none, img-c one.
SIIM_RLES = {
    "1.2.3.100": ["130 3 61 3", "2000 4"],
    "1.2.3.200": ["-1"],
    "1.2.3.300": ["640 10"],
}


def siim_expected_mask(image_id: str, height: int = SIZE, width: int = SIZE) -> np.ndarray:
    """The union mask of a fixture image, computed by hand (column-major absolute runs)."""
    flat = np.zeros(height * width, dtype=bool)
    for rle in SIIM_RLES[image_id]:
        values = [int(v) for v in rle.split()]
        if values == [-1]:
            continue
        position = 0
        for offset, length in zip(values[0::2], values[1::2]):
            start = position + offset
            flat[start: start + length] = True
            position = start + length
    return flat.reshape(width, height).T


def write_siim(root: Path) -> Path:
    lines = ["ImageId, EncodedPixels"]
    for image_id, rles in SIIM_RLES.items():
        lines += [f"{image_id}, {rle}" for rle in rles]
    _write(root / "train-rle.csv", "\n".join(lines) + "\n")
    for seed, image_id in enumerate(SIIM_RLES):
        study, series = f"{image_id}.1", f"{image_id}.2"
        path = root / "dicom-images-train" / study / series / f"{image_id}.dcm"
        write_dicom(path, pattern(seed), patient_id=f"patient-{seed}", study_uid=study, series_uid=series, sop_uid=image_id)
    return root


# -- NIH ChestX-ray14 -------------------------------------------------------------------------------
NIH_HEADER = ("Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,"
              "OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]")
#: (image, findings, patient, view, official list, image folder)
NIH_ROWS = [
    ("00000001_000.png", "Cardiomegaly", 1, "PA", "train", "images_001"),
    ("00000001_001.png", "Cardiomegaly|Emphysema", 1, "PA", "train", "images_001"),
    ("00000002_000.png", "No Finding", 2, "AP", "train", "images_002"),
    ("00000003_000.png", "Hernia|Pleural_Thickening|Effusion", 3, "PA", "test", "images_002"),
    ("00000004_000.png", "No Finding", 4, "PA", "test", None),
]


def write_nih(root: Path) -> Path:
    rows = [f"{img},{find},0,{pat},50,M,{view},{SIZE},{SIZE},0.143,0.143" for img, find, pat, view, _, _ in NIH_ROWS]
    lines = [NIH_HEADER] + rows
    _write(root / "Data_Entry_2017_v2020.csv", "\n".join(lines) + "\n")
    _write(root / "train_val_list.txt", "\n".join(r[0] for r in NIH_ROWS if r[4] == "train") + "\n")
    _write(root / "test_list.txt", "\n".join(r[0] for r in NIH_ROWS if r[4] == "test") + "\n")
    for seed, (image, _, _, _, _, folder) in enumerate(NIH_ROWS):
        pixels = pattern(seed)
        if seed == 1:  # one 16-bit PNG: the loader rescales it to 0..255
            pixels = pixels.astype(np.uint16) * 16 + 1000
        target = root / folder / "images" if folder else root / "images"
        _write_png(target / image, pixels)
    return root


# -- COVIDx CXR -------------------------------------------------------------------------------------
COVIDX_TRAIN = (
    "101 normal-1.png normal rsna\n"
    "Patient 7 A covid-1.jpg COVID-19 cohen\n"
    "\n"
    "202 pneu-1.png pneumonia rsna\n"
    "303 covid-2.png COVID19 sirm\n"
)
COVIDX_TEST = "404 test-1.png normal rsna\n505 test-2.png COVID-19 ricord\n"


def write_covidx(root: Path) -> Path:
    _write(root / "train.txt", COVIDX_TRAIN)
    _write(root / "test.txt", COVIDX_TEST)
    for seed, (split, text) in enumerate([("train", COVIDX_TRAIN), ("test", COVIDX_TEST)]):
        for i, line in enumerate(filter(None, text.splitlines())):
            name = line.rsplit(maxsplit=3)[1]
            writer = _write_jpeg if name.endswith(".jpg") else _write_png
            writer(root / split / name, pattern(10 * seed + i))
    return root


# -- Object-CXR -------------------------------------------------------------------------------------
OBJCXR_TRAIN = [
    ("00001.jpg", "0 10 12 20 30"),
    ("00002.jpg", "1 30 30 50 40;2 5 5 15 5 10 20"),
    ("00003.jpg", ""),
    ("00004.jpg", "2 40 10 60 10 60 30 40 30;0 2 2 6 8"),
]
OBJCXR_DEV = [("08001.jpg", "0 1 1 9 9"), ("08002.jpg", "")]


def write_objcxr(root: Path) -> Path:
    for name, rows in (("train", OBJCXR_TRAIN), ("dev", OBJCXR_DEV)):
        _write(root / f"{name}.csv", "image_name,annotation\n" + "".join(f"{img},{ann}\n" for img, ann in rows))
        for seed, (image, _) in enumerate(rows):
            _write_jpeg(root / name / image, pattern(seed))
    return root


WRITERS = {
    "mimic-cxr": write_mimic,
    "chexpert": write_chexpert,
    "rsna": write_rsna,
    "siim": write_siim,
    "nih-cxr14": write_nih,
    "covidx": write_covidx,
    "object-cxr": write_objcxr,
}
