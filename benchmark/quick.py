"""The quick model: what ``g2d-bench run --method M`` evaluates when no ``--checkpoint`` is given on
SynthCXR — the recipe's CPU-size model, pretrained once on SynthCXR's MIMIC-format copy and cached
under ``$G2D_BENCH_CACHE/pretrained``.

Each recipe declares its budget (:class:`QuickBudget`, counted in image-steps as SYNTHCXR.md asks,
so budgets compare across machines). The cache key holds the budget, every resolved setting, the
SynthCXR world and the budget's ``version`` (bumped when code that no setting names changes what
the model learns), so a changed default never reuses an old model. A file lock makes concurrent
runs (two sweeps on one cache) pretrain it once: the second waits and reuses the first's folder.
"""
from __future__ import annotations

import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from g2d_bench.io import file_lock, sha256_json

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class QuickBudget:
    """How a recipe's quick CPU model is pretrained (``g2d-bench pretrain`` settings)."""

    max_steps: int
    batch_size: int
    profile: str = "paper"
    scale: str = "cpu"
    overrides: dict[str, Any] = field(default_factory=dict)
    lr: float | None = None  # None: the profile's
    seed: int = 0
    #: part of the cache key: bump when pretraining code that no setting names changes the model
    version: int = 1

    @property
    def image_steps(self) -> int:
        return self.max_steps * self.batch_size


def budget_of(recipe: Any, changes: dict[str, Any] | None = None) -> QuickBudget:
    """The recipe's quick budget with ``changes`` (QuickBudget fields; a grid's tiny budget)."""
    from dataclasses import fields, replace

    if not changes:
        return recipe.quick
    unknown = sorted(set(changes) - {f.name for f in fields(QuickBudget)})
    if unknown:
        from g2d_bench.errors import G2DBenchError

        raise G2DBenchError(f"unknown quick-budget field(s) {unknown}; known: {', '.join(f.name for f in fields(QuickBudget))}")
    return replace(recipe.quick, **changes)


def quick_folder(method: str, recipe: Any, home: Path, budget: QuickBudget | None = None) -> Path:
    """Where the quick model of ``method`` lives (whether or not it exists yet)."""
    from g2d_bench.data import synth_root

    budget = budget or recipe.quick
    settings = recipe.make_config(budget.profile, budget.scale, dict(budget.overrides))
    settings = settings.to_dict() if hasattr(settings, "to_dict") else asdict(settings)
    key = sha256_json({**asdict(budget), "method": method, "settings": settings, "synth": synth_root(home).name})[:12]
    return home / "pretrained" / f"{method}-quick-{key}"


def is_done(folder: Path, budget: QuickBudget) -> bool:
    config = folder / "config.json"
    return config.exists() and json.loads(config.read_text()).get("step") == budget.max_steps


def quick_checkpoint(method: str, home: Path | None = None, progress: bool = False, changes: dict[str, Any] | None = None) -> Path:
    """Folder of ``method``'s quick CPU model (its recipe's budget with ``changes``), pretraining it
    first if it is not cached yet."""
    from g2d_bench.data import cache_home
    from g2d_bench.methods import METHODS
    from g2d_bench.pretrain import PretrainConfig, pretrain

    home = home or cache_home()
    recipe = METHODS.get(method).get_recipe()
    budget = budget_of(recipe, changes)
    folder = quick_folder(method, recipe, home, budget)
    if is_done(folder, budget):
        return folder
    with file_lock(folder.with_name(folder.name + ".lock")):
        if is_done(folder, budget):  # another process finished it while this one waited
            return folder
        log.info("pretraining the quick CPU %s on SynthCXR into %s (once; %d steps × batch %d)",
                 method, folder, budget.max_steps, budget.batch_size)
        config = PretrainConfig(
            method=method, out=folder, profile=budget.profile, scale=budget.scale, batch_size=budget.batch_size,
            max_steps=budget.max_steps, lr=budget.lr, seed=budget.seed, checkpoint_every=max(1, budget.max_steps // 2),
            progress=progress, method_overrides=dict(budget.overrides),
        )
        pretrain(config, home)
    return folder
