"""GLoRIA's recipe for the method-agnostic pretraining engine (:class:`g2d_bench.pretrain.Recipe`),
registered as the ``recipe`` of the ``gloria`` method entry.

Beyond the required parts it uses three optional hooks: ``optimizer`` (Adam with betas (0.5, 0.999),
official ``builder.build_optimizer``), ``text_transform`` (one cleaned sentence sampled per report,
official ``get_caption``) and ``after_backward`` (gradient-norm clipping at 0.25, official
``gradient_clip_val``). Checkpoint folders written by the engine plus :meth:`GLoRIARecipe.save_extra`'s
``text/`` folder are what :func:`~.checkpoint.load_gloria` reads.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from g2d_bench.methods.gloria.config import GLoRIAConfig, training_profile
from g2d_bench.quick import QuickBudget

#: the quick model ``g2d-bench run --method gloria`` pretrains on SynthCXR when no --checkpoint is
#: given (ours): paper profile at CPU scale, 200 steps × batch 32, like G2D's quick model
QUICK = QuickBudget(max_steps=200, batch_size=32, version=1)


class GLoRIARecipe:
    """make_config / build / augmentations / optimisation / save_extra and the optional hooks for GLoRIA."""

    name = "gloria"
    quick = QUICK
    #: a seconds-long model for contract tests: 1-layer 32-wide BERT, 16 tokens, 64 px
    tiny = {"scratch_layers": 1, "scratch_hidden": 32, "scratch_heads": 2, "text_max_length": 16, "image_size": 64,
            "scratch_mlm_steps": 2}
    #: the logged mean of the global loss's two directions (ln(batch) when collapsed)
    contrastive_loss = "global"

    def make_config(self, profile: str, scale: str, overrides: dict[str, Any]) -> GLoRIAConfig:
        """The profile's config at ``scale`` ("paper" or "cpu"), then ``overrides``."""
        return GLoRIAConfig.from_dict({"profile": profile, "scale": scale}).with_overrides(dict(overrides))

    def build(self, config: GLoRIAConfig, corpus: list[str]):
        from g2d_bench.methods.gloria.model import build_gloria

        return build_gloria(config, corpus)

    def augmentations(self, config: GLoRIAConfig):
        from g2d_bench.methods.gloria.model import augmentations

        return augmentations(config)

    def optimisation(self, config: GLoRIAConfig) -> dict[str, Any]:
        return training_profile(config)

    def save_extra(self, model, folder: Path) -> None:
        from g2d_bench.methods.common.text import save_text
        from g2d_bench.methods.gloria.checkpoint import TEXT_DIR

        save_text(model.text_encoder.model, model.tokenizer, Path(folder) / TEXT_DIR)

    # -- optional hooks ------------------------------------------------------------------------------
    def optimizer(self, model, opt: dict[str, Any], lr: float):
        """Adam over the trainable parameters with ``opt``'s weight decay and betas (official
        ``build_optimizer``: ``torch.optim.Adam(..., betas=(0.5, 0.999))``, L2 weight decay)."""
        import torch

        params = [p for p in model.parameters() if p.requires_grad]
        return torch.optim.Adam(params, lr=lr, weight_decay=opt["weight_decay"], betas=tuple(opt["betas"]), foreach=True)

    def text_transform(self, config: GLoRIAConfig):
        """``report -> caption``: one cleaned sentence per report and draw (captions.SentenceSampler)."""
        from g2d_bench.methods.gloria.captions import SentenceSampler

        return SentenceSampler(config.caption, config.sentence_stop_words)

    def after_backward(self, model, step: int, epoch: int) -> None:
        """Clip the gradient norm of all trainable parameters at ``cfg.grad_clip`` (official Lightning
        ``gradient_clip_val`` 0.25: the 2-norm over every parameter's gradient; 0 = off)."""
        import torch

        if model.cfg.grad_clip > 0:
            torch.nn.utils.clip_grad_norm_([p for p in model.parameters() if p.requires_grad], model.cfg.grad_clip)


RECIPE = GLoRIARecipe()
