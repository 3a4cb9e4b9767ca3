"""`g2d-bench data synth | prepare | check` on SynthCXR output, for all seven datasets."""
import hashlib
import json
import shutil
import subprocess
import sys

import pytest

from g2d_bench.datasets.synthcxr import DATASET_NAMES


def cli(cwd, *args):
    return subprocess.run([sys.executable, "-m", "g2d_bench.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=600)


@pytest.fixture(scope="module")
def prepared(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("data")
    result = cli(tmp, "data", "synth", "--out", "synth", "--n", "300", "--size", "64", "--no-progress")
    assert result.returncode == 0, result.stderr
    for name in DATASET_NAMES:
        result = cli(tmp, "data", "prepare", name, "--root", f"synth/{name}", "--out", "manifests")
        assert result.returncode == 0, result.stderr
    return tmp


@pytest.mark.parametrize("name", DATASET_NAMES)
def test_prepare_writes_manifests_and_check_passes(prepared, name):
    folder = prepared / "manifests" / name
    meta = json.loads((folder / "manifest.json").read_text())
    assert meta["source_files"], "label files are fingerprinted"
    for entry in meta["manifests"].values():
        header = (folder / entry["file"]).read_text().splitlines()[0]
        assert header == "sample_id,split,in_1pct,in_10pct,in_100pct"
        assert entry["sha256"] == hashlib.sha256((folder / entry["file"]).read_bytes()).hexdigest()
        assert sum(entry["counts"][p] for p in ("train", "valid", "test")) > 0
    result = cli(prepared, "data", "check", name, "--root", f"synth/{name}", "--manifests", "manifests")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "matches the manifests" in result.stdout


def test_check_names_a_changed_label_file_and_a_missing_image(prepared, tmp_path):
    copy = tmp_path / "rsna"
    shutil.copytree(prepared / "synth" / "rsna", copy)
    labels = copy / "stage_2_train_labels.csv"
    lines = labels.read_text().splitlines()
    labels.write_text("\n".join(lines[:-1]) + "\n")  # drop one row
    next(copy.glob("stage_2_train_images/*.dcm")).unlink()
    result = cli(prepared, "data", "check", "rsna", "--root", str(copy), "--manifests", "manifests")
    assert result.returncode == 1
    assert "changed label file stage_2_train_labels.csv" in result.stdout
    assert "image files are missing" in result.stdout


def test_prepare_is_deterministic(prepared, tmp_path):
    result = cli(prepared, "data", "prepare", "siim", "--root", "synth/siim", "--out", str(tmp_path))
    assert result.returncode == 0
    again = json.loads((tmp_path / "siim" / "manifest.json").read_text())
    first = json.loads((prepared / "manifests" / "siim" / "manifest.json").read_text())
    assert again["manifests"] == first["manifests"]


def test_prepare_on_a_missing_root_is_one_line(prepared):
    result = cli(prepared, "data", "prepare", "siim", "--root", "nowhere", "--out", "m2")
    assert result.returncode == 2 and len(result.stderr.strip().splitlines()) == 1 and "nowhere" in result.stderr
    assert not (prepared / "m2").exists()


def test_check_names_an_edited_manifest(prepared, tmp_path):
    manifests = tmp_path / "manifests"
    shutil.copytree(prepared / "manifests" / "covidx", manifests / "covidx")
    csv = next((manifests / "covidx").glob("*.csv"))
    lines = csv.read_text().splitlines()
    csv.write_text("\n".join(lines[:1] + lines[2:]) + "\n")  # one sample dropped from the manifest
    result = cli(prepared, "data", "check", "covidx", "--root", "synth/covidx", "--manifests", str(manifests))
    assert result.returncode == 1 and f"manifest {csv} was edited" in result.stdout
