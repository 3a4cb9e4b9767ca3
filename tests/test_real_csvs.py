"""Loaders and split manifests on the REAL label files shipped inside the torchxrayvision wheel (no images).

Every expected number is either computed independently in the test (plain pandas on the same file) or a
published fact (NIH: 112,120 images of 30,805 patients; RSNA: 30,227 rows, 26,684 patients; G2D Table 6
split sizes), never read back from the loader. The NIH official lists and CheXpert's valid.csv are not
in the wheel: the tests write documented stand-ins for them.
"""
import gzip
import importlib.util
import shutil
import zipfile
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from g2d_bench.datasets.chexpert import COMPETITION, LABELS as CHEXPERT_LABELS, CheXpert
from g2d_bench.datasets.nih import LABELS as NIH_LABELS, NIHChestXray14
from g2d_bench.datasets.rle import rle_decode, rle_encode
from g2d_bench.datasets.rsna import RSNAPneumonia
from g2d_bench.datasets.siim import SIIMPneumothorax
from g2d_bench.datasets.splits import assign_splits

# locate the wheel's data folder without importing torchxrayvision (and torch) itself
_SPEC = importlib.util.find_spec("torchxrayvision")
# a test dependency (pyproject extra "test"): missing, these checks must fail, not vanish
assert _SPEC is not None and _SPEC.submodule_search_locations, "pip install torchxrayvision (it ships the real label CSVs)"
DATA = Path(list(_SPEC.submodule_search_locations)[0]) / "data"


def gunzip(source: Path, target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(source) as src, open(target, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return target


def counts(split: dict) -> tuple[int, int, int]:
    c = Counter(split.values())
    return c["train"], c["valid"], c["test"]


# -- RSNA -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def rsna(tmp_path_factory):
    root = tmp_path_factory.mktemp("rsna")
    with zipfile.ZipFile(DATA / "kaggle_stage_2_train_labels.csv.zip") as archive:
        archive.extract("stage_2_train_labels.csv", root)
    return RSNAPneumonia(root), pd.read_csv(root / "stage_2_train_labels.csv")


def test_rsna_real_labels(rsna):
    rel, table = rsna
    samples = rel.samples()
    assert len(table) == 30227 and len(samples) == 26684  # published: 30,227 rows, 26,684 patients
    positives = table.groupby("patientId")["Target"].max()
    assert sum(s.labels[0] for s in samples) == int(positives.sum())
    assert sum(len(s.boxes) for s in samples) == int((table["Target"] == 1).sum())
    row = table[table["Target"] == 1].iloc[0]  # one box checked field by field
    sample = next(s for s in samples if s.sample_id == row["patientId"])
    expected = [row["x"], row["y"], row["x"] + row["width"], row["y"] + row["height"]]
    assert any(np.allclose(box, expected) for box in sample.boxes)
    assert all((s.boxes[:, 2:] <= 1024).all() and (s.boxes[:, :2] >= 0).all() for s in samples if len(s.boxes))


def test_rsna_real_split_sizes(rsna):
    rel, _ = rsna
    specs = rel.split_specs()
    assert counts(assign_splits(rel.samples(), specs["g2d"])) == (16010, 5337, 5337)  # G2D Table 6
    assert counts(assign_splits(rel.samples(), specs["mgca"])) == (18678, 4003, 4003)  # MGCA 70/15/15


# -- SIIM -------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def siim(tmp_path_factory):
    root = tmp_path_factory.mktemp("siim")
    gunzip(DATA / "siim-pneumothorax-train-rle.csv.gz", root / "train-rle.csv")
    table = pd.read_csv(root / "train-rle.csv", skipinitialspace=True)
    return SIIMPneumothorax(root, require_images=False), table


def naive_decode(rle: str, height: int, width: int) -> np.ndarray:
    """Independent, loop-based decoder of the SIIM format (REFERENCE.md) for cross-checking."""
    flat = np.zeros(height * width, dtype=bool)
    values = [int(v) for v in rle.split()]
    position = 0
    for offset, length in zip(values[0::2], values[1::2]):
        position += offset
        flat[position: position + length] = True
        position += length
    return flat.reshape(width, height).T


def test_siim_real_labels_and_union(siim):
    rel, table = siim
    samples = rel.samples()
    lesion_rows = table[table["EncodedPixels"].str.strip() != "-1"]
    assert len(samples) == table["ImageId"].nunique() == 8433 + 1807 + 1807  # G2D Table 6 total
    assert sum(s.labels[0] for s in samples) == lesion_rows["ImageId"].nunique()
    assert sum(len(s.extra["rles"]) for s in samples) == len(lesion_rows)
    several = lesion_rows.groupby("ImageId").size()
    several = set(several[several > 1].index)
    assert {s.sample_id for s in samples if len(s.extra["rles"]) > 1} == several and len(several) > 500
    by_id = {s.sample_id: s for s in samples}
    for image_id in sorted(several)[:40]:  # united masks == OR of an independent decoder
        rles = lesion_rows.loc[lesion_rows["ImageId"] == image_id, "EncodedPixels"]
        expected = np.logical_or.reduce([naive_decode(r, 1024, 1024) for r in rles])
        np.testing.assert_array_equal(rel.read_mask(by_id[image_id], 1024, 1024), expected)


def test_siim_every_real_rle_decodes_inside_1024(siim):
    _, table = siim
    lesions = [rle.strip() for rle in table["EncodedPixels"] if rle.strip() != "-1"]
    for number, rle in enumerate(lesions):
        mask = rle_decode(rle, 1024, 1024, where=f"lesion {number}")
        assert np.count_nonzero(mask) == np.array(rle.split()[1::2], dtype=np.int64).sum()  # runs never overlap
        if number % 12 == 0:  # a sample (~300) re-encodes to the very same string
            assert rle_encode(mask) == rle


def test_siim_real_split_sizes(siim):
    rel, _ = siim
    split = assign_splits(rel.samples(), rel.split_specs()["g2d"])
    assert counts(split) == (8433, 1807, 1807)  # G2D Table 6


# -- NIH ChestX-ray14 -------------------------------------------------------------------------------
#: Stand-in for the official lists (not in the wheel): patients whose id is a multiple of 4 are "test".
#: The official lists are also patient-disjoint, which is what the split code relies on.
def stand_in_is_test(patient_id: int) -> bool:
    return patient_id % 4 == 0


@pytest.fixture(scope="module")
def nih(tmp_path_factory):
    root = tmp_path_factory.mktemp("nih")
    gunzip(DATA / "Data_Entry_2017_v2020.csv.gz", root / "Data_Entry_2017_v2020.csv")
    table = pd.read_csv(root / "Data_Entry_2017_v2020.csv")
    test = table["Patient ID"].map(stand_in_is_test)
    (root / "test_list.txt").write_text("\n".join(table.loc[test, "Image Index"]) + "\n")
    (root / "train_val_list.txt").write_text("\n".join(table.loc[~test, "Image Index"]) + "\n")
    return NIHChestXray14(root), table, test


def test_nih_real_labels(nih):
    rel, table, _ = nih
    samples = rel.samples()
    assert len(samples) == 112120 and len({s.patient_id for s in samples}) == 30805  # published
    matrix = np.stack([s.labels for s in samples])
    findings = table["Finding Labels"].str.split("|").explode().value_counts()
    np.testing.assert_array_equal(matrix.sum(axis=0), [findings[name] for name in NIH_LABELS])
    assert (matrix.sum(axis=1) == 0).sum() == findings["No Finding"]
    multi = table["Finding Labels"].str.count(r"\|") + 1
    np.testing.assert_array_equal(matrix.sum(axis=1)[multi > 1], multi[multi > 1])


def test_nih_real_splits(nih):
    rel, _, test = nih
    samples = rel.samples()
    n_test, n_trainval = int(test.sum()), int((~test).sum())
    by_image = assign_splits(samples, rel.split_specs()["official-by-image"])
    assert counts(by_image) == (n_trainval - round(0.1 * n_trainval), round(0.1 * n_trainval), n_test)
    by_patient = assign_splits(samples, rel.split_specs()["official"])
    parts: dict[str, set] = {}
    for s in samples:
        parts.setdefault(s.patient_id, set()).add(by_patient[s.sample_id])
    assert all(len(p) == 1 for p in parts.values())
    assert counts(by_patient)[2] == n_test
    patients_valid = sum(p == {"valid"} for p in parts.values())
    patients_trainval = sum(p != {"test"} for p in parts.values())
    assert patients_valid == round(0.1 * patients_trainval)


# -- CheXpert ---------------------------------------------------------------------------------------
#: Stand-in for valid.csv (not in the wheel): 6 rows of train.csv renamed into valid/patient9xxxx.
VALID_ROWS = 6


@pytest.fixture(scope="module")
def chexpert(tmp_path_factory):
    root = tmp_path_factory.mktemp("chexpert")
    gunzip(DATA / "chexpert_train.csv.gz", root / "train.csv")
    table = pd.read_csv(root / "train.csv")
    valid = table.head(VALID_ROWS).copy()
    valid["Path"] = [f"CheXpert-v1.0-small/valid/patient9{i:04d}/study1/view1_frontal.jpg" for i in range(VALID_ROWS)]
    valid.to_csv(root / "valid.csv", index=False)
    rel = CheXpert(root)
    rel.samples()
    return rel, table, valid


def test_chexpert_real_labels(chexpert):
    rel, table, _ = chexpert
    train = [s for s in rel.samples() if s.official_split == "train"]
    assert len(train) == len(table)
    assert sum(s.extra["frontal"] for s in train) == 191027  # REFERENCE.md: real train.csv frontal images
    assert len({s.patient_id for s in train}) == table["Path"].str.extract(r"(patient\d+)")[0].nunique()
    matrix = np.stack([s.labels for s in train])
    for j, name in enumerate(CHEXPERT_LABELS):
        for value in (1.0, 0.0, -1.0):
            assert (matrix[:, j] == value).sum() == (table[name] == value).sum(), (name, value)
        assert np.isnan(matrix[:, j]).sum() == table[name].isna().sum()


def test_chexpert_real_splits(chexpert):
    rel, table, valid = chexpert
    samples = rel.samples()
    specs = rel.split_specs()
    frontal_valid = int((valid["Frontal/Lateral"] == "Frontal").sum())
    g2d = assign_splits(samples, specs["g2d"])
    assert counts(g2d) == (186027, 5000, frontal_valid)  # G2D Table 6 train = 191,027 - 5,000
    zero = assign_splits(samples, specs["zeroshot-5x200"])
    assert len(zero) == 5 * 200 and set(zero.values()) == {"test"}
    picked = table[table["Path"].isin(list(zero))].fillna(0)
    assert (picked["Frontal/Lateral"] == "Frontal").all()
    others = [n for n in CHEXPERT_LABELS if n != "No Finding"]
    positives = (picked[others] == 1).sum(axis=1)
    zeros = (picked[others] == 0).sum(axis=1)
    assert (positives == 1).all() and (zeros == len(others) - 1).all()  # GLoRIA: exclusively positive
    assert (picked[list(COMPETITION)] == 1).sum(axis=0).tolist() == [200] * 5


@pytest.mark.slow
def test_chexpert_real_mgca_split(chexpert):
    rel, _, valid = chexpert
    samples = rel.samples()
    zero = assign_splits(samples, rel.split_specs()["zeroshot-5x200"])
    mgca = assign_splits(samples, rel.split_specs()["mgca"])
    frontal_valid = int((valid["Frontal/Lateral"] == "Frontal").sum())
    assert counts(mgca) == (185027, 5000, frontal_valid) and not set(mgca) & set(zero)  # REFERENCE.md
