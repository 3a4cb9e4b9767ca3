"""The CPU-size G2D that ``g2d-bench run --method g2d`` uses when no ``--checkpoint`` is given:
pretrained once on SynthCXR's MIMIC-format copy and cached under ``$G2D_BENCH_CACHE/pretrained``.

The budget is counted in image-steps (SYNTHCXR.md: compare budgets across machines by
image-steps, not wall time) and sized for the main command's 10-minute goal on 2 CPU cores:
it is a quick model that exercises every path, not a trained one: with the MLM-pretrained text
tower its contrastive loss just leaves ln(32) = 3.466 (the value of collapsed towers) in its last
50 steps (3.401, measured 2026-12-02; docs/g2d.md "CPU-scale pretraining"); the 1,000-step model
that beats random on ``rsna-seg`` comes from ``g2d-bench pretrain --scale cpu --max-steps 1000``.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

from g2d_bench.io import sha256_json

log = logging.getLogger(__name__)

#: the quick model (ours): paper profile at CPU scale (ResNet-18, 96 px, 2-layer BERT), batch 32,
#: 200 steps = 6,400 image-steps (~17 img/s on 2 idle cores: ~6 min). SYNTHCXR.md calls ~13k
#: image-steps a smoke test; this is a quick model for the first run, not a converged one.
QUICK = {"profile": "paper", "scale": "cpu", "overrides": {}, "batch_size": 32, "max_steps": 200}
#: part of the cache key: bumped when pretraining code that no setting names changes what the quick
#: model learns (2: the three-class Otsu body mask of the pseudo masks, 2026-12-02)
QUICK_VERSION = 2


def quick_checkpoint(progress: bool = False, home: Path | None = None) -> Path:
    """Folder of the quick CPU G2D, pretraining it first if it is not cached yet."""
    from g2d_bench.data import cache_home, synth_root
    from g2d_bench.methods.g2d.recipe import RECIPE
    from g2d_bench.pretrain import PretrainConfig, pretrain

    home = home or cache_home()
    # the resolved settings are part of the key: a changed default never reuses an old model
    settings = RECIPE.make_config(QUICK["profile"], QUICK["scale"], QUICK["overrides"]).to_dict()
    key = sha256_json({**QUICK, "settings": settings, "synth": str(synth_root(home).name), "version": QUICK_VERSION})[:12]
    folder = home / "pretrained" / f"g2d-quick-{key}"
    done = folder / "config.json"
    if done.exists() and json.loads(done.read_text()).get("step") == QUICK["max_steps"]:
        return folder
    log.info("pretraining the quick CPU G2D on SynthCXR into %s (once; %d steps)", folder, QUICK["max_steps"])
    config = PretrainConfig(
        method="g2d", out=folder, profile=QUICK["profile"], scale=QUICK["scale"], batch_size=QUICK["batch_size"],
        max_steps=QUICK["max_steps"], checkpoint_every=100, progress=progress,
        method_overrides=dict(QUICK["overrides"]),
    )
    pretrain(config, home)
    return folder
