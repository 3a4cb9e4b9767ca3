"""Typed settings of GLoRIA (Huang et al., ICCV 2021): the ``paper`` and ``official`` profiles at the
``paper`` and ``cpu`` scales, each field overridable.

Sources: the GLoRIA paper and the official repository ``marshuang80/gloria`` (read, never copied):
``configs/chexpert_pretrain_config.yaml`` in its GLoRIA version (experiment ``gloria_pretrain``,
``resnet_50``; a later commit turned that file into a global-loss-only run), ``gloria/models/*``,
``gloria/loss/gloria_loss.py``, ``gloria/builder.py``, ``gloria/datasets/pretraining_dataset.py``,
``gloria/gloria.py``. Where the paper and the code differ, both are settings and the paper is the
default; where the paper is silent the official code's value serves both profiles. "ours" marks a
choice neither makes (CPU scale, SynthCXR). docs/gloria.md lists every setting.

Fields left at ``None`` are filled from the scale preset, then the profile (``__post_init__``); after
construction every field is concrete and :meth:`GLoRIAConfig.to_dict` / :meth:`GLoRIAConfig.from_dict`
round-trip through JSON.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from g2d_bench.errors import G2DBenchError
from g2d_bench.methods.common.settings import ProfiledSettings, choice
# the scratch-BERT name and Bio_ClinicalBERT (official config model.text.bert_type)
from g2d_bench.methods.common.text import BIO_CLINICAL_BERT, SCRATCH_TEXT

PROFILE_NAMES = ("paper", "official")

#: profile-dependent defaults (where the paper and the official code differ)
PROFILES: dict[str, dict[str, Any]] = {
    "paper": dict(
        gather="all",  # the losses over the (global) batch; g2d-bench default for every method
        # zero-shot local similarity: the paper defines one local matching score (the training one)
        zero_shot_local="training",
        sentence_stop_words=0,  # the paper samples a sentence; no word-count cut-off
    ),
    "official": dict(
        gather="local",  # official pretrain_model.py: the loss of each DataParallel shard, no all-gather
        # official gloria_model.py get_local_similarities: skips [CLS], max over words
        zero_shot_local="inference",
        # official pretraining_dataset.py create_path_2_sent_mapping: stops collecting a report's
        # sentences once the running word count equals captions_per_image (5) exactly
        sentence_stop_words=5,
    ),
}

#: model-size presets, applied before the profile
SCALE_DEFAULTS: dict[str, dict[str, Any]] = {
    "paper": dict(
        arch="resnet50",  # official config model.vision.model_name resnet_50 (paper §4: ResNet-50)
        image_size=224,  # official config transforms.random_crop.crop_size 224 (of imsize 256)
        # official vision_model.py resnet_forward: Upsample(299×299, bilinear, align_corners=True)
        # before the ResNet, so layer3 is a 19×19 grid
        input_resize=299,
        text_model=BIO_CLINICAL_BERT,  # official config model.text.bert_type
        text_max_length=97,  # official config data.text.word_num 97
        scratch_mlm_steps=0,  # a scratch BERT at paper scale stays random (ours)
    ),
    # CPU runs on SynthCXR (ours): G2D's CPU scale (ResNet-18, 96 px, 2-layer BERT hidden 128 with
    # 600 MLM steps, 64 tokens; methods/g2d/config.py SCALE_DEFAULTS); no upsampling (a 6×6 layer3 grid)
    "cpu": dict(arch="resnet18", image_size=96, input_resize=0, text_model=SCRATCH_TEXT, text_max_length=64,
                scratch_mlm_steps=600),
}


def _choice(name: str, value: Any, allowed: tuple) -> None:
    choice("gloria", name, value, allowed)


@dataclass(frozen=True)
class GLoRIAConfig(ProfiledSettings):
    LABEL = "GLoRIA"
    """All GLoRIA settings. ``None`` fields take the ``scale``'s value (:data:`SCALE_DEFAULTS`), then
    the ``profile``'s (:data:`PROFILES`)."""

    profile: str = "paper"
    #: model size preset: "paper" or "cpu" (:data:`SCALE_DEFAULTS`)
    scale: str = "paper"
    # -- image tower -------------------------------------------------------------------------------
    arch: str | None = None
    image_size: int | None = None
    #: side the (normalised) image is resized to before the ResNet, 0 = none (official: 299)
    input_resize: int | None = None
    #: "half" (official config transforms.norm 'half': (x − 0.5)/0.5 on 3 replicated channels) or
    #: "imagenet" (the other option of official builder.build_transformation)
    normalization: str = "half"
    #: optional local torchvision ResNet weights to start from (official: ImageNet, model.vision.pretrained;
    #: nothing is downloaded here)
    encoder_weights: str | None = None
    # -- text tower (field names shared with every method: methods/common/text.py) -----------------
    text_model: str | None = None
    text_max_length: int | None = None
    freeze_layers: int = 0  # official config model.text.freeze_bert false: every BERT layer trains
    scratch_layers: int = 2  # ours (G2D's CPU scale)
    scratch_hidden: int = 128  # ours
    scratch_heads: int = 2  # ours
    scratch_vocab: int = 2000  # ours
    scratch_mlm_steps: int | None = None
    #: hidden states summed into the word features (official config model.text.last_n_layers 4)
    last_n_layers: int = 4
    #: how the last layers combine: "sum" (official config aggregate_method) or "mean"
    layer_aggregate: str = "sum"
    #: word pieces summed into words (official config agg_tokens true; text_model.py aggregate_tokens)
    aggregate_word_pieces: bool = True
    # -- captions ----------------------------------------------------------------------------------
    #: "sentence": one sentence sampled per report and step (official config full_report false);
    #: "report": all cleaned sentences joined
    caption: str = "sentence"
    #: official quirk (0 = off): stop a report's sentence list once its running word count equals this
    sentence_stop_words: int | None = None
    # -- losses (official config model.gloria and gloria_loss.py) ---------------------------------
    temp1: float = 4.0  # attention sharpness over regions (official temp1 4.0)
    temp2: float = 5.0  # word-score sharpness in the local matching score (official temp2 5.0)
    temp3: float = 10.0  # logit scale of both contrastive losses (official temp3 10.0)
    #: word scores combined by "sum" (official local_loss default agg) or "mean"
    local_agg: str = "sum"
    #: "two-softmax" (official attention_fn: softmax over words per region, then ×temp1 softmax over
    #: regions per word) or "one-softmax" (softmax over regions of temp1·word·region; see docs/gloria.md)
    attention: str = "two-softmax"
    local_loss_weight: float = 1.0  # official config local_loss_weight 1.0
    global_loss_weight: float = 1.0  # official config global_loss_weight 1.0
    gather: str | None = None  # "all" (negatives from every rank) or "local" (official)
    # -- scoring (adapter) -------------------------------------------------------------------------
    #: local image–text similarity of zero-shot scoring: "training" (the loss's score: [CLS] + words,
    #: log Σ exp(temp2·cos)) or "inference" (official get_local_similarities: words only, max)
    zero_shot_local: str | None = None
    #: grounding maps: "attention" (GLoRIA's word→region attention, averaged over the prompt's words;
    #: ours) or "cosine" (prompt embedding · local features, the BioViL protocol default)
    grounding: str = "attention"
    # -- optimisation --------------------------------------------------------------------------------
    grad_clip: float = 0.25  # official config lightning.trainer.gradient_clip_val 0.25 (norm); 0 = off
    #: names of the fields filled from the scale/profile (re-derived by :meth:`with_overrides`)
    derived: frozenset = field(default=frozenset(), repr=False, compare=False)

    def __post_init__(self) -> None:
        _choice("profile", self.profile, PROFILE_NAMES)
        _choice("scale", self.scale, tuple(SCALE_DEFAULTS))
        self._fill((SCALE_DEFAULTS[self.scale], PROFILES[self.profile]))
        self._validate()

    def _validate(self) -> None:
        _choice("normalization", self.normalization, ("half", "imagenet"))
        _choice("layer_aggregate", self.layer_aggregate, ("sum", "mean"))
        _choice("caption", self.caption, ("sentence", "report"))
        _choice("local_agg", self.local_agg, ("sum", "mean"))
        _choice("attention", self.attention, ("two-softmax", "one-softmax"))
        _choice("gather", self.gather, ("all", "local"))
        _choice("zero_shot_local", self.zero_shot_local, ("training", "inference"))
        _choice("grounding", self.grounding, ("attention", "cosine"))
        if self.image_size < 32:
            raise G2DBenchError(f"gloria.image_size = {self.image_size} is too small; use at least 32 px (layer4 has stride 32)")
        if self.input_resize < 0 or self.last_n_layers < 1 or self.sentence_stop_words < 0:
            raise G2DBenchError("gloria.input_resize and gloria.sentence_stop_words must be >= 0, gloria.last_n_layers >= 1")
        if min(self.temp1, self.temp2, self.temp3) <= 0 or min(self.local_loss_weight, self.global_loss_weight, self.grad_clip) < 0:
            raise G2DBenchError("gloria temperatures must be positive and the loss weights and grad_clip non-negative")
        if self.freeze_layers < 0 or self.scratch_mlm_steps < 0:
            raise G2DBenchError("gloria.freeze_layers and gloria.scratch_mlm_steps must be >= 0")

    @property
    def image_mean_std(self) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and std applied after replicating the gray channel (official builder.py)."""
        if self.normalization == "imagenet":
            return (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
        return (0.5, 0.5, 0.5), (0.5, 0.5, 0.5)


def training_profile(cfg: GLoRIAConfig) -> dict[str, Any]:
    """Optimiser / schedule constants for the pretraining engine, with ``sources`` (key → citation).

    Both profiles take the official code's values (the paper gives no other): Adam (betas 0.5,
    0.999; the recipe's ``optimizer`` hook), lr 5e-5, weight decay 1e-6, batch 48, 50 epochs, fp16,
    gradient-norm clipping 0.25 (the recipe's ``after_backward`` hook). The official schedule is
    ReduceLROnPlateau(factor 0.5, patience 5) on the validation loss once per epoch; the engine has
    no validation pass, so the lr stays constant (``schedule="constant"``; docs/gloria.md). ``cpu``
    scale changes batch, lr and epochs only.
    """
    values: dict[str, Any] = dict(
        optimizer="adam", lr=5e-5, weight_decay=1e-6, betas=(0.5, 0.999), schedule="constant", warmup_steps=0,
        min_lr=0.0, restart_steps=0, epochs=50, batch_size=48, gpus=1,
        cache_size=round(cfg.image_size * 256 / 224), amp=True, grad_clip=cfg.grad_clip, find_unused_parameters=False,
    )
    sources = dict(
        optimizer="official builder.py build_optimizer: torch.optim.Adam (config train.optimizer.name 'Adam')",
        lr="official config lightning.trainer.lr 0.00005",
        weight_decay="official config train.optimizer.weight_decay 1e-6",
        betas="official builder.py build_optimizer: Adam betas=(0.5, 0.999)",
        schedule="official: ReduceLROnPlateau(factor 0.5, patience 5) on val_loss per epoch (builder.py "
                 "build_scheduler, config scheduler.name 'plateau'); the engine has no validation loss: constant lr",
        warmup_steps="official: none", min_lr="unused with a constant schedule", restart_steps="no restarts",
        epochs="official config lightning.trainer.max_epochs 50 (early stopping on val_loss, patience 10, not reproduced)",
        batch_size="official config train.batch_size 48 on gpus '1'",
        gpus="official config lightning.trainer.gpus '1' (distributed_backend 'dp')",
        cache_size="official config data.image.imsize 256 (resize, then random crop 224)",
        amp="official config lightning.trainer.precision 16",
        grad_clip="official config lightning.trainer.gradient_clip_val 0.25",
        find_unused_parameters="every trainable parameter is used by both losses",
    )
    if cfg.scale == "cpu":
        values.update(batch_size=64, lr=1e-3, epochs=20)
        sources.update(batch_size="ours: G2D's CPU batch 64 (SYNTHCXR.md prototype)",
                       lr="ours: G2D's CPU lr 1e-3 (SYNTHCXR.md prototype), here with GLoRIA's Adam",
                       epochs="ours: as G2D's CPU scale; override with --epochs/--max-steps")
    return {**values, "sources": sources}
