"""G2D's recipe for the method-agnostic pretraining engine (:class:`g2d_bench.pretrain.Recipe`),
registered as the ``recipe`` of the ``g2d`` method entry.

Checkpoint folders written by the engine (``weights.safetensors`` + ``config.json``) plus
:meth:`G2DRecipe.save_extra`'s ``text/`` folder are the format :func:`~.checkpoint.load_g2d` reads.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from g2d_bench.methods.g2d.config import G2DConfig, training_profile
from g2d_bench.quick import QuickBudget

#: the quick model ``g2d-bench run --method g2d`` pretrains when no --checkpoint is given on
#: SynthCXR (ours): paper profile at CPU scale (ResNet-18, 96 px, 2-layer BERT), batch 32, 200
#: steps = 6,400 image-steps. SYNTHCXR.md calls ~13k image-steps a smoke test; this is a quick model
#: for the first run, not a converged one (docs/g2d.md "CPU-scale pretraining"). version 2: the
#: three-class Otsu body mask of the pseudo masks (2026-12-02).
QUICK = QuickBudget(max_steps=200, batch_size=32, version=2)


class G2DRecipe:
    """make_config / build / augmentations / optimisation / save_extra for G2D."""

    name = "g2d"
    quick = QUICK
    #: a seconds-long model for contract tests: 1-layer 32-wide BERT, 16 tokens, 64 px
    tiny = {"scratch_layers": 1, "scratch_hidden": 32, "scratch_heads": 2, "text_max_length": 16, "image_size": 64,
            "scratch_mlm_steps": 2}
    #: the logged InfoNCE whose collapsed value is ln(batch) (paper profile: mean of both directions)
    contrastive_loss = "vla"

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
        from g2d_bench.methods.common.text import save_text
        from g2d_bench.methods.g2d.checkpoint import TEXT_DIR

        save_text(model.lm_model, model.tokenizer, Path(folder) / TEXT_DIR)


RECIPE = G2DRecipe()
