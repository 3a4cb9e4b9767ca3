"""G2D's recipe for the method-agnostic pretraining engine (:class:`g2d_bench.pretrain.Recipe`).

Register it lazily: ``PRETRAIN_RECIPES.register("g2d", "g2d_bench.methods.g2d.recipe:RECIPE")``.
Checkpoint folders written by the engine (``weights.safetensors`` + ``config.json``) plus
:meth:`G2DRecipe.save_extra`'s ``text/`` folder are the format :func:`~.checkpoint.load_g2d` reads.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from g2d_bench.methods.g2d.config import G2DConfig, training_profile


class G2DRecipe:
    """make_config / build / augmentations / optimisation / save_extra / adapter for G2D."""

    name = "g2d"

    def make_config(self, profile: str, scale: str, overrides: dict[str, Any]) -> G2DConfig:
        """The profile's config at ``scale`` ("paper" or "cpu"), then ``overrides`` (``heads=3``,
        ``mask.quantile=0.75``, …)."""
        return G2DConfig.from_dict({"profile": profile, "scale": scale}).with_overrides(dict(overrides))

    def build(self, config: G2DConfig, corpus: list[str]):
        from g2d_bench.methods.g2d.model import build_g2d

        return build_g2d(config, corpus)

    def augmentations(self, config: G2DConfig):
        from g2d_bench.methods.g2d.model import augmentations

        return augmentations(config)

    def optimisation(self, config: G2DConfig) -> dict[str, Any]:
        return training_profile(config)

    def save_extra(self, model, folder: Path) -> None:
        from g2d_bench.methods.g2d.checkpoint import TEXT_DIR
        from g2d_bench.methods.g2d.text import save_text

        save_text(model.lm_model, model.tokenizer, Path(folder) / TEXT_DIR)

    def adapter(self, checkpoint: Path):
        from g2d_bench.methods.g2d.adapter import load_g2d_adapter

        return load_g2d_adapter(checkpoint)


RECIPE = G2DRecipe()
