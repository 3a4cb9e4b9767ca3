"""MGCA's recipe for the method-agnostic pretraining engine (:class:`g2d_bench.pretrain.Recipe`),
registered as the ``recipe`` of the ``mgca`` method entry.

Besides the required parts it uses one hook: :meth:`MGCARecipe.after_backward` drops the
prototypes' gradients while ``epoch < freeze_prototypes_epochs`` (module ``on_after_backward``;
AdamW then skips them: no update, no weight decay). The prototypes are L2-normalised in place by
the model's forward, as the module's forward does.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from g2d_bench.methods.mgca.config import MGCAConfig, training_profile
from g2d_bench.quick import QuickBudget

#: the quick model ``g2d-bench run --method mgca`` pretrains when no --checkpoint is given on
#: SynthCXR (ours): paper profile at cpu scale, batch 32, 200 steps = 6,400 image-steps (as G2D's)
QUICK = QuickBudget(max_steps=200, batch_size=32, version=1)


class MGCARecipe:
    """make_config / build / augmentations / optimisation / save_extra / after_backward for MGCA."""

    name = "mgca"
    quick = QUICK
    #: a seconds-long model for contract tests: 1-layer 32-wide BERT, 16 tokens, 64 px, small heads
    tiny = {"scratch_layers": 1, "scratch_hidden": 32, "scratch_heads": 2, "text_max_length": 16, "image_size": 64,
            "scratch_mlm_steps": 2, "hidden_dim": 64, "num_prototypes": 16}
    #: the logged InfoNCE whose collapsed value is ln(batch): the mean of the two directions
    #: (the loss itself sums them, module ``loss_ita``)
    contrastive_loss = "instance_mean"

    def make_config(self, profile: str, scale: str, overrides: dict[str, Any]) -> MGCAConfig:
        return MGCAConfig.from_dict({"profile": profile, "scale": scale}).with_overrides(dict(overrides))

    def build(self, config: MGCAConfig, corpus: list[str]):
        from g2d_bench.methods.mgca.model import build_mgca

        return build_mgca(config, corpus)

    def augmentations(self, config: MGCAConfig):
        from g2d_bench.methods.mgca.model import augmentations

        return augmentations(config)

    def optimisation(self, config: MGCAConfig) -> dict[str, Any]:
        return training_profile(config)

    def save_extra(self, model, folder: Path) -> None:
        from g2d_bench.methods.common.text import save_text
        from g2d_bench.methods.mgca.checkpoint import TEXT_DIR

        save_text(model.text_encoder_q.model, model.tokenizer, Path(folder) / TEXT_DIR)

    def after_backward(self, model, step: int, epoch: int) -> None:
        """Prototypes frozen for the first ``freeze_prototypes_epochs`` epochs (module
        ``on_after_backward``: ``param.grad = None`` while ``current_epoch <
        freeze_prototypes_epochs``)."""
        if epoch < model.cfg.freeze_prototypes_epochs:
            for param in model.prototype_layer.parameters():
                param.grad = None


RECIPE = MGCARecipe()
