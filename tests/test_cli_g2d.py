"""`g2d-bench g2d masks | figure` on a tiny G2D checkpoint and a small SynthCXR MIMIC copy."""
import os
import subprocess
import sys

import torch


def test_masks_and_figure(tmp_path):
    from g2d_bench.methods import PRETRAIN_RECIPES
    from g2d_bench.methods.g2d.checkpoint import save_g2d
    from g2d_bench.methods.g2d.model import build_g2d

    recipe = PRETRAIN_RECIPES.get("g2d")
    torch.manual_seed(0)
    config = recipe.make_config("paper", "cpu", {"image_size": 64, "scratch_layers": 1, "scratch_hidden": 32, "text_max_length": 16})
    checkpoint = save_g2d(build_g2d(config, ["no pneumothorax.", "small left effusion."] * 8), tmp_path / "g2d")
    env = {**os.environ, "G2D_BENCH_CACHE": str(tmp_path / "cache"), "G2D_BENCH_SYNTH_N": "200"}

    def cli(*args):
        result = subprocess.run([sys.executable, "-m", "g2d_bench.cli", "g2d", *args, "--checkpoint", str(checkpoint), "--no-progress"],
                                capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600)
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout

    out = cli("masks", "--n", "20")
    values = [float(line.rsplit(" ", 1)[1]) for line in out.splitlines() if "mean IoU" in line]
    assert len(values) == 3 and all(0.0 <= v <= 1.0 for v in values)
    cli("figure", "--n", "2", "--out", "fig.png")
    assert (tmp_path / "fig.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
