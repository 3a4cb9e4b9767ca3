"""The engine under real `torchrun` with 2 CPU processes (gloo): runs, the ranks stay in sync, and a
non-finite loss on one rank stops both (none is left waiting in the gradient all-reduce)."""
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
    import torch.distributed as dist
    sys.path.insert(0, {tests!r})
    import g2d_bench.pretrain as engine
    from g2d_bench.errors import G2DBenchError
    from g2d_bench.methods import METHODS
    from test_pretrain_engine import TinyRecipe, tiny_entry

    class KeepModel(TinyRecipe):
        def build(self, config, corpus):
            self.model = super().build(config, corpus)
            return self.model

    recipe = KeepModel()
    METHODS.register("tiny", tiny_entry(recipe))  # this process ends with the script
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (24, 16, 16), dtype=np.uint8)
    reports = [f"finding {{i % 5}} side {{i % 3}}" for i in range(24)]
    engine.load_pairs = lambda config, size, home=None: (images, reports, {{}})
    out = {out!r}
    engine.pretrain(engine.PretrainConfig(method="tiny", out=out + "/run", max_steps=4, progress=False, channels_last=False, batch_size=8))
    rank, world = dist.get_rank(), dist.get_world_size()
    # every rank's own in-memory weights after training: DDP averaged the gradients, so they agree
    mine = torch.cat([p.detach().flatten() for p in recipe.model.parameters()])
    gathered = [torch.zeros_like(mine) for _ in range(world)]
    dist.all_gather(gathered, mine)
    assert torch.equal(gathered[0], gathered[1])
    # ... and equal what rank 0 saved
    saved = torch.load(out + "/run/last.pt", weights_only=True)["model"]
    assert torch.equal(saved["conv.weight"], recipe.model.conv.weight.detach())
    # one file per rank: two processes printing to one pipe can interleave their lines
    open(out + f"/ok-{{rank}}-of-{{world}}", "w").close()
    # NaN on rank 1 only, at step 2: both ranks stop with the error
    try:
        engine.pretrain(engine.PretrainConfig(method="tiny", out=out + "/nan", max_steps=4, progress=False, channels_last=False,
                                              batch_size=8, method_overrides={{"nan_at": 2, "nan_rank": 1}}))
    except G2DBenchError as exc:
        assert "at step 2" in str(exc), exc
        open(out + f"/nan-stopped-{{rank}}", "w").close()
    dist.destroy_process_group()
    """
)


def test_torchrun_two_processes(tmp_path):
    script = tmp_path / "ddp_run.py"
    out = tmp_path / "out"
    out.mkdir()
    script.write_text(SCRIPT.format(tests=str(Path(__file__).parent), out=str(out)))
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", str(script)],
        capture_output=True, text=True, timeout=180,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in out.glob("ok-*")) == ["ok-0-of-2", "ok-1-of-2"], result.stdout
    assert torch.load(out / "run" / "last.pt", weights_only=True)["step"] == 4
    assert sorted(p.name for p in out.glob("nan-stopped-*")) == ["nan-stopped-0", "nan-stopped-1"], result.stderr[-3000:]
