"""ConVIRT's recipe for the method-agnostic pretraining engine (:class:`g2d_bench.pretrain.Recipe`),
registered as the ``recipe`` of the ``convirt`` method entry.

Folders written by the engine (``weights.safetensors`` + ``config.json``) plus :meth:`save_extra`'s
``text/`` folder are what :func:`~.checkpoint.load_convirt` reads.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from g2d_bench.methods.convirt.config import ConVIRTConfig, training_profile
from g2d_bench.quick import QuickBudget

#: the quick model ``g2d-bench run --method convirt`` pretrains when no --checkpoint is given on
#: SynthCXR: paper profile at CPU scale, batch 32, 200 steps (ours; the lead chooses one budget for
#: every method)
QUICK = QuickBudget(max_steps=200, batch_size=32, version=1)


class ConVIRTRecipe:
    """make_config / build / augmentations / optimisation / save_extra (+ optimizer and
    text_transform hooks) for ConVIRT."""

    name = "convirt"
    quick = QUICK
    #: a seconds-long model for contract tests: ResNet-18 at 64 px, 1-layer 32-wide BERT, 16 tokens, 64-wide heads
    tiny = {"scratch_layers": 1, "scratch_hidden": 32, "scratch_heads": 2, "text_max_length": 16, "image_size": 64,
            "scratch_mlm_steps": 2, "proj_hidden": 64}
    #: the logged mean of CE(i→t) and CE(t→i): ln(batch) when the towers have collapsed
    contrastive_loss = "nce"

    def make_config(self, profile: str, scale: str, overrides: dict[str, Any]) -> ConVIRTConfig:
        """The profile's config at ``scale`` ("paper" or "cpu"), then ``overrides``."""
        return ConVIRTConfig.from_dict({"profile": profile, "scale": scale}).with_overrides(dict(overrides))

    def build(self, config: ConVIRTConfig, corpus: list[str]):
        from g2d_bench.methods.convirt.model import build_convirt

        return build_convirt(config, corpus)

    def augmentations(self, config: ConVIRTConfig):
        from g2d_bench.methods.convirt.model import augmentations

        return augmentations(config)

    def optimisation(self, config: ConVIRTConfig) -> dict[str, Any]:
        return training_profile(config)

    def optimizer(self, model, opt: dict[str, Any], lr: float):
        """AdamW (MGCA's re-implementation, decoupled weight decay) or Adam (ConVIRT paper, L2 weight
        decay) over the trainable parameters."""
        import torch

        params = [p for p in model.parameters() if p.requires_grad]
        kind = torch.optim.Adam if opt.get("optimizer") == "adam" else torch.optim.AdamW
        return kind(params, lr=lr, weight_decay=opt["weight_decay"], betas=tuple(opt.get("betas", (0.9, 0.999))), foreach=True)

    def text_transform(self, config: ConVIRTConfig):
        """One sentence per report per step (``text_sampling="sentence"``, ConVIRT paper), else None."""
        from g2d_bench.methods.convirt.model import sentence_sampler

        return sentence_sampler() if config.text_sampling == "sentence" else None

    def save_extra(self, model, folder: Path) -> None:
        from g2d_bench.methods.common.text import save_text
        from g2d_bench.methods.convirt.checkpoint import TEXT_DIR

        save_text(model.text_encoder.model, model.tokenizer, Path(folder) / TEXT_DIR)


RECIPE = ConVIRTRecipe()
