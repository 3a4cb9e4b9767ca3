"""SynthCXR's files written as the releases write theirs.

Where a real copy ships (the label files and RSNA's tabulated DICOM headers in the torchxrayvision wheel:
NIH, CheXpert, RSNA, SIIM), SynthCXR's label file must have the same header line byte for byte, the same
column order, the same line endings and quoting, and per column the same value spellings (int vs float
vs empty vs text; categorical values inside the real file's set). Where none ships (MIMIC-CXR-JPG,
COVIDx, Object-CXR), the documented layouts of docs/formats.md. The DICOMs of RSNA and SIIM carry every
header element the release tabulates, with its VR and inside the release's value set.
"""
from __future__ import annotations

import csv
import gzip
import importlib.util
import io
import re
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from g2d_bench.datasets.siim import SIIMPneumothorax
from g2d_bench.datasets.synthcxr import generate

_SPEC = importlib.util.find_spec("torchxrayvision")
# a test dependency (pyproject extra "test"): missing, these checks must fail, not vanish
assert _SPEC is not None and _SPEC.submodule_search_locations, "pip install torchxrayvision (it ships the real label CSVs)"
DATA = Path(list(_SPEC.submodule_search_locations)[0]) / "data"

N, SIZE = 30, 64
#: header elements of the RSNA DICOMs as tabulated in the wheel (besides the table's own index and Filename)
TABULATED = ("BodyPartExamined", "ConversionType", "InstanceNumber", "Modality", "PatientAge", "PatientID",
             "PatientOrientation", "PatientSex", "PixelSpacing", "SamplesPerPixel", "SeriesNumber", "ViewPosition")
UUID4 = r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}"


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> Path:
    """All seven datasets, 30 images each at 64 px (seed 3)."""
    out = tmp_path_factory.mktemp("synth-formats")
    generate(out, n=N, size=SIZE, seed=3)
    return out


def real_bytes(name: str) -> bytes:
    """The bytes of a label file shipped in the wheel (gzip or a one-member zip)."""
    path = DATA / name
    if path.suffix == ".zip":
        with zipfile.ZipFile(path) as archive:
            (member,) = archive.namelist()
            return archive.read(member)
    return gzip.decompress(path.read_bytes())


def table(data: bytes) -> pd.DataFrame:
    """Every field as the exact text in the file ("" for empty)."""
    return pd.read_csv(io.BytesIO(data), dtype=str, keep_default_na=False)


def kinds(column: pd.Series) -> set[str]:
    """How a column's values are spelled: int ("3"), float ("3.0"), empty, or text."""
    column = pd.Series(column.unique(), dtype=str)
    found = {kind for kind, pattern in (("int", r"-?\d+"), ("float", r"-?\d+\.\d+"), ("empty", r""))
             if column.str.fullmatch(pattern).any()}
    if (~column.str.fullmatch(r"-?\d+(\.\d+)?|")).any():
        found.add("text")
    return found


def assert_like_real(ours: bytes, real: bytes, same_values: tuple[str, ...], where: str) -> pd.DataFrame:
    """Same header line (bytes), line ending, quoting and per-column spelling; ``same_values`` columns
    hold only values the real file holds. Returns our table."""
    ours_header, real_header = ours.split(b"\n", 1)[0], real.split(b"\n", 1)[0]
    assert ours_header == real_header, where
    assert ours.endswith(b"\n") and real.endswith(b"\n") and b"\r" not in ours and b"\r" not in real, where
    assert (b'"' in ours) == (b'"' in real), where  # neither quotes any field
    mine, theirs = table(ours), table(real)
    assert list(mine.columns) == list(theirs.columns), where
    rows = list(csv.reader(io.StringIO(ours.decode("utf-8"))))
    assert all(len(row) == len(rows[0]) for row in rows), where  # no row with a field too many or too few
    for column in mine.columns:
        assert kinds(mine[column]) <= kinds(theirs[column]), (where, column, kinds(mine[column]), kinds(theirs[column]))
        if column in same_values:
            extra = set(mine[column]) - set(theirs[column])
            assert not extra, (where, column, sorted(extra)[:5])
    return mine


def truth_views(root: Path) -> dict[str, str]:
    with open(root / "_truth" / "images.csv", newline="") as handle:
        return {row["key"]: row["view"] for row in csv.DictReader(handle)}


# ------------------------------------------------------------------------------------------------
# SIIM
# ------------------------------------------------------------------------------------------------
SIIM_ROW = re.compile(r"1\.2\.276\.0\.7230010\.3\.1\.4\.8323329\.\d+\.\d+\.\d+,(-1|\d+( \d+)+)")


def test_siim_label_file_like_the_release(world):
    ours, real = (world / "siim" / "train-rle.csv").read_bytes(), real_bytes("siim-pneumothorax-train-rle.csv.gz")
    assert_like_real(ours, real, (), "siim")
    for text in (ours, real):  # the space after the comma is in the header only
        header, *rows = text.decode().splitlines()
        assert header == "ImageId, EncodedPixels" and rows
        assert all(SIIM_ROW.fullmatch(row) for row in rows), next(r for r in rows if not SIIM_ROW.fullmatch(r))
    # a reader that knows nothing of the spelling (pandas defaults; torchxrayvision reads it so) sees "-1"
    naive = pd.read_csv(world / "siim" / "train-rle.csv")
    negatives = set(naive.loc[naive[" EncodedPixels"] == "-1", "ImageId"])
    views = truth_views(world / "siim")
    positives = {s.sample_id for s in SIIMPneumothorax(world / "siim").samples() if s.labels[0] == 1}
    assert negatives == set(views) - positives and 0 < len(positives) < N


def _respell(text: str) -> str:
    """The other circulating copy's spelling: a space after the comma in every data row."""
    header, *rows = text.splitlines()
    return "\n".join([header] + [row.replace(",", ", ", 1) for row in rows]) + "\n"


def _parsed(root: Path) -> list[tuple]:
    samples = SIIMPneumothorax(root, require_images=False).samples()
    return [(s.sample_id, float(s.labels[0]), tuple(s.extra["rles"])) for s in samples]


@pytest.mark.parametrize("source", ["synthcxr", "real"])
def test_siim_loader_reads_both_spellings(world, tmp_path, source):
    text = ((world / "siim" / "train-rle.csv").read_text() if source == "synthcxr"
            else real_bytes("siim-pneumothorax-train-rle.csv.gz").decode())
    for spelling, content in (("release", text), ("spaced", _respell(text))):
        (tmp_path / spelling).mkdir()
        (tmp_path / spelling / "train-rle.csv").write_text(content)
    assert ", -1" in _respell(text) and ", -1" not in text
    release, spaced = _parsed(tmp_path / "release"), _parsed(tmp_path / "spaced")
    assert release == spaced
    rows = [row.split(",", 1) for row in text.splitlines()[1:]]
    assert len(release) == len({image for image, _ in rows})
    assert sum(len(rles) for _, _, rles in release) == sum(code != "-1" for _, code in rows)
    assert {image for image, label, _ in release if label == 1} == {image for image, code in rows if code != "-1"}


# ------------------------------------------------------------------------------------------------
# RSNA and SIIM DICOM headers
# ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def real_headers() -> tuple[pd.DataFrame, pd.DataFrame]:
    """The wheel's table of RSNA DICOM headers: as text, and as pandas types it."""
    data = gzip.decompress((DATA / "kaggle_stage_2_train_images_dicom_headers.csv.gz").read_bytes())
    return table(data), pd.read_csv(io.BytesIO(data))


def tabulated(ds, keyword: str) -> str:
    """The value as the wheel's table spells a header (first of multi-valued PixelSpacing)."""
    value = ds[keyword].value
    return str(value[0] if keyword == "PixelSpacing" else value)


@pytest.mark.parametrize("name", ["rsna", "siim"])
def test_dicom_headers_like_the_release(world, real_headers, name):
    import pydicom
    from pydicom.datadict import dictionary_VR

    text, typed = real_headers
    assert set(TABULATED) <= set(text.columns)
    real_values = {k: {""} if (text[k] == "").all() else set(text[k]) if typed[k].dtype.kind != "f"
                   else set(text[k].astype(float)) for k in TABULATED}
    assert (text["PatientID"] + ".dcm" == text["Filename"]).all() and text["PatientID"].str.fullmatch(UUID4).all()
    spellings = set(text["PixelSpacing"])
    paths = sorted((world / name).rglob("*.dcm"))
    assert len(paths) == N
    views = truth_views(world / name)
    for path in paths:
        ds = pydicom.dcmread(path, stop_before_pixels=True)
        for keyword in TABULATED:
            assert keyword in ds, (path.name, keyword)
            assert ds[keyword].VR == dictionary_VR(keyword), (keyword, ds[keyword].VR)
            value = tabulated(ds, keyword)
            kind = typed[keyword].dtype.kind
            if real_values[keyword] == {""}:  # PatientOrientation: present and empty
                assert value == "", (keyword, value)
                continue
            if kind == "i":  # PatientAge: whole years, no unit ("51", not "051Y")
                assert re.fullmatch(r"\d+", value), (keyword, value)
            elif kind == "f":
                float(value)
            if keyword != "PatientID":  # every other value is one the release has
                assert (value if kind != "f" else float(value)) in real_values[keyword], (keyword, value)
        assert str(ds.PixelSpacing[0]) == str(ds.PixelSpacing[1]) in spellings  # spelled as there
        assert ds.ViewPosition == views[path.stem] and ds.SeriesDescription == f"view: {ds.ViewPosition}"
        assert (ds.StudyDate, ds.StudyTime, ds.LossyImageCompressionMethod) == ("19010101", "000000.00", "ISO_10918_1")
        if name == "rsna":  # as in the table: the file is named by its PatientID
            assert ds.PatientID == ds.PatientName == path.stem
        else:  # SIIM: a UUID of its own; the file is named by its SOP Instance UID (the ImageId)
            assert re.fullmatch(UUID4, ds.PatientID) and ds.SOPInstanceUID == path.stem


@pytest.mark.parametrize("name", ["rsna", "siim"])
def test_a_reader_keeping_pa_images_keeps_the_pa_ones(world, name):
    import pydicom

    paths = sorted((world / name).rglob("*.dcm"))
    kept = {p.stem for p in paths if pydicom.dcmread(p, stop_before_pixels=True).get("ViewPosition") == "PA"}
    pa = {key for key, view in truth_views(world / name).items() if view == "PA"}
    assert kept == pa and 0 < len(kept) < len(paths)


# ------------------------------------------------------------------------------------------------
# label files with a real copy in the wheel
# ------------------------------------------------------------------------------------------------
def test_rsna_label_file_like_the_release(world):
    ours = (world / "rsna" / "stage_2_train_labels.csv").read_bytes()
    real = real_bytes("kaggle_stage_2_train_labels.csv.zip")
    mine = assert_like_real(ours, real, ("Target",), "rsna")
    positive = mine["Target"] == "1"
    assert positive.any() and (~positive).any()
    for column in ("x", "y", "width", "height"):  # "264.0" on box rows, empty on negative rows, as the release
        assert mine.loc[positive, column].str.fullmatch(r"\d+\.0").all() and (mine.loc[~positive, column] == "").all()


def test_nih_label_file_like_the_release(world):
    ours = (world / "nih-cxr14" / "Data_Entry_2017_v2020.csv").read_bytes()
    real = real_bytes("Data_Entry_2017_v2020.csv.gz")
    same = ("Patient Gender", "View Position", "OriginalImage[Width", "Height]", "OriginalImagePixelSpacing[x", "y]")
    mine = assert_like_real(ours, real, same, "nih-cxr14")
    names = set(table(real)["Finding Labels"].str.split("|").explode())
    assert set(mine["Finding Labels"].str.split("|").explode()) <= names
    assert mine["Image Index"].str.fullmatch(r"\d{8}_\d{3}\.png").all()
    assert (mine["Image Index"].str[:8].astype(int) == mine["Patient ID"].astype(int)).all()
    for name in ("train_val_list.txt", "test_list.txt"):  # one image name per line, LF
        lines = (world / "nih-cxr14" / name).read_bytes()
        assert lines.endswith(b"\n") and b"\r" not in lines and set(lines.decode().split()) <= set(mine["Image Index"])


def test_chexpert_label_files_like_the_release(world):
    real = real_bytes("chexpert_train.csv.gz")
    columns = tuple(table(real).columns)
    patient = ("Sex", "Frontal/Lateral", "AP/PA")
    for split in ("train", "valid"):
        # train.csv: every value one the release's train.csv has; valid.csv (not in the wheel) is the
        # radiologists' consensus, every label 0.0 or 1.0 (No Finding 0.0 too, which train.csv never has)
        same = columns[1:] if split == "train" else patient
        mine = assert_like_real((world / "chexpert" / f"{split}.csv").read_bytes(), real,
                                tuple(c for c in same if c != "Age"), f"chexpert {split}")
        assert mine["Path"].str.fullmatch(
            rf"CheXpert-v1\.0-small/{split}/patient\d{{5}}/study\d+/view\d_(frontal|lateral)\.jpg").all()
        if split == "valid":
            assert all(set(mine[c]) <= {"0.0", "1.0"} for c in columns[5:])


# ------------------------------------------------------------------------------------------------
# formats with no real copy in a package: the documented layouts (docs/formats.md)
# ------------------------------------------------------------------------------------------------
def _plain(data: bytes) -> None:
    assert data.endswith(b"\n") and b"\r" not in data and b'"' not in data


def _image_mode(path: Path) -> tuple[str, str]:
    from PIL import Image

    with Image.open(path) as image:
        return image.format, image.mode


def test_mimic_files_like_the_documented_release(world):
    root = world / "mimic-cxr"
    files = {name: gzip.decompress((root / f"mimic-cxr-2.0.0-{name}.csv.gz").read_bytes())
             for name in ("metadata", "chexpert", "split")}
    for data in files.values():
        _plain(data)
    meta, labels, split = (table(files[name]) for name in ("metadata", "chexpert", "split"))
    assert set(meta["ViewPosition"]) <= {"PA", "AP", "LATERAL"} and set(split["split"]) <= {"train", "validate", "test"}
    for column in ("subject_id", "study_id", "Rows", "Columns", "StudyDate"):
        assert meta[column].str.fullmatch(r"\d+").all(), column
    assert all(set(labels[c]) <= {"", "1.0", "0.0", "-1.0"} for c in labels.columns[2:])
    for row in meta.itertuples():
        image = root / f"files/p{row.subject_id[:2]}/p{row.subject_id}/s{row.study_id}/{row.dicom_id}.jpg"
        assert _image_mode(image) == ("JPEG", "L")
    report = next((root / "files").rglob("s*.txt")).read_text()
    assert report.endswith("\n") and "\r" not in report
    assert all(line.startswith(" ") or not line for line in report.splitlines())  # body lines start with a space


def test_covidx_lists_like_the_documented_release(world):
    root = world / "covidx"
    for split in ("train", "test"):
        data = (root / f"{split}.txt").read_bytes()
        _plain(data)
        for line in data.decode().splitlines():  # no header; four fields, parsed from the right
            patient, filename, cls, source = line.rsplit(" ", 3)
            assert patient and source and cls in ("normal", "pneumonia", "COVID-19")
            assert _image_mode(root / split / filename) == ({".png": "PNG", ".jpg": "JPEG"}[Path(filename).suffix], "L")


OBJECT = r"([01] \d+ \d+ \d+ \d+|2( \d+ \d+){3,})"


def test_object_cxr_label_files_like_the_documented_release(world):
    root = world / "object-cxr"
    for split in ("train", "dev"):
        data = (root / f"{split}.csv").read_bytes()
        _plain(data)
        mine = table(data)
        assert list(mine.columns) == ["image_name", "annotation"]
        assert mine["annotation"].str.fullmatch(rf"|{OBJECT}(;{OBJECT})*").all()
        assert (mine["annotation"] != "").any() and (mine["annotation"] == "").any()
        assert all(_image_mode(root / split / name) == ("JPEG", "L") for name in mine["image_name"])


def test_write_dicom_headers_are_written_as_given_and_misspelt_keywords_fail(tmp_path):
    import pydicom

    from g2d_bench.datasets.imageio import write_dicom
    from g2d_bench.errors import G2DBenchError

    image = (np.arange(64 * 64) % 251).astype(np.uint8).reshape(64, 64)
    path = write_dicom(tmp_path / "a.dcm", image, patient_id="p", jpeg=False,
                       headers={"PatientAge": "7", "PixelSpacing": ["0.14300000000000002"] * 2, "Modality": "DX"})
    ds = pydicom.dcmread(path)
    assert (ds.PatientAge, ds["PatientAge"].VR, ds.Modality) == ("7", "AS", "DX")  # overrides the default CR
    assert [str(v) for v in ds.PixelSpacing] == ["0.14300000000000002"] * 2 and b"0.14300000000000002\\" in path.read_bytes()
    np.testing.assert_array_equal(ds.pixel_array, image)
    with pytest.raises(G2DBenchError, match="'ViewPostion' is not a DICOM keyword"):
        write_dicom(tmp_path / "b.dcm", image, patient_id="p", headers={"ViewPostion": "PA"})
    assert not (tmp_path / "b.dcm").exists()
