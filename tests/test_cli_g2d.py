"""`g2d-bench g2d masks | figure` on a tiny G2D checkpoint and a small SynthCXR MIMIC copy; the quick
CPU G2D of the main command; `g2d-bench pretrain`."""
import json
import os
import subprocess
import sys

import pytest
import torch


def test_masks_and_figure(tmp_path):
    from g2d_bench.methods import METHODS
    from g2d_bench.methods.g2d.checkpoint import save_g2d
    from g2d_bench.methods.g2d.model import build_g2d

    recipe = METHODS.get("g2d").get_recipe()
    torch.manual_seed(0)
    config = recipe.make_config("paper", "cpu", {"image_size": 64, "scratch_layers": 1, "scratch_hidden": 32, "text_max_length": 16,
                                                   "scratch_mlm_steps": 2})
    checkpoint = save_g2d(build_g2d(config, ["no pneumothorax.", "small left effusion."] * 8), tmp_path / "g2d")
    # the loss log the engine writes beside its checkpoints: a contrastive loss stuck at ln(16)
    import math

    from g2d_bench.pretrain import LOG_NAME, _write_history
    _write_history(checkpoint / LOG_NAME, [{"step": i, "vla": math.log(16)} for i in range(1, 81)])
    (checkpoint / "run.json").write_text(json.dumps({"engine": {"batch_size": 16}, "optimisation": {}}))
    env = {**os.environ, "G2D_BENCH_CACHE": str(tmp_path / "cache"), "G2D_BENCH_SYNTH_N": "200"}

    def cli(*args, rc=0):
        result = subprocess.run([sys.executable, "-m", "g2d_bench.cli", "g2d", *args, "--checkpoint", str(checkpoint), "--no-progress"],
                                capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
        assert result.returncode == rc, result.stderr[-2000:]
        return result.stdout if rc == 0 else result.stderr

    out = cli("masks", "--n", "20")
    values = [float(line.rsplit(" ", 1)[1]) for line in out.splitlines() if "mean IoU" in line]
    assert len(values) == 4 and all(0.0 <= v <= 1.0 for v in values)
    lifts = [float(line.split(":")[1].split()[0]) for line in out.splitlines() if "attention lift" in line]
    assert len(lifts) == 2 and all(v >= 0.0 for v in lifts)
    assert "steps 31-80: 2.773 (ln(batch 16) = 2.773; collapsed" in out
    assert "pseudo − random, per-image mean ± standard error:" in out
    assert "pseudo − shuffled, per-image mean ± standard error:" in out
    table = out.split("share of each finding's mask inside:", 1)[1].splitlines()[1:]
    rows = [line.split() for line in table if " n=" in line]
    assert rows and all(0.0 <= float(v) <= 1.0 for r in rows for v in (r[2], r[4], r[6]))
    regions = out.split("share of each region inside the pseudo mask", 1)[1].splitlines()[1:5]
    cells = [[float(v) for v in line.replace("|", " ").split()] for line in regions]
    assert len(cells) == 4 and all(len(r) == 8 and all(0.0 <= v <= 1.0 for v in r) for r in cells)
    per_head = cli("masks", "--n", "20", "--per-head")
    assert per_head.startswith(out.split("  contrastive loss")[0])  # the aggregated report unchanged, then the heads
    heads = [line for line in per_head.splitlines() if line.startswith("    head ")]
    assert [line.split(":")[0].strip() for line in heads] == ["head 0", "head 1", "head 2"]  # the paper's 3 heads
    assert all(0.0 <= float(line.split("pseudo IoU ")[1].split(",")[0]) <= 1.0 for line in heads)
    # another SynthCXR copy by --data-root (here the embedded one, found in the cache): same numbers
    copy = next((tmp_path / "cache" / "synthcxr").iterdir()) / "mimic-cxr"
    assert cli("masks", "--n", "20", "--data-root", str(copy)) == out
    err = cli("masks", "--data-root", str(tmp_path / "missing"), rc=2)
    assert "_truth" in err and "missing" in err and len(err.strip().splitlines()) == 1
    cli("figure", "--n", "2", "--out", "fig.png")
    assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_quick_model_is_pretrained_once_and_reused(tmp_path, monkeypatch):
    """The main command's path: `run --method g2d` without --checkpoint on SynthCXR makes the runner
    pretrain the recipe's quick CPU model once into the cache; later runs reuse it (here with 2
    steps instead of the budget's); the adapter factory itself never trains."""
    from dataclasses import replace

    import g2d_bench.pretrain as engine
    from g2d_bench import quick
    from g2d_bench.errors import G2DBenchError
    from g2d_bench.methods import METHODS
    from g2d_bench.methods.g2d.recipe import RECIPE
    from g2d_bench.runner import RunConfig, resolve_checkpoint

    monkeypatch.setenv("G2D_BENCH_SYNTH_N", "60")
    monkeypatch.setattr(RECIPE, "quick", replace(RECIPE.quick, max_steps=2, batch_size=8, overrides={"scratch_mlm_steps": 2}))
    calls = []
    original = engine.pretrain
    monkeypatch.setattr(engine, "pretrain", lambda *a, **k: calls.append(1) or original(*a, **k))
    with pytest.raises(G2DBenchError, match="needs --checkpoint"):
        METHODS.get("g2d").build_adapter(None, scale="cpu", home=tmp_path)
    assert calls == []  # building an adapter never starts training
    config = RunConfig(method="g2d", task="siim-seg", fraction=0.01, home=tmp_path, progress=False)
    first = resolve_checkpoint(config)
    again = resolve_checkpoint(config)
    assert calls == [1] and first == again  # the second run found the cached model
    adapter = METHODS.get("g2d").build_adapter(first)
    assert adapter.arch == "resnet18"
    folder = next(p for p in (tmp_path / "pretrained").iterdir() if p.is_dir())
    assert (folder / "weights.safetensors").exists() and (folder / "last.pt").exists()
    # a different budget is a different model, in its own folder
    monkeypatch.setattr(RECIPE, "quick", replace(RECIPE.quick, max_steps=3))
    other = quick.quick_checkpoint("g2d", home=tmp_path)
    assert other != folder and calls == [1, 1]
    # so is the same budget after a code change that the version marks
    monkeypatch.setattr(RECIPE, "quick", replace(RECIPE.quick, version=RECIPE.quick.version + 1))
    assert quick.quick_checkpoint("g2d", home=tmp_path) not in (folder, other) and calls == [1, 1, 1]
    # no quick model on real data or at paper scale: those need --checkpoint
    assert resolve_checkpoint(replace(config, scale="paper")) is None


def test_pretrain_command_writes_a_checkpoint_that_runs_as_a_method(tmp_path):
    env = {**os.environ, "G2D_BENCH_CACHE": str(tmp_path / "cache"), "G2D_BENCH_SYNTH_N": "60"}
    result = subprocess.run(
        [sys.executable, "-m", "g2d_bench.cli", "pretrain", "--method", "g2d", "--max-steps", "2", "--batch-size", "8",
         "--out", str(tmp_path / "ckpt"), "--set", "image_size=64", "--set", "scratch_layers=1", "--set", "scratch_mlm_steps=2", "--no-progress"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"checkpoint: {tmp_path / 'ckpt'}" in result.stdout
    run = json.loads((tmp_path / "ckpt" / "run.json").read_text())
    assert run["total_steps"] == 2 and run["data"]["synthcxr"] is True and run["optimisation"]["schedule"] == "warmup-cosine"
    from g2d_bench.adapter import Capability
    from g2d_bench.methods.g2d.adapter import load_g2d_adapter

    adapter = load_g2d_adapter(tmp_path / "ckpt")
    assert adapter.has(Capability.DECODER) and adapter.has(Capability.TEXT)
    # the folder names its method: `run` needs no --method, and another method's name is a one-line error
    def cli(*args):  # a 200-image RSNA copy: 60 leave the 1 % split of the manifest empty
        return subprocess.run([sys.executable, "-m", "g2d_bench.cli", *args, "--no-progress"], capture_output=True, text=True,
                              env={**env, "G2D_BENCH_SYNTH_N": "200"}, cwd=tmp_path, timeout=600)

    ok = cli("run", "--checkpoint", str(tmp_path / "ckpt"), "--task", "rsna-zs", "--fraction", "1", "--image-size", "64")
    assert ok.returncode == 0, ok.stderr[-2000:]
    [record] = [json.loads(p.read_text()) for p in (tmp_path / "runs").rglob("*.json")]
    assert record["key"]["method"] == "g2d" and record["status"] == "ok"
    wrong = cli("run", "--method", "mgca", "--checkpoint", str(tmp_path / "ckpt"), "--task", "rsna-zs", "--fraction", "1")
    assert wrong.returncode != 0
    assert f"{tmp_path / 'ckpt'} is a checkpoint of method 'g2d', not 'mgca'; use --method g2d" in wrong.stderr
    assert len(wrong.stderr.strip().splitlines()) == 1 and not list((tmp_path / "runs").rglob("*mgca*"))
