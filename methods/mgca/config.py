"""Typed settings of MGCA: the ``paper`` and ``official`` profiles at ``paper`` or ``cpu`` scale.

MGCA (Wang et al., *Multi-Granularity Cross-modal Alignment for Generalized Medical Visual
Representation Learning*, NeurIPS 2022). Facts come from the paper and the official code
(github.com/HKU-MedAI/MGCA: ``mgca/models/mgca/mgca_module.py`` = "module", ``mgca/models/backbones/
encoder.py`` = "encoder.py", ``mgca/models/backbones/med.py``, ``mgca/configs/bert_config.json``,
``mgca/datasets/pretrain_dataset.py``, ``mgca/datasets/transforms.py``). Where the paper and the code
differ, both are settings and the paper is the default; where the paper is silent, the code's value
is the default of both profiles. "ours" marks a choice neither makes (docs/mgca.md lists them).

Fields left at ``None`` are filled from the scale preset, then the profile, then derived; after
construction every field is concrete and :meth:`MGCAConfig.to_dict` / :meth:`MGCAConfig.from_dict`
round-trip through JSON.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from g2d_bench.errors import G2DBenchError
from g2d_bench.methods.common.settings import ProfiledSettings, choice
from g2d_bench.methods.common.text import BIO_CLINICAL_BERT, SCRATCH_TEXT

PROFILE_NAMES = ("paper", "official")

#: λ presets (instance, token, prototype): the training entry point ``cli_main`` parses
#: ``--lambda_1/2/3`` with defaults 1, 1, 1 — the values the README's pretraining command trains
#: with — while ``MGCA.__init__`` defaults to 1, 0.7, 0.5 (module). Both are settings.
LOSS_WEIGHTS: dict[str, tuple[float, float, float]] = {
    "cli": (1.0, 1.0, 1.0),  # module add_model_specific_args: --lambda_1/2/3 default 1.
    "constructor": (1.0, 0.7, 0.5),  # module MGCA.__init__: lambda_1=1, lambda_2=0.7, lambda_3=0.5
}


def _choice(name: str, value: Any, allowed: tuple) -> None:
    choice("mgca", name, value, allowed)


#: profile-dependent defaults
PROFILES: dict[str, dict[str, Any]] = {
    "paper": dict(
        gather="all",  # instance loss over the (global) batch; g2d-bench default for every method
        #: word weight = the [CLS] attention to the word itself (paper §3.2)
        word_weights="aligned",
        #: BERT's absolute positions
        text_positions="absolute",
    ),
    "official": dict(
        gather="local",  # module forward: img_emb_q.mm(report_emb_q.t()) on the local batch, no all-gather
        #: encoder.py aggregate_tokens zips the L tokens with the L−1 [CLS] attentions of tokens 1..L−1,
        #: so token t gets the attention of token t+1 (an off-by-one); docs/mgca.md
        word_weights="shifted",
        #: encoder.py BertEncoder.forward calls med.BertModel(ids, attn_mask, token_type): the third
        #: positional argument is position_ids, so every token gets position 0 (token_type_ids are zeros)
        text_positions="zeros",
    ),
}

#: model-size presets, applied before the profile
SCALE_DEFAULTS: dict[str, dict[str, Any]] = {
    "paper": dict(
        arch="resnet50",  # the released ResNet-50 variant (README weights; ImageEncoder "resnet_50")
        image_size=224,  # transforms.py DataTransforms RandomCrop(224) of the 256 px resize-with-pad
        encoder_input_size=299,  # encoder.py resnet_forward: nn.Upsample((299, 299), bilinear, align_corners=True)
        text_model=BIO_CLINICAL_BERT,  # encoder.py BertEncoder.bert_type; paper §4.1
        text_max_length=112,  # pretrain_dataset.py max_words=112 (padding="max_length")
        scratch_mlm_steps=0,  # a scratch BERT at paper scale stays random (ours)
    ),
    # CPU runs on SynthCXR (ours; the same sizes as G2D's cpu scale, methods/g2d/config.py): ResNet-18,
    # 96 px (layer3 gives a 6×6 = 36-patch grid), 2-layer scratch BERT (hidden 128) MLM-pretrained for
    # 600 steps, 64 tokens; no upsampling to 299 (it would cost 10× the pixels)
    "cpu": dict(arch="resnet18", image_size=96, encoder_input_size=0, text_model=SCRATCH_TEXT, text_max_length=64,
                scratch_mlm_steps=600),
}


@dataclass(frozen=True)
class MGCAConfig(ProfiledSettings):
    LABEL = "MGCA"
    """All MGCA settings. ``None`` fields take the ``scale``'s value (:data:`SCALE_DEFAULTS`), then the
    ``profile``'s (:data:`PROFILES`), then are derived (``text_layers``, ``lambda_*``)."""

    profile: str = "paper"
    scale: str = "paper"
    # -- image tower -------------------------------------------------------------------------------
    arch: str | None = None
    image_size: int | None = None
    #: side the image is bilinearly resized to inside the encoder (0: none); module/encoder.py: 299
    encoder_input_size: int | None = None
    #: optional local torchvision ResNet weights to start from (the official code starts from
    #: torchvision's ImageNet weights, cnn_backbones.py; nothing is downloaded here)
    encoder_weights: str | None = None
    emb_dim: int = 128  # module emb_dim=128 (paper §4.1: 128-d embeddings)
    hidden_dim: int = 2048  # encoder.py GlobalEmbedding / LocalEmbedding hidden_dim=2048
    # -- text tower --------------------------------------------------------------------------------
    text_model: str | None = None
    text_max_length: int | None = None
    #: "max_length" (pretrain_dataset.py pads every report to 112: pad words are negatives of the
    #: token loss and enter the local head's BatchNorm) or "longest" (ours)
    text_padding: str = "max_length"
    #: MGCA's report cleaning before tokenising: "mgca" (pretrain_dataset.py create_path_2_sent_mapping:
    #: split sentences at "." and "<n>.", keep lower-cased alphanumeric tokens, drop one-token
    #: sentences) or "none"
    text_cleaning: str = "mgca"
    #: BERT layers kept (0 = all): bert_config.json num_hidden_layers=6 loads the first 6 of
    #: Bio_ClinicalBERT's 12 (official); the paper names Bio_ClinicalBERT (all 12). None: 6 with the
    #: official profile and a pretrained model, else 0
    text_layers: int | None = None
    text_positions: str | None = None  # "absolute" (paper) or "zeros" (official, see PROFILES)
    freeze_layers: int = 0  # module freeze_bert=False: every BERT layer trains
    scratch_layers: int = 2  # ours (as G2D's cpu scale)
    scratch_hidden: int = 128  # ours
    scratch_heads: int = 2  # ours
    scratch_vocab: int = 2000  # ours
    scratch_mlm_steps: int | None = None  # ours: cpu 600, paper 0 (as G2D)
    # -- losses ------------------------------------------------------------------------------------
    temperature: float = 0.07  # module softmax_temperature=0.07 (instance loss)
    local_temperature: float = 0.1  # module local_temperature=0.1 (token loss)
    proto_temperature: float = 0.2  # module proto_temperature=0.2 (paper §3.3)
    num_prototypes: int = 500  # module num_prototypes=500 (paper §4.1); kept at cpu scale (docs/mgca.md)
    sinkhorn_iterations: int = 3  # module sinkhorn_iterations=3
    epsilon: float = 0.05  # module epsilon=0.05
    freeze_prototypes_epochs: int = 1  # module freeze_prototypes_epochs=1 (on_after_backward)
    #: patch→word alignment besides word→patch (module bidirectional=True; the CLI flag
    #: ``--bidirectional`` is store_false, so True unless passed)
    bidirectional: bool = True
    #: [CLS]-attention clip of the word weights: module torch.quantile(…, 0.1) / (…, 0.9)
    weight_quantiles: tuple[float, float] = (0.1, 0.9)
    word_weights: str | None = None  # "aligned" (paper) or "shifted" (official)
    gather: str | None = None  # "all" or "local" (official): negatives of the instance loss
    loss_weights: str = "cli"  # λ preset, :data:`LOSS_WEIGHTS`
    lambda_instance: float | None = None  # λ1; None: the preset's
    lambda_token: float | None = None  # λ2
    lambda_proto: float | None = None  # λ3
    #: names of the fields filled from the scale/profile (re-derived by :meth:`with_overrides`)
    derived: frozenset = field(default=frozenset(), repr=False, compare=False)

    def __post_init__(self) -> None:
        _choice("profile", self.profile, PROFILE_NAMES)
        _choice("scale", self.scale, tuple(SCALE_DEFAULTS))
        _choice("loss_weights", self.loss_weights, tuple(LOSS_WEIGHTS))
        preset = dict(zip(("lambda_instance", "lambda_token", "lambda_proto"), LOSS_WEIGHTS[self.loss_weights], strict=True))
        derived = {
            "text_layers": lambda: 6 if self.profile == "official" and self.text_model != SCRATCH_TEXT else 0,
            **{name: (lambda v=value: v) for name, value in preset.items()},
        }
        self._fill((SCALE_DEFAULTS[self.scale], PROFILES[self.profile]), derived)
        object.__setattr__(self, "weight_quantiles", tuple(float(q) for q in self.weight_quantiles))
        self._validate()

    def _validate(self) -> None:
        _choice("gather", self.gather, ("all", "local"))
        _choice("word_weights", self.word_weights, ("aligned", "shifted"))
        _choice("text_positions", self.text_positions, ("absolute", "zeros"))
        _choice("text_padding", self.text_padding, ("max_length", "longest"))
        _choice("text_cleaning", self.text_cleaning, ("mgca", "none"))
        low, high = self.weight_quantiles
        if not 0.0 <= low <= high <= 1.0:
            raise G2DBenchError(f"mgca.weight_quantiles = {self.weight_quantiles} must satisfy 0 <= low <= high <= 1 (module: 0.1, 0.9)")
        positive = dict(temperature=self.temperature, local_temperature=self.local_temperature,
                        proto_temperature=self.proto_temperature, epsilon=self.epsilon, num_prototypes=self.num_prototypes,
                        emb_dim=self.emb_dim, hidden_dim=self.hidden_dim, image_size=self.image_size)
        bad = [f"{k} = {v}" for k, v in positive.items() if not v > 0]
        if bad:
            raise G2DBenchError(f"mgca settings must be positive: {', '.join(bad)}")
        if min(self.sinkhorn_iterations, self.freeze_prototypes_epochs, self.freeze_layers, self.text_layers,
               self.scratch_mlm_steps, self.encoder_input_size) < 0:
            raise G2DBenchError("mgca.sinkhorn_iterations, freeze_prototypes_epochs, freeze_layers, text_layers, "
                                "scratch_mlm_steps and encoder_input_size must be >= 0")
        if self.image_size % 32:
            raise G2DBenchError(f"mgca.image_size = {self.image_size} must be a multiple of 32 (ResNet stride)")

    @property
    def lambdas(self) -> tuple[float, float, float]:
        """(λ instance, λ token, λ prototype)."""
        return self.lambda_instance, self.lambda_token, self.lambda_proto


def training_profile(cfg: MGCAConfig) -> dict[str, Any]:
    """Optimiser / schedule constants for the pretraining engine, with ``sources``.

    module ``configure_optimizers``: AdamW over every parameter, lr 2e-5, betas (momentum 0.9,
    0.999), weight decay 0.05; ``CosineAnnealingWarmupRestarts`` with one cycle over all training
    steps, warm-up 40 % of them, min_lr 1e-8, stepped every optimizer step. ``cfg.scale == "cpu"``
    changes batch, lr and epochs only (as G2D's cpu scale).
    """
    values: dict[str, Any] = dict(
        lr=2e-5, weight_decay=0.05, betas=(0.9, 0.999), schedule="warmup-cosine", warmup_fraction=0.4,
        warmup_steps=0, min_lr=1e-8, epochs=50, batch_size=144, gpus=2,
        cache_size=round(cfg.image_size * 256 / 224), amp=False, find_unused_parameters=False,
    )
    sources = dict(
        lr="MGCA module learning_rate 2e-5 (constructor and CLI)",
        weight_decay="MGCA module weight_decay 0.05",
        betas="MGCA module configure_optimizers betas=(momentum 0.9, 0.999)",
        schedule="MGCA module CosineAnnealingWarmupRestarts(first_cycle_steps=training_steps, cycle_mult=1): "
                 "linear warm-up then cosine, per step",
        warmup_fraction="MGCA module warmup_steps=int(training_steps * 0.4)",
        warmup_steps="0: warmup_fraction applies",
        min_lr="MGCA module min_lr=1e-8",
        epochs="MGCA module cli_main max_epochs=50 (README: 50 epochs; EarlyStopping on val_loss, patience 5, not run here)",
        batch_size="MGCA README: batch 144 on 2 RTX 3090 (CLI --batch_size 72 per GPU)",
        gpus="MGCA README: 2 GPUs (--gpus 2 --strategy ddp)",
        cache_size="MGCA pretrain_dataset.py imsize=256 resize-with-pad, then RandomCrop(224)",
        amp="MGCA: Lightning default precision 32",
        find_unused_parameters="every trainable parameter gets a gradient",
    )
    if cfg.scale == "cpu":
        values.update(batch_size=64, lr=1e-3, epochs=20, gpus=1)
        sources.update(batch_size="ours: as G2D's cpu scale (SYNTHCXR.md prototype batch 64)",
                       lr="ours: as G2D's cpu scale (SYNTHCXR.md prototype AdamW 1e-3)",
                       epochs="ours: as G2D's cpu scale; override with --epochs/--max-steps", gpus="ours: CPU")
    return {**values, "sources": sources}
