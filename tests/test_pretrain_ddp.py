"""The engine under real `torchrun` with 2 CPU processes (gloo): runs, and the ranks stay in sync."""
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

SCRIPT = textwrap.dedent(
    """
    import sys
    import numpy as np
    import torch
    sys.path.insert(0, {tests!r})
    import g2d_bench.pretrain as engine
    from g2d_bench.methods import PRETRAIN_RECIPES
    from test_pretrain_engine import TinyRecipe

    PRETRAIN_RECIPES.register("tiny", TinyRecipe())
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (24, 16, 16), dtype=np.uint8)
    reports = [f"finding {{i % 5}} side {{i % 3}}" for i in range(24)]
    engine.load_pairs = lambda config, size, home=None: (images, reports, {{}})
    rank = int(__import__("os").environ["RANK"])
    out = engine.pretrain(engine.PretrainConfig(method="tiny", out={out!r}, max_steps=4, progress=False, channels_last=False, batch_size=8))
    # after training, every rank holds the same weights (DDP averaged the gradients)
    import torch.distributed as dist
    model_file = {out!r} + "/last.pt"
    dist.barrier()
    weights = torch.load(model_file, weights_only=True)["model"]["conv.weight"]
    gathered = [torch.zeros_like(weights) for _ in range(2)]
    dist.all_gather(gathered, weights)
    assert torch.equal(gathered[0], gathered[1])
    print("rank", rank, "ok", dist.get_world_size())
    dist.destroy_process_group()
    """
)


def test_torchrun_two_processes(tmp_path):
    script = tmp_path / "ddp_run.py"
    out = tmp_path / "out"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent), out=str(out)))
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)],
        capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert result.stdout.count("ok 2") == 2
    saved = torch.load(out / "last.pt", weights_only=True)
    assert saved["step"] == 4
