"""The seven release loaders on tiny hand-made releases (tests/release_fixtures.py): samples, labels,
boxes, reports, official splits, pixels, masks — and one-line errors on bad input."""
from pathlib import Path

import numpy as np
import pytest
from release_fixtures import (
    MIMIC_LABEL_COLUMNS,
    NIH_ROWS,
    SIIM_RLES,
    SIZE,
    WRITERS,
    pattern,
    siim_expected_mask,
)

from g2d_bench.datasets import DATASETS
from g2d_bench.datasets.chexpert import COMPETITION, competition_labels, select_5x200
from g2d_bench.datasets.imageio import read_image, write_dicom
from g2d_bench.datasets.mimic import findings_impression, report_sections
from g2d_bench.datasets.objcxr import ObjectCXR, parse_annotation
from g2d_bench.datasets.splits import SplitSpec, assign_splits
from g2d_bench.errors import G2DBenchError


def release(name, tmp_path, **kwargs):
    root = WRITERS[name](tmp_path / name)
    return DATASETS.get(name)(root, **kwargs)


def by_id(rel):
    return {s.sample_id: s for s in rel.samples()}


def close(a, b, tolerance=4):
    """JPEG round trips: every pixel within a few grey levels."""
    return np.abs(a.astype(int) - b.astype(int)).max() <= tolerance


# -- every loader -----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", sorted(WRITERS))
def test_class_attributes_and_specs(name, tmp_path):
    rel = release(name, tmp_path)
    assert rel.name == name and rel.title and rel.label_names and rel.provides <= {"labels", "boxes", "mask", "report"}
    for relative in rel.label_files:
        assert (rel.root / relative).is_file(), relative
    samples = rel.samples()
    assert len({s.sample_id for s in samples}) == len(samples)
    assert all(s.labels is not None and s.labels.shape == (len(rel.label_names),) for s in samples)
    specs = type(rel).split_specs()
    assert specs and all(key == spec.name for key, spec in specs.items())


# -- MIMIC-CXR --------------------------------------------------------------------------------------
def test_report_sections():
    text = "Preamble.\n INDICATION: cough\n FINDINGS:\n  Lungs   clear.\n IMPRESSION: Normal.\n NOTE: x\n"
    assert report_sections(text) == {"INDICATION": "cough", "FINDINGS": "Lungs clear.", "IMPRESSION": "Normal.", "NOTE": "x"}
    assert findings_impression(text) == "Lungs clear. Normal."
    assert findings_impression(" INDICATION: a\n COMPARISON: b\n") is None
    assert findings_impression("No headers at all.") is None
    assert findings_impression(" IMPRESSION: only this\n") == "only this"
    assert findings_impression(" IMPRESSIONS: a\n FINDINGS AND IMPRESSION: b\n PRIOR FINDINGS: c\n") == "b a"


def test_mimic(tmp_path):
    rel = release("mimic-cxr", tmp_path)
    samples = by_id(rel)
    # d2 is LATERAL, d4's study has neither FINDINGS nor IMPRESSION
    assert sorted(samples) == ["d1", "d3", "d5", "d6"]
    d1, d3, d5, d6 = (samples[k] for k in ("d1", "d3", "d5", "d6"))
    assert d1.report == "The lungs are clear. No pleural effusion. No acute cardiopulmonary process."
    assert d3.report == "Small left effusion."
    assert d5.report == "Heart size is normal."
    assert (d1.patient_id, d1.extra) == ("10000032", {"view": "PA", "study_id": "50000001"})
    assert [s.official_split for s in (d1, d3, d5, d6)] == ["train", "train", "validate", "test"]
    assert rel.label_names == MIMIC_LABEL_COLUMNS
    assert d1.labels[rel.label_names.index("No Finding")] == 1 and d1.labels[rel.label_names.index("Pleural Effusion")] == 0
    assert d3.labels[rel.label_names.index("Pleural Effusion")] == -1
    assert np.isnan(d5.labels).all()  # no labeller row for the study
    assert d6.image_path == rel.root / "files/p12/p12000022/s50000005/d6.jpg"
    assert close(rel.read_image(d6), pattern(5))


def test_mimic_accepts_plain_csv(tmp_path):
    import gzip
    import shutil

    root = WRITERS["mimic-cxr"](tmp_path / "m")
    gz = root / "mimic-cxr-2.0.0-split.csv.gz"
    with gzip.open(gz) as source, open(root / "mimic-cxr-2.0.0-split.csv", "wb") as target:
        shutil.copyfileobj(source, target)
    gz.unlink()
    rel = DATASETS.get("mimic-cxr")(root)
    assert "mimic-cxr-2.0.0-split.csv" in rel.label_files
    assert len(rel.samples()) == 4


# -- CheXpert ---------------------------------------------------------------------------------------
def test_chexpert(tmp_path):
    rel = release("chexpert", tmp_path)
    samples = rel.samples()
    assert len(samples) == 10
    first = samples[0]
    assert first.sample_id == "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg"
    assert first.patient_id == "patient00001" and first.official_split == "train"
    assert first.extra == {"frontal": True, "view": "AP"}
    assert first.image_path == rel.root / "train/patient00001/study1/view1_frontal.jpg"
    names = rel.label_names
    assert first.labels[names.index("Atelectasis")] == 1 and np.isnan(first.labels[names.index("Edema")])
    assert samples[2].labels[names.index("Edema")] == -1
    assert samples[1].extra["frontal"] is False
    assert [s.official_split for s in samples[-2:]] == ["valid", "valid"]
    assert close(rel.read_image(samples[3]), pattern(3))


def test_chexpert_root_may_contain_the_release_folder(tmp_path):
    outer = tmp_path / "outer"
    WRITERS["chexpert"](outer, release="CheXpert-v1.0-small")
    # move the images one level down, as when the data root is the folder *containing* the release
    (outer / "CheXpert-v1.0-small").mkdir()
    for part in ("train", "valid"):
        (outer / part).rename(outer / "CheXpert-v1.0-small" / part)
    rel = DATASETS.get("chexpert")(outer)
    image = rel.samples()[0].image_path
    assert image == outer / "CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg" and image.is_file()


def test_competition_labels_policies():
    names = ("No Finding", "Enlarged Cardiomediastinum", "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema",
             "Consolidation", "Pneumonia", "Atelectasis", "Pneumothorax", "Pleural Effusion", "Pleural Other",
             "Fracture", "Support Devices")
    raw = np.full((2, 14), np.nan, dtype=np.float32)
    for name in COMPETITION:
        raw[0, names.index(name)] = -1  # every competition label uncertain
    raw[1, names.index("Cardiomegaly")] = 1
    raw[1, names.index("Edema")] = 0
    mgca = competition_labels(raw)
    # COMPETITION order: Atelectasis, Cardiomegaly, Consolidation, Edema, Pleural Effusion
    np.testing.assert_array_equal(mgca[0], [1, 0, 0, 1, 1])  # U-ones / U-zeros (REFERENCE.md)
    np.testing.assert_array_equal(mgca[1], [0, 1, 0, 0, 0])  # blank -> 0
    np.testing.assert_array_equal(competition_labels(raw, "ones")[0], [1, 1, 1, 1, 1])
    np.testing.assert_array_equal(competition_labels(raw, "zeros")[0], [0, 0, 0, 0, 0])
    assert competition_labels(raw[0]).shape == (1, 5) and mgca.dtype == np.float32
    with pytest.raises(G2DBenchError):
        competition_labels(raw, "maybe")
    with pytest.raises(G2DBenchError):
        competition_labels(np.zeros((2, 5)))


def test_chexpert_splits(tmp_path):
    rel = release("chexpert", tmp_path)
    samples = rel.samples()
    ids = [s.sample_id for s in samples]
    specs = rel.split_specs()
    assert list(specs)[0] == "g2d"
    zero_shot = assign_splits(samples, specs["zeroshot-5x200"], seed=0)
    # GLoRIA rule: one competition label positive, every other finding 0/blank (uncertain excludes):
    # patient00001 has Support Devices 1, patient00002 Edema -1, patient00004 two positives,
    # patient00007 Pneumonia -1 -> excluded; ids[1] is lateral
    expected = {ids[3], ids[5]}  # Cardiomegaly, Pleural Effusion
    assert set(zero_shot) == expected and set(zero_shot.values()) == {"test"}
    loose = select_5x200([s for s in samples if s.extra["frontal"]], 0, rule="one-of-five")
    assert set(loose) == expected | {ids[0], ids[2], ids[7]}
    g2d = assign_splits(samples, specs["g2d"], seed=0)
    assert ids[1] not in g2d and ids[9] not in g2d  # lateral views are out of the pool
    assert g2d[ids[8]] == "test" and sum(v == "test" for v in g2d.values()) == 1
    mgca = assign_splits(samples, specs["mgca"], seed=0)
    assert set(mgca) == set(g2d) - expected


# -- RSNA -------------------------------------------------------------------------------------------
def test_rsna(tmp_path):
    rel = release("rsna", tmp_path)
    samples = by_id(rel)
    assert list(samples) == ["p-neg-1", "p-one", "p-two", "p-neg-2"]
    np.testing.assert_array_equal(samples["p-one"].boxes, [[10, 12, 30, 27]])
    np.testing.assert_array_equal(samples["p-two"].boxes, [[5, 6, 15, 14], [40, 30, 52, 50]])
    assert samples["p-neg-1"].boxes.shape == (0, 4) and samples["p-neg-1"].labels[0] == 0
    assert samples["p-two"].labels[0] == 1 and samples["p-two"].official_split is None
    image = rel.read_image(samples["p-two"])
    assert image.shape == (SIZE, SIZE) and image.dtype == np.uint8 and close(image, pattern(2))
    mask = rel.read_mask(samples["p-two"], SIZE, SIZE)
    assert mask.sum() == 10 * 8 + 12 * 20 and mask[6, 5] and mask[49, 51] and not mask[50, 52]


# -- SIIM -------------------------------------------------------------------------------------------
def test_siim(tmp_path):
    rel = release("siim", tmp_path)
    samples = by_id(rel)
    assert list(samples) == list(SIIM_RLES)
    a, b, c = samples.values()
    assert a.extra["rles"] == ["130 3 61 3", "2000 4"] and b.extra["rles"] == []
    assert [s.labels[0] for s in (a, b, c)] == [1, 0, 1]
    assert a.image_path == rel.root / "dicom-images-train/1.2.3.100.1/1.2.3.100.2/1.2.3.100.dcm"
    image = rel.read_image(a)
    assert image.shape == (SIZE, SIZE) and close(image, pattern(0))
    for sample in (a, b, c):
        mask = rel.read_mask(sample, *image.shape)
        np.testing.assert_array_equal(mask, siim_expected_mask(sample.sample_id))
    assert rel.read_mask(a, SIZE, SIZE).sum() == 3 + 3 + 4


def test_siim_without_images(tmp_path):
    root = WRITERS["siim"](tmp_path / "s")
    import shutil

    shutil.rmtree(root / "dicom-images-train")
    with pytest.raises(G2DBenchError, match="dicom-images-train"):
        DATASETS.get("siim")(root).samples()
    rel = DATASETS.get("siim")(root, require_images=False)
    assert len(rel.samples()) == 3


def test_siim_missing_dicom_is_counted(tmp_path):
    root = WRITERS["siim"](tmp_path / "s")
    next((root / "dicom-images-train").rglob("1.2.3.300.dcm")).unlink()
    with pytest.raises(G2DBenchError, match=r"1 of 3 ImageIds .*1\.2\.3\.300\.dcm"):
        DATASETS.get("siim")(root).samples()


# -- NIH --------------------------------------------------------------------------------------------
def test_nih(tmp_path):
    rel = release("nih-cxr14", tmp_path)
    samples = by_id(rel)
    assert list(samples) == [r[0] for r in NIH_ROWS]
    names = rel.label_names
    assert len(names) == 14 and "Pleural_Thickening" in names
    emph = samples["00000001_001.png"]
    assert emph.patient_id == "1" and emph.official_split == "train" and emph.extra["view"] == "PA"
    assert {names[i] for i in np.flatnonzero(emph.labels)} == {"Cardiomegaly", "Emphysema"}
    assert samples["00000002_000.png"].labels.sum() == 0
    assert {names[i] for i in np.flatnonzero(samples["00000003_000.png"].labels)} == {"Hernia", "Pleural_Thickening", "Effusion"}
    assert samples["00000003_000.png"].official_split == "test"
    assert samples["00000002_000.png"].image_path == rel.root / "images_002/images/00000002_000.png"
    assert samples["00000004_000.png"].image_path == rel.root / "images/00000004_000.png"
    np.testing.assert_array_equal(rel.read_image(samples["00000001_000.png"]), pattern(0))  # lossless PNG
    sixteen = pattern(1).astype(float)  # written as 16-bit: min-max rescaled back to 0..255
    expected = np.rint((sixteen - sixteen.min()) * 255 / (sixteen.max() - sixteen.min()))
    np.testing.assert_array_equal(rel.read_image(emph), expected)


def test_nih_official_split_keeps_patients_together(tmp_path):
    rel = release("nih-cxr14", tmp_path)
    split = assign_splits(rel.samples(), rel.split_specs()["official"], seed=3)
    assert split["00000003_000.png"] == split["00000004_000.png"] == "test"
    assert split["00000001_000.png"] == split["00000001_001.png"] != "test"


# -- COVIDx -----------------------------------------------------------------------------------------
def test_covidx(tmp_path):
    rel = release("covidx", tmp_path)
    samples = by_id(rel)
    assert list(samples) == ["train/normal-1.png", "train/covid-1.jpg", "train/pneu-1.png", "train/covid-2.png",
                             "test/test-1.png", "test/test-2.png"]
    assert samples["train/covid-1.jpg"].patient_id == "Patient 7 A"  # id with spaces, parsed from the right
    assert samples["train/covid-1.jpg"].extra["source"] == "cohen"
    assert rel.label_names == ("normal", "pneumonia", "COVID-19")
    onehot = {k: rel.label_names[int(np.argmax(s.labels))] for k, s in samples.items()}
    assert onehot["train/covid-2.png"] == "COVID-19"  # "COVID19" spelling
    assert onehot["train/pneu-1.png"] == "pneumonia" and onehot["test/test-1.png"] == "normal"
    assert all(s.labels.sum() == 1 for s in samples.values())
    assert samples["test/test-2.png"].official_split == "test"
    assert np.array_equal(rel.read_image(samples["train/pneu-1.png"]), pattern(2))
    assert close(rel.read_image(samples["train/covid-1.jpg"]), pattern(1))


# -- Object-CXR -------------------------------------------------------------------------------------
def test_parse_annotation():
    assert parse_annotation("") == [] and parse_annotation(" ; ") == []
    assert parse_annotation("0 1 2 3 4;2 0 0 4 0 2 3") == [(0, (1.0, 2.0, 3.0, 4.0)), (2, (0.0, 0.0, 4.0, 0.0, 2.0, 3.0))]
    for bad in ("3 1 2 3 4", "0 1 2 3", "1 1 2 3 4 5 6", "2 1 2 3", "0 a b c d", "x 1 2 3 4"):
        with pytest.raises(G2DBenchError, match="train.csv line 7"):
            parse_annotation(bad, where="train.csv line 7")


def test_objcxr(tmp_path):
    rel = release("object-cxr", tmp_path)
    samples = by_id(rel)
    assert list(samples) == ["train/00001.jpg", "train/00002.jpg", "train/00003.jpg", "train/00004.jpg",
                             "dev/08001.jpg", "dev/08002.jpg"]
    np.testing.assert_array_equal(samples["train/00001.jpg"].boxes, [[10, 12, 20, 30]])
    # ellipse: its box; polygon (5,5) (15,5) (10,20): its bounding box
    np.testing.assert_array_equal(samples["train/00002.jpg"].boxes, [[30, 30, 50, 40], [5, 5, 15, 20]])
    assert samples["train/00003.jpg"].boxes.shape == (0, 4) and samples["train/00003.jpg"].labels[0] == 0
    assert samples["train/00002.jpg"].extra["shapes"][0] == (1, (30.0, 30.0, 50.0, 40.0))
    assert [samples[k].official_split for k in ("train/00001.jpg", "dev/08002.jpg")] == ["train", "dev"]
    assert close(rel.read_image(samples["dev/08001.jpg"]), pattern(0))


def test_objcxr_masks(tmp_path):
    rel = release("object-cxr", tmp_path)
    samples = by_id(rel)
    rect = rel.read_mask(samples["train/00001.jpg"], SIZE, SIZE)
    assert rect[12:31, 10:21].all() and rect.sum() == 11 * 19  # cv2 fills both corners inclusive
    shapes = rel.read_mask(samples["train/00002.jpg"], SIZE, SIZE)
    assert shapes[35, 40] and not shapes[30, 30]  # ellipse centre in, box corner out
    assert shapes[10, 10] and not shapes[18, 6]  # polygon centroid in, box corner outside the triangle
    ellipse_area = shapes[25:, 25:].sum()
    assert abs(ellipse_area - np.pi * 10 * 5) < 0.25 * np.pi * 10 * 5
    assert not rel.read_mask(samples["train/00003.jpg"], SIZE, SIZE).any()


def test_objcxr_mgca_polygon_box(tmp_path):
    import shapely  # noqa: F401  (a test dependency: MGCA's polygon box needs it)
    root = WRITERS["object-cxr"](tmp_path / "o")
    box = by_id(ObjectCXR(root, polygon_box="mgca"))["train/00002.jpg"].boxes[1]
    plain = np.array([5, 5, 15, 20])
    # MGCA's box contains the bounding box and is symmetric about a centre inside the polygon
    assert box[0] <= plain[0] and box[1] <= plain[1] and box[2] >= plain[2] and box[3] >= plain[3]
    assert box[3] - box[1] > plain[3] - plain[1]  # the triangle's centre is off the box's middle
    rect = by_id(ObjectCXR(root, polygon_box="mgca"))["train/00001.jpg"].boxes[0]
    np.testing.assert_array_equal(rect, [10, 12, 20, 30])  # rectangles are unchanged
    with pytest.raises(G2DBenchError, match="polygon_box"):
        ObjectCXR(root, polygon_box="hull")


# -- image I/O --------------------------------------------------------------------------------------
def test_dicom_round_trip_and_headers(tmp_path):
    import pydicom

    image = pattern(4, 48, 80)
    path = write_dicom(tmp_path / "a.dcm", image, patient_id="p9", study_uid="1.2.3", series_uid="1.2.3.4", sop_uid="1.2.3.4.5")
    header = pydicom.dcmread(path)
    assert header.file_meta.TransferSyntaxUID == "1.2.840.10008.1.2.4.50"  # JPEG Baseline
    assert (header.PhotometricInterpretation, header.BitsStored, header.Rows, header.Columns) == ("MONOCHROME2", 8, 48, 80)
    assert (header.PatientID, header.StudyInstanceUID, header.SOPInstanceUID) == ("p9", "1.2.3", "1.2.3.4.5")
    assert close(read_image(path), image)
    raw = write_dicom(tmp_path / "raw.dcm", image, patient_id="p9", jpeg=False)
    np.testing.assert_array_equal(read_image(raw), image)
    first, second = (write_dicom(tmp_path / f"{n}.dcm", image, patient_id="p9") for n in "bc")
    assert pydicom.dcmread(first).SOPInstanceUID == pydicom.dcmread(second).SOPInstanceUID  # deterministic UIDs
    other = write_dicom(tmp_path / "d.dcm", pattern(5, 48, 80), patient_id="p9")
    assert pydicom.dcmread(other).SOPInstanceUID != pydicom.dcmread(first).SOPInstanceUID


def test_dicom_monochrome1_and_16_bit(tmp_path):
    import pydicom

    path = write_dicom(tmp_path / "m.dcm", pattern(1), patient_id="p", jpeg=False)
    header = pydicom.dcmread(path)
    wide = (pattern(1).astype(np.uint16) * 4 + 100)  # 12-bit data
    header.BitsAllocated, header.BitsStored, header.HighBit = 16, 12, 11
    header.PhotometricInterpretation = "MONOCHROME1"
    header.PixelData = wide.tobytes()
    header.save_as(tmp_path / "m1.dcm")
    values = wide.astype(float)
    expected = 255 - np.rint((values - values.min()) * 255 / (values.max() - values.min()))
    np.testing.assert_array_equal(read_image(tmp_path / "m1.dcm"), expected)


def test_color_jpeg_is_gray(tmp_path):
    import cv2

    color = np.dstack([pattern(0), pattern(0), pattern(0)])
    cv2.imwrite(str(tmp_path / "c.png"), color)
    np.testing.assert_array_equal(read_image(tmp_path / "c.png"), pattern(0))


# -- bad input: one-line errors naming the file -----------------------------------------------------
def one_line(error):
    message = str(error.value)
    assert "\n" not in message and message
    return message


def test_missing_root(tmp_path):
    for name in WRITERS:
        with pytest.raises(G2DBenchError) as error:
            DATASETS.get(name)(tmp_path / "nowhere")
        assert "nowhere" in one_line(error) and "--data-root" in str(error.value)


@pytest.mark.parametrize("name, relative", [
    ("mimic-cxr", "mimic-cxr-2.0.0-chexpert.csv.gz"), ("chexpert", "valid.csv"), ("rsna", "stage_2_train_labels.csv"),
    ("siim", "train-rle.csv"), ("nih-cxr14", "test_list.txt"), ("covidx", "test.txt"), ("object-cxr", "dev.csv"),
])
def test_missing_label_file(name, relative, tmp_path):
    root = WRITERS[name](tmp_path / name)
    (root / relative).unlink()
    with pytest.raises(G2DBenchError) as error:
        DATASETS.get(name)(root).samples()
    assert relative.replace(".gz", "") in one_line(error)


@pytest.mark.parametrize("name, relative, old, new", [
    ("chexpert", "train.csv", "Frontal/Lateral", "View"),
    ("rsna", "stage_2_train_labels.csv", "Target", "Label"),
    ("siim", "train-rle.csv", "EncodedPixels", "Pixels"),
    ("nih-cxr14", "Data_Entry_2017_v2020.csv", "Finding Labels", "Findings"),
    ("object-cxr", "train.csv", "annotation", "annotations"),
])
def test_renamed_column(name, relative, old, new, tmp_path):
    root = WRITERS[name](tmp_path / name)
    path = root / relative
    lines = path.read_text().splitlines(keepends=True)
    path.write_text(lines[0].replace(old, new) + "".join(lines[1:]))
    with pytest.raises(G2DBenchError) as error:
        DATASETS.get(name)(root).samples()
    message = one_line(error)
    assert relative in message and repr(old) in message and new in message and "--data-root" in message


def test_renamed_column_in_gzipped_csv(tmp_path):
    import pandas as pd

    root = WRITERS["mimic-cxr"](tmp_path / "m")
    path = root / "mimic-cxr-2.0.0-metadata.csv.gz"
    pd.read_csv(path).rename(columns={"ViewPosition": "View"}).to_csv(path, index=False)
    with pytest.raises(G2DBenchError, match=r"mimic-cxr-2.0.0-metadata.csv.gz has no column 'ViewPosition'"):
        DATASETS.get("mimic-cxr")(root).samples()


def test_corrupt_image(tmp_path):
    rel = release("nih-cxr14", tmp_path)
    sample = rel.samples()[0]
    sample.image_path.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    with pytest.raises(G2DBenchError) as error:
        rel.read_image(sample)
    assert str(sample.image_path) in one_line(error) and "data check" in str(error.value)
    sample.image_path.unlink()
    with pytest.raises(G2DBenchError, match="missing image"):
        rel.read_image(sample)


@pytest.mark.filterwarnings("ignore:End of file reached")
def test_corrupt_dicom(tmp_path):
    rel = release("rsna", tmp_path)
    sample = rel.samples()[1]
    sample.image_path.write_bytes(b"garbage" * 20)
    with pytest.raises(G2DBenchError) as error:
        rel.read_image(sample)
    assert str(sample.image_path) in one_line(error)
    good = rel.samples()[2].image_path.read_bytes()
    sample.image_path.write_bytes(good[: len(good) - 200])  # truncated pixel data
    with pytest.raises(G2DBenchError, match=str(sample.image_path)):
        rel.read_image(sample)


def test_unsupported_suffix(tmp_path):
    (tmp_path / "x.bmp").write_bytes(b"BM")
    with pytest.raises(G2DBenchError, match="unsupported image type"):
        read_image(tmp_path / "x.bmp")


def test_bad_rle_names_file_and_line(tmp_path):
    root = WRITERS["siim"](tmp_path / "s")
    path = root / "train-rle.csv"
    path.write_text(path.read_text().replace("2000 4", "2000 4 7"))
    with pytest.raises(G2DBenchError) as error:
        DATASETS.get("siim")(root).samples()
    assert "train-rle.csv line 3" in one_line(error) and "odd number" in str(error.value)


def test_rle_past_the_image_end_at_mask_time(tmp_path):
    rel = release("siim", tmp_path)
    sample = rel.samples()[2]
    with pytest.raises(G2DBenchError, match="1.2.3.300.*past the end"):
        rel.read_mask(sample, 8, 8)


def test_bad_annotation_names_file_and_line(tmp_path):
    root = WRITERS["object-cxr"](tmp_path / "o")
    path = root / "dev.csv"
    path.write_text(path.read_text().replace("0 1 1 9 9", "0 1 1 9"))
    with pytest.raises(G2DBenchError) as error:
        DATASETS.get("object-cxr")(root).samples()
    assert "dev.csv line 2" in one_line(error)


@pytest.mark.parametrize("line, fragment", [("404 test-1.png", "not 'patient_id"), ("404 t.png positive rsna", "'positive'")])
def test_bad_covidx_line(line, fragment, tmp_path):
    root = WRITERS["covidx"](tmp_path / "c")
    (root / "test.txt").write_text(f"505 test-2.png COVID-19 ricord\n{line}\n")
    with pytest.raises(G2DBenchError) as error:
        DATASETS.get("covidx")(root).samples()
    assert "test.txt line 2" in one_line(error) and fragment in str(error.value)


@pytest.mark.parametrize("name, relative, old, new, fragment", [
    ("rsna", "stage_2_train_labels.csv", "p-one,10,12,20,15,1", "p-one,10,12,,15,1", "line 3"),
    ("rsna", "stage_2_train_labels.csv", "p-neg-2,,,,,0", "p-neg-2,,,,,2", "line 6"),
    ("chexpert", "train.csv", "Female,68,Frontal,PA,,,1.0", "Female,68,Frontal,PA,,,yes", "line 4"),
    ("nih-cxr14", "Data_Entry_2017_v2020.csv", "Cardiomegaly|Emphysema", "Cardiomegaly|Unicorn", "line 3"),
])
def test_malformed_values_name_file_and_line(name, relative, old, new, fragment, tmp_path):
    root = WRITERS[name](tmp_path / name)
    path = root / relative
    assert old in path.read_text()
    path.write_text(path.read_text().replace(old, new))
    with pytest.raises(G2DBenchError) as error:
        DATASETS.get(name)(root).samples()
    assert f"{relative} {fragment}" in one_line(error)


def test_custom_split_spec_on_a_loader(tmp_path):
    rel = release("object-cxr", tmp_path)
    split = assign_splits(rel.samples(), SplitSpec("t", "test", test="dev", valid=0.25, group_by="image"))
    assert sorted(k for k, v in split.items() if v == "test") == ["dev/08001.jpg", "dev/08002.jpg"]
    assert sum(v == "valid" for v in split.values()) == 1
    assert Path(rel.samples()[0].image_path).is_file()
