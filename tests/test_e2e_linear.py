"""End to end through the CLI on SynthCXR (small): run → record → leaderboard; a sweep with
mean ± std; a killed sweep resumed with --skip-existing; the naive and encode-once loops agree."""
import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

SYNTH_N = "300"  # images per SynthCXR dataset in these tests (G2D_BENCH_SYNTH_N)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    home = tmp_path_factory.mktemp("home")
    return {**os.environ, "G2D_BENCH_CACHE": str(home / "cache"), "G2D_BENCH_SYNTH_N": SYNTH_N, "HF_HUB_OFFLINE": "1"}


def cli(env, cwd, *args, check=True):
    result = subprocess.run([sys.executable, "-m", "g2d_bench.cli", *args], capture_output=True, text=True, env=env, cwd=cwd, timeout=900)
    if check:
        assert result.returncode == 0, result.stderr[-2000:]
    return result


@pytest.fixture(scope="module")
def imagenet_file(tmp_path_factory):
    """A torchvision-format ResNet-18 state dict standing in for downloaded ImageNet weights."""
    import torch
    import torchvision

    path = tmp_path_factory.mktemp("weights") / "resnet18-stand-in.pth"
    torch.manual_seed(1)
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return path


def records(out: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(out.rglob("*.json"))]


def test_run_then_leaderboard(env, tmp_path):
    cli(env, tmp_path, "run", "--method", "random", "--task", "rsna-cls", "--fraction", "0.01", "--no-progress")
    [record] = records(tmp_path / "runs")
    assert record["status"] == "ok" and 0.0 <= record["metrics"]["auc"] <= 1.0
    assert record["data"]["synthcxr"] is True and record["key"]["image_size"] == 96
    assert record["method"]["arch"] == "resnet18" and record["provenance"]["packages"]["torch"]
    # provenance: manifest hash, checkpoint hash, git commit, resolved config, device, wall time, data
    assert len(record["data"]["manifest_sha256"]) == 64 and len(record["method"]["checkpoint_hash"]) == 64
    assert record["provenance"]["git_commit"] and record["device"] == "cpu" and record["wall_time_s"] > 0
    assert record["config"]["lr"] == 5e-4 and record["config"]["image_size"] == 96
    assert record["key"]["data"] == record["data"]["id"] and record["key"]["data"].startswith("synthcxr-v")
    scores = (tmp_path / "runs").rglob("*.scores.csv")
    assert len(next(scores).read_text().splitlines()) == record["data"]["counts"]["test"] + 1
    table = cli(env, tmp_path, "leaderboard", "--format", "md").stdout
    assert "| random |" in table and "rsna-cls 1%" in table
    # same seed, same number (deterministic on CPU), and the record is replaced, not duplicated
    cli(env, tmp_path, "run", "--method", "random", "--task", "rsna-cls", "--fraction", "0.01", "--no-progress")
    [again] = records(tmp_path / "runs")
    assert again["metrics"] == record["metrics"]


def test_run_prints_its_record_and_how_to_compare_with_random(env, tmp_path, imagenet_file):
    """The end of a single run names the record and its metric and gives a command that runs random
    init on the same task, fraction and seed and tabulates both."""
    import shlex

    out = cli(env, tmp_path, "run", "--method", "imagenet", "--checkpoint", str(imagenet_file), "--task", "rsna-cls",
              "--fraction", "0.01", "--seed", "1", "--image-size", "64", "--out", "my runs", "--no-progress").stdout
    [record] = records(tmp_path / "my runs")
    [printed] = [line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("record: ")]
    assert json.loads((tmp_path / printed).read_text()) == record and f"auc = {record['metrics']['auc']:.4f}" in out
    [hint] = [line.split(": ", 1)[1] for line in out.splitlines() if line.startswith("compare with random init: ")]
    run_random, leaderboard = (shlex.split(part)[1:] for part in hint.split(" && "))
    assert run_random == ["run", "--method", "random", "--task", "rsna-cls", "--fraction", "0.01", "--seed", "1",
                          "--image-size", "64", "--out", "my runs"]
    cli(env, tmp_path, *run_random, "--no-progress")
    table = cli(env, tmp_path, *leaderboard).stdout
    assert "| imagenet |" in table and "| random |" in table


def test_sweep_three_tasks_two_methods_two_seeds(env, tmp_path, imagenet_file):
    args = ["sweep", "--methods", "random,imagenet", "--tasks", "chexpert-cls,rsna-cls,covidx-cls", "--fractions", "0.01,0.1,1",
            "--seeds", "0,1", "--checkpoint", f"imagenet={imagenet_file}", "--image-size", "64", "--no-progress",
            "--set", "max_epochs=5"]  # the plumbing is under test here, not the protocol's numbers
    cli(env, tmp_path, *args)
    found = records(tmp_path / "runs")
    assert len(found) == 2 * 3 * 3 * 2 and all(r["status"] == "ok" for r in found)
    table = cli(env, tmp_path, "leaderboard", "--format", "md").stdout
    for task in ("chexpert-cls", "rsna-cls", "covidx-cls"):
        for fraction in ("1%", "10%", "100%"):
            assert f"{task} {fraction}" in table
    assert table.count(" ± ") >= 2 * 9  # every cell is a mean ± std over the two seeds
    assert "**" in table
    latex = cli(env, tmp_path, "leaderboard", "--format", "latex").stdout
    assert r"\multicolumn{3}{c}{chexpert-cls}" in latex
    csv_lines = cli(env, tmp_path, "leaderboard", "--format", "csv").stdout.splitlines()
    assert len(csv_lines) == 1 + 2 * 9 and all(row["n"] == "2" for row in csv.DictReader(csv_lines))


def test_killed_sweep_resumes_without_duplicates(env, tmp_path):
    args = [sys.executable, "-m", "g2d_bench.cli", "sweep", "--methods", "random", "--tasks", "rsna-cls",
            "--fractions", "0.01,0.1,1", "--seeds", "0,1,2", "--image-size", "64", "--no-progress", "--set", "max_epochs=5"]
    out = tmp_path / "runs"
    process = subprocess.Popen(args, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    deadline = time.time() + 600
    while time.time() < deadline and not list(out.rglob("*.json")):
        time.sleep(0.05)
    os.killpg(process.pid, signal.SIGKILL)
    process.wait()
    done_before = {p: p.stat().st_mtime_ns for p in out.rglob("*.json")}
    assert 1 <= len(done_before) < 9
    resumed = cli(env, tmp_path, *args[3:], "--skip-existing")
    assert len(resumed.stdout.splitlines()) == 9
    found = list(out.rglob("*.json"))
    assert len(found) == 9 and len({json.dumps(json.loads(p.read_text())["key"], sort_keys=True) for p in found}) == 9
    for path, mtime in done_before.items():
        assert path.stat().st_mtime_ns == mtime, "an existing complete record was rerun"
    assert all(json.loads(p.read_text())["status"] == "ok" for p in found)
    table = cli(env, tmp_path, "leaderboard", "--format", "csv").stdout.splitlines()
    assert len(table) == 1 + 3 and all(row["n"] == "3" for row in csv.DictReader(table))


def test_shards_partition_the_grid():
    from g2d_bench.sweep import Grid, shard_of

    full = Grid("g", ("a", "b"), ("t1", "t2"), (0.01, 0.1, 1.0), (0, 1)).combinations()
    shards = [shard_of(full, (i, 3)) for i in range(3)]
    assert sorted(sum(shards, [])) == sorted(full) and sum(len(s) for s in shards) == len(full) == 24


def test_missing_capability_is_a_skipped_record(env, tmp_path):
    """random has no pretrained decoder: encoder-decoder segmentation transfer is skipped with the
    reason recorded (and shown by the leaderboard), not crashed, and no data is loaded for it."""
    cli(env, tmp_path, "run", "--method", "random", "--task", "siim-seg", "--fraction", "0.01",
        "--set", "transfer=encoder-decoder", "--no-progress")
    [record] = records(tmp_path / "runs")
    assert record["status"] == "skipped" and "lacks capability decoder" in record["reason"]
    table = cli(env, tmp_path, "leaderboard").stdout
    assert "skipped (method 'random' lacks capability decoder" in table
