"""SynthCXR: layouts and headers of docs/formats.md, determinism, exact masks/boxes/RLE, report text,
the loaders reading it back, atomic writes, bad arguments; and (slow) the difficulty gates."""
from __future__ import annotations

import csv
import gzip
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest

from g2d_bench.datasets import DATASETS
from g2d_bench.datasets.synthcxr import DATASET_NAMES, DEFAULT_COUNTS, SYNTH_VERSION, generate
from g2d_bench.errors import G2DBenchError

N, SIZE = 30, 64


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """All seven datasets, 30 images each at 64 px, seed 0."""
    out = tmp_path_factory.mktemp("synth")
    paths = generate(out, n=N, size=SIZE, seed=0)
    assert set(paths) == set(DATASET_NAMES)
    return out


def _hashes(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def _truth(root: Path, name: str = "findings.csv") -> list[dict]:
    with open(root / "_truth" / name, newline="") as handle:
        return list(csv.DictReader(handle))


def _png(root: Path, relative: str) -> np.ndarray:
    import cv2

    return cv2.imread(str(root / "_truth" / relative), cv2.IMREAD_GRAYSCALE) > 0


# ------------------------------------------------------------------------------------------------
# arguments, determinism, atomicity
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, fragment", [
    ({"n": 9}, "n=9"), ({"size": 31}, "size=31"), ({"datasets": ["mimic"]}, "unknown dataset 'mimic'"),
    ({"datasets": []}, "unknown dataset"), ({"seed": -1}, "seed=-1"), ({"n": 12.5}, "n=12.5"),
    ({"workers": 0}, "workers=0"),
])
def test_bad_arguments(tmp_path, kwargs, fragment):
    with pytest.raises(G2DBenchError, match=fragment.replace("(", r"\(").replace(".", r"\.")):
        generate(tmp_path / "out", **{"datasets": ["rsna"], **kwargs})
    assert not (tmp_path / "out" / "rsna").exists()


def test_public_constants():
    assert DATASET_NAMES == ("mimic-cxr", "chexpert", "rsna", "siim", "nih-cxr14", "covidx", "object-cxr")
    assert set(DEFAULT_COUNTS) == set(DATASET_NAMES) and all(v >= 1000 for v in DEFAULT_COUNTS.values())
    assert isinstance(SYNTH_VERSION, int) and SYNTH_VERSION >= 1


def test_same_seed_identical_other_seed_different(world, tmp_path):
    names = ["mimic-cxr", "siim", "covidx"]
    generate(tmp_path / "again", names, n=N, size=SIZE, seed=0)
    generate(tmp_path / "other", names, n=N, size=SIZE, seed=1)
    for name in names:
        first, again, other = (_hashes(root / name) for root in (world, tmp_path / "again", tmp_path / "other"))
        assert first == again, name
        images = [k for k in first if k.endswith((".jpg", ".png", ".dcm")) and "_truth" not in k]
        assert images and not set(first[k] for k in images) & set(other.values()), name


def test_worker_processes_write_the_same_files(world, tmp_path):
    generate(tmp_path, ["siim"], n=N, size=SIZE, seed=0, workers=2)
    assert _hashes(tmp_path / "siim") == _hashes(world / "siim")


def test_datasets_never_share_images(world):
    seen: dict[str, str] = {}
    for name in DATASET_NAMES:
        for path, digest in _hashes(world / name).items():
            if path.endswith((".jpg", ".png")) and "_truth" not in path:
                assert digest not in seen, (name, path, seen.get(digest))
                seen[digest] = name


def test_failed_run_leaves_previous_dataset_and_no_partial_folder(tmp_path, monkeypatch):
    from g2d_bench.datasets.synthcxr import writers

    generate(tmp_path, ["object-cxr"], n=12, size=SIZE, seed=0)
    before = _hashes(tmp_path / "object-cxr")

    def boom(self, root, cases, size):
        raise RuntimeError("killed")

    monkeypatch.setattr(writers.ObjectCXRWriter, "tables", boom)
    with pytest.raises(RuntimeError, match="killed"):
        generate(tmp_path, ["object-cxr"], n=12, size=SIZE, seed=5)
    assert _hashes(tmp_path / "object-cxr") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["object-cxr"]


def test_regenerating_replaces_the_dataset(tmp_path):
    generate(tmp_path, ["nih-cxr14"], n=12, size=SIZE, seed=0)
    generate(tmp_path, ["nih-cxr14"], n=15, size=SIZE, seed=0)
    meta = json.loads((tmp_path / "nih-cxr14" / "synthcxr.json").read_text())
    assert meta["n"] == 15 and len(list((tmp_path / "nih-cxr14" / "images").iterdir())) == 15
    assert sorted(p.name for p in tmp_path.iterdir()) == ["nih-cxr14"]


# ------------------------------------------------------------------------------------------------
# layouts and headers (docs/formats.md)
# ------------------------------------------------------------------------------------------------
def _first_line(path: Path) -> str:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:
        return handle.readline().rstrip("\n")


HEADERS = {
    "mimic-cxr/mimic-cxr-2.0.0-metadata.csv.gz": "dicom_id,subject_id,study_id,PerformedProcedureStepDescription,"
    "ViewPosition,Rows,Columns,StudyDate,StudyTime,ProcedureCodeSequence_CodeMeaning,ViewCodeSequence_CodeMeaning,"
    "PatientOrientationCodeSequence_CodeMeaning",
    "mimic-cxr/mimic-cxr-2.0.0-chexpert.csv.gz": "subject_id,study_id,Atelectasis,Cardiomegaly,Consolidation,Edema,"
    "Enlarged Cardiomediastinum,Fracture,Lung Lesion,Lung Opacity,No Finding,Pleural Effusion,Pleural Other,"
    "Pneumonia,Pneumothorax,Support Devices",
    "mimic-cxr/mimic-cxr-2.0.0-split.csv.gz": "dicom_id,study_id,subject_id,split",
    "chexpert/train.csv": "Path,Sex,Age,Frontal/Lateral,AP/PA,No Finding,Enlarged Cardiomediastinum,Cardiomegaly,"
    "Lung Opacity,Lung Lesion,Edema,Consolidation,Pneumonia,Atelectasis,Pneumothorax,Pleural Effusion,Pleural Other,"
    "Fracture,Support Devices",
    "rsna/stage_2_train_labels.csv": "patientId,x,y,width,height,Target",
    "siim/train-rle.csv": "ImageId, EncodedPixels",
    "nih-cxr14/Data_Entry_2017_v2020.csv": "Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,"
    "Patient Gender,View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]",
    "object-cxr/train.csv": "image_name,annotation",
    "object-cxr/dev.csv": "image_name,annotation",
}


def test_headers_exactly_as_formats_md(world):
    for relative, header in HEADERS.items():
        assert _first_line(world / relative) == header, relative
    assert _first_line(world / "chexpert/valid.csv") == HEADERS["chexpert/train.csv"]


def test_image_layouts(world):
    import re

    mimic = [p.relative_to(world / "mimic-cxr").as_posix() for p in (world / "mimic-cxr/files").rglob("*.jpg")]
    assert mimic and all(re.fullmatch(r"files/p1\d/p1\d{7}/s5\d{7}/[0-9a-f]{8}(-[0-9a-f]{8}){4}\.jpg", p) for p in mimic)
    for image in (world / "mimic-cxr/files").rglob("*.jpg"):  # one report per study, next to its folder
        assert image.parent.with_suffix(".txt").is_file()
    chex = [p.relative_to(world / "chexpert").as_posix() for p in (world / "chexpert").rglob("*.jpg")]
    assert chex and all(re.fullmatch(r"CheXpert-v1\.0-small/(train|valid)/patient\d{5}/study\d+/view\d_(frontal|lateral)\.jpg", p)
                        for p in chex)
    assert len(list((world / "rsna/stage_2_train_images").glob("*.dcm"))) == N
    siim = list((world / "siim/dicom-images-train").rglob("*.dcm"))
    assert len(siim) == N and all(len(p.relative_to(world / "siim/dicom-images-train").parts) == 3 for p in siim)
    assert len(list((world / "nih-cxr14/images").glob("*_*.png"))) == N
    covidx = [p for split in ("train", "test") for p in (world / "covidx" / split).iterdir()]
    assert len(covidx) == N and {p.suffix for p in covidx} <= {".png", ".jpg"}
    assert len([p for split in ("train", "dev") for p in (world / "object-cxr" / split).glob("*.jpg")]) == N


def test_dicoms_are_8bit_monochrome2_jpeg_baseline(world):
    import pydicom

    for path in [next((world / "rsna").rglob("*.dcm")), next((world / "siim").rglob("*.dcm"))]:
        ds = pydicom.dcmread(path)
        assert ds.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"
        assert (ds.PhotometricInterpretation, ds.BitsStored, ds.Rows, ds.Columns) == ("MONOCHROME2", 8, SIZE, SIZE)
    siim = next((world / "siim").rglob("*.dcm"))
    ds = pydicom.dcmread(siim)
    assert ds.SOPInstanceUID == siim.stem and ds.SeriesInstanceUID == siim.parent.name


def test_covidx_lines_and_patient_ids(world):
    for name in ("train.txt", "test.txt"):
        for line in (world / "covidx" / name).read_text().splitlines():
            patient, filename, cls, source = line.rsplit(maxsplit=3)
            assert cls in ("normal", "pneumonia", "COVID-19") and patient and source
            assert (world / "covidx" / name[:-4] / filename).is_file()


def test_synthcxr_json(world):
    for name in DATASET_NAMES:
        meta = json.loads((world / name / "synthcxr.json").read_text())
        assert (meta["version"], meta["dataset"], meta["seed"], meta["n"], meta["size"]) == (SYNTH_VERSION, name, 0, N, SIZE)
        assert meta["counts"]["images"] == N and meta["prevalences"]
        assert 0.0 <= meta["noise"]["label_noise_rate"] < 0.3 and 0.0 <= meta["noise"]["uncertain_label_rate"] < 0.3
    assert json.loads((world / "rsna" / "synthcxr.json").read_text())["noise"]["label_noise_rate"] == 0.0
    assert json.loads((world / "mimic-cxr" / "synthcxr.json").read_text())["planned_noise"]["omit"] > 0


def test_measured_label_noise_matches_the_stated_rates(tmp_path):
    """synthcxr.json measures the noise of the text-mined labels; it must be the stated (planned)
    rate within binomial error (3 standard errors), on a MIMIC copy large enough to tell."""
    generate(tmp_path, datasets=["mimic-cxr"], n=600, size=32, seed=3)
    meta = json.loads((tmp_path / "mimic-cxr" / "synthcxr.json").read_text())
    drawn = [r for r in csv.DictReader(open(tmp_path / "mimic-cxr" / "_truth" / "findings.csv"))
             if r["drawn"] == "1" and r["finding"] != "foreign_object"]
    planned, measured = meta["planned_noise"], meta["noise"]
    n = len(drawn)
    assert n > 400
    se = (planned["omit"] * (1 - planned["omit"]) / n) ** 0.5
    assert abs(measured["label_noise_rate"] - planned["omit"]) < 3 * se + 1 / n, (measured, planned)
    reports = meta["counts"]["images"]
    se_fp = (planned["false_positive"] / reports) ** 0.5
    assert abs(measured["false_mentions_per_image"] - planned["false_positive"]) < 3 * se_fp, (measured, planned)


# ------------------------------------------------------------------------------------------------
# the loaders read SynthCXR; labels, boxes and masks are what was drawn
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", DATASET_NAMES)
def test_loaders_parse_every_dataset(world, name):
    release = DATASETS.get(name)(world / name)
    samples = release.samples()
    images = {row["key"]: row for row in _truth(world / name, "images.csv")}
    frontal_with_report = sum(1 for r in images.values() if r["view"] != "LATERAL")
    expected = N if name != "mimic-cxr" else frontal_with_report
    assert len(samples) <= expected and len(samples) >= expected - 3  # MIMIC drops reports without sections
    for sample in samples[:5]:
        assert sample.sample_id in images
        image = release.read_image(sample)
        assert image.shape == (SIZE, SIZE) and image.dtype == np.uint8 and image.std() > 5


def test_rsna_boxes_are_the_drawn_blobs(world):
    import cv2

    release = DATASETS.get("rsna")(world / "rsna")
    rows = [r for r in _truth(world / "rsna") if r["finding"] == "consolidation"]
    assert rows, "no pneumonia drawn in 30 RSNA images"
    by_key = {s.sample_id: s for s in release.samples()}
    for row in rows:
        mask = _png(world / "rsna", row["mask"])
        n, _, stats, _ = cv2.connectedComponentsWithStats(mask.astype(np.uint8), connectivity=8)
        drawn = sorted((x, y, x + w, y + h) for x, y, w, h, _ in stats[1:])
        sample = by_key[row["key"]]
        assert sample.labels[0] == 1.0
        assert sorted(tuple(map(int, b)) for b in sample.boxes) == drawn
        assert (sample.boxes >= 0).all() and (sample.boxes <= SIZE).all()
    negatives = set(by_key) - {r["key"] for r in rows}
    assert negatives and all(by_key[k].labels[0] == 0.0 and len(by_key[k].boxes) == 0 for k in negatives)


def test_siim_rle_decodes_to_the_drawn_pneumothorax(world):
    release = DATASETS.get("siim")(world / "siim")
    drawn = {r["key"]: _png(world / "siim", r["mask"]) for r in _truth(world / "siim") if r["finding"] == "pneumothorax"}
    assert drawn, "no pneumothorax drawn in 30 SIIM images"
    for sample in release.samples():
        mask = release.read_mask(sample, SIZE, SIZE)
        expected = drawn.get(sample.sample_id, np.zeros((SIZE, SIZE), bool))
        assert np.array_equal(mask, expected), sample.sample_id
        assert sample.labels[0] == float(sample.sample_id in drawn)


def test_object_cxr_shapes_rasterise_to_the_drawn_objects(world):
    release = DATASETS.get("object-cxr")(world / "object-cxr")
    drawn = {r["key"]: _png(world / "object-cxr", r["mask"]) for r in _truth(world / "object-cxr")
             if r["finding"] == "foreign_object"}
    kinds = set()
    for sample in release.samples():
        expected = drawn.get(sample.sample_id, np.zeros((SIZE, SIZE), bool))
        assert np.array_equal(release.read_mask(sample, SIZE, SIZE), expected), sample.sample_id
        assert sample.labels[0] == float(sample.sample_id in drawn)
        assert ((sample.boxes >= 0) & (sample.boxes <= SIZE)).all()
        kinds |= {kind for kind, _ in sample.extra["shapes"]}
    assert 0 < len(drawn) < N and kinds == {0, 1, 2}
    assert {s.official_split for s in release.samples()} == {"train", "dev"}


def test_chexpert_labels(world):
    from g2d_bench.datasets.synthcxr.labels import CHEXPERT_MAP

    release = DATASETS.get("chexpert")(world / "chexpert")
    names = list(release.label_names)
    findings: dict[str, set[str]] = {}
    for r in _truth(world / "chexpert"):
        if r["drawn"] == "1":
            findings.setdefault(r["key"], set()).add(r["finding"])
    splits = {s.official_split for s in release.samples()}
    assert splits == {"train", "valid"} and any(not s.extra["frontal"] for s in release.samples())
    for sample in release.samples():
        drawn = findings.get(sample.sample_id, set())
        if sample.official_split == "valid":  # curated: exactly what was drawn, 0/1 only
            expected = {label for f in drawn for label in CHEXPERT_MAP.get(f, ())}
            for j, label in enumerate(names[1:], start=1):
                assert sample.labels[j] == float(label in expected), (sample.sample_id, label)
        else:
            assert set(np.unique(sample.labels[~np.isnan(sample.labels)])) <= {-1.0, 0.0, 1.0}


def test_nih_and_covidx_labels_match_truth(world):
    from g2d_bench.datasets.synthcxr.labels import NIH_MAP

    nih = DATASETS.get("nih-cxr14")(world / "nih-cxr14")
    rows = _truth(world / "nih-cxr14")
    for sample in nih.samples():
        said = {r["finding"] for r in rows if r["key"] == sample.sample_id and r["label"] in ("1.0", "-1.0")}
        expected = {lab for f in said for lab in NIH_MAP.get(f, ())}
        got = {n for n, v in zip(nih.label_names, sample.labels) if v == 1.0} - {"Pneumonia"}
        assert got == expected, sample.sample_id
    assert {s.official_split for s in nih.samples()} == {"train", "test"}
    covidx = DATASETS.get("covidx")(world / "covidx")
    classes = {"consolidation": "pneumonia", "covid": "COVID-19"}
    drawn = {r["key"]: classes[r["finding"]] for r in _truth(world / "covidx") if r["finding"] in classes}
    for sample in covidx.samples():
        assert covidx.label_names[int(np.argmax(sample.labels))] == drawn.get(sample.sample_id, "normal")


# ------------------------------------------------------------------------------------------------
# reports
# ------------------------------------------------------------------------------------------------
KEYWORDS = {
    "atelectasis": ("atelectasis", "collapse"), "cardiomegaly": ("cardiomegaly", "heart", "cardiac"),
    "consolidation": ("opacit", "consolidation", "pneumonia"), "covid": ("opacities", "viral", "covid"),
    "edema": ("edema",), "effusion": ("effusion",), "emphysema": ("emphysema", "hyperinflat"),
    "enlarged_cardiomediastinum": ("mediastin",), "fibrosis": ("fibro", "interstitial"),
    "fracture": ("fracture", "osseous"), "hernia": ("hernia",), "infiltration": ("infiltrate", "hazy"),
    "mass": ("mass", "density"), "nodule": ("nodul", "mass"), "pleural_thickening": ("pleural thickening",),
    "pneumothorax": ("pneumothorax",), "support_devices": ("tube", "catheter", "line", "lead", "pacemaker", "pacing", "drain", "device"),
}
LATERAL = ("consolidation", "effusion", "pneumothorax", "nodule", "mass", "pleural_thickening", "fracture")


def test_mimic_reports_carry_findings_sides_and_negations(world):
    release = DATASETS.get("mimic-cxr")(world / "mimic-cxr")
    reports = {s.sample_id: s.report.lower() for s in release.samples()}
    checked = 0
    for row in _truth(world / "mimic-cxr"):
        text = reports.get(row["key"])
        if text is None or row["label"] == "":
            continue
        assert any(k in text for k in KEYWORDS[row["finding"]]), (row, text)
        if row["label"] == "1.0" and row["finding"] in LATERAL and row["side"] in ("left", "right"):
            assert row["side"] in text, (row, text)
        checked += 1
    assert checked >= 5
    for sample in release.samples():  # a 0 label is a negation the text states
        if sample.labels[list(release.label_names).index("Pneumothorax")] == 0.0:
            assert "no" in sample.report.lower() and "pneumothorax" in sample.report.lower()


def test_report_composition_words_hedges_and_sections():
    from g2d_bench.datasets.synthcxr.labels import chexpert_from_mentions
    from g2d_bench.datasets.synthcxr.reports import Mention, compose_report
    from g2d_bench.datasets.mimic import report_sections

    texts = set()
    for seed in range(40):
        rng = np.random.default_rng(seed)
        mentions = [Mention("pneumothorax", 1.0, "right", "upper", 0.05), Mention("effusion", -1.0, "left", "lower", 0.3),
                    Mention("consolidation", 0.0, drawn=False)]
        text, written = compose_report(mentions, rng, view="PA", female=True, age=50)
        sections = report_sections(text)
        body = " ".join(sections.get(k, "") for k in ("FINDINGS", "IMPRESSION")).lower()
        if body:
            assert "right" in body and "pneumothorax" in body and "effusion" in body
            assert any(h in body for h in ("possible", "questionable", "suspected", "equivocal", "cannot be excluded", "could reflect"))
        labels = chexpert_from_mentions(written)
        assert labels["Pneumothorax"] == 1.0 and labels["Pleural Effusion"] == -1.0 and np.isnan(labels["No Finding"])
        texts.add(text)
    assert len(texts) == 40
    normals = {compose_report([], np.random.default_rng(s), view="AP", female=False, age=70)[0] for s in range(40)}
    assert len(normals) == 40  # many wordings for normal studies


def test_reports_sometimes_lack_a_section_and_keep_other_sections(world):
    texts = [p.read_text() for p in (world / "mimic-cxr" / "files").rglob("*.txt")]
    assert all(t.startswith(" " * 33 + "FINAL REPORT") for t in texts)
    body_lines = [line for t in texts for line in t.splitlines()[1:] if line]
    assert all(line.startswith(" ") for line in body_lines)
    from g2d_bench.datasets.synthcxr.reports import SECTION_MODES

    assert dict(SECTION_MODES)["both"] < 1.0 and dict(SECTION_MODES)["neither"] > 0.0


# ------------------------------------------------------------------------------------------------
# exact masks: a drawer changes nothing outside the mask it returns
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [
    "atelectasis", "consolidation", "covid", "edema", "effusion", "emphysema", "fibrosis", "foreign_object", "fracture",
    "hernia", "infiltration", "mass", "nodule", "pleural_thickening", "pneumothorax", "support_devices",
])
def test_drawn_extent_equals_mask(name):
    from g2d_bench.datasets.synthcxr import world as W
    from g2d_bench.datasets.synthcxr.findings import Finding, draw_findings
    from g2d_bench.datasets.synthcxr.population import sample_finding

    for seed in range(3):
        rng = np.random.default_rng(seed)
        f = sample_finding(rng, name) if name != "foreign_object" else Finding(name)
        f.severity = 0.3 + 0.3 * seed
        canvas = W.build_canvas(W.sample_body(rng, female=False, view="PA", ctr=0.45, mediastinum=0.17), 96, rng)
        before = W.density(canvas).copy()
        mask = draw_findings(canvas, [f], rng)[0]
        changed = W.density(canvas) != before
        assert mask.any() and not (changed & ~mask).any(), (name, seed)
        assert changed[mask].mean() > 0.5, (name, seed)


def test_truth_union_mask_and_lateral_views(world):
    for name in ("mimic-cxr", "nih-cxr14"):
        rows = _truth(world / name)
        for image in _truth(world / name, "images.csv"):
            union = _png(world / name, image["mask"])
            parts = [_png(world / name, r["mask"]) for r in rows if r["key"] == image["key"] and r["mask"]
                     and r["finding"] not in ("cardiomegaly", "enlarged_cardiomediastinum")]
            assert np.array_equal(union, np.any(parts, axis=0) if parts else np.zeros_like(union))
            if image["view"] == "LATERAL":
                assert not union.any()


# ------------------------------------------------------------------------------------------------
# difficulty gates (slow): neither trivial nor impossible, no global-statistics shortcut
# ------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_difficulty_gates():
    from g2d_bench.datasets.synthcxr import probes
    from g2d_bench.datasets.synthcxr.population import GATE_FINDINGS, HARD_FINDINGS

    images, truth = probes.render_population("gate", 2000, size=64, seed=0)
    hist = probes.probe_aucs(probes.histogram_features(images), truth, GATE_FINDINGS, c=1.0)
    raw = probes.probe_aucs(probes.pixel_features(images), truth, GATE_FINDINGS, c=0.01)
    assert set(hist) == set(GATE_FINDINGS) == set(raw)
    assert max(hist.values()) <= 0.6, hist
    hard = float(np.mean([raw[k] for k in HARD_FINDINGS]))
    assert 0.55 < hard < 0.95, raw
    assert max(raw.values()) < 0.95, raw
