"""Typed settings of ConVIRT: the ``paper``, ``official`` and ``original`` profiles, each field
overridable.

- ``paper`` (default): ConVIRT as the MGCA repository re-implements it (``mgca/models/convirt/
  convirt_module.py`` + ``mgca/models/backbones/encoder.py``), the baseline the G2D paper's
  ConVIRT rows come from (via the MGCA paper's tables), with the architecture the MGCA paper
  describes: ResNet-50, Bio_ClinicalBERT, 128-d projection heads, τ 0.07, CE(i→t) + CE(t→i).
- ``official``: the MGCA code's values where they differ from that description (docs/convirt.md
  lists them): the text encoder keeps only the first 6 of Bio_ClinicalBERT's 12 layers
  (``mgca/configs/bert_config.json`` ``num_hidden_layers: 6``), has no token-type embedding and,
  because ``BertEncoder.forward`` passes ``token_type_ids`` into the positional slot of its BLIP
  ``BertModel.forward(input_ids, attention_mask, position_ids, …)`` (``mgca/models/backbones/med.py``),
  gives every token position 0; images are upsampled to 299 px inside the encoder
  (``ImageEncoder.resnet_forward``); negatives come from the local GPU batch (no all-gather).
  The published ConVIRT weights of the MGCA repository were trained this way.
- ``original``: the ConVIRT paper (Zhang et al. 2020, §3): λ = 0.75 on image→text and τ = 0.1
  (REFERENCE.md "Baselines"), single-hidden-layer ReLU projections to 512-d, max-pooled BERT
  outputs, one sentence sampled per report, the first 6 BERT layers and the embeddings frozen, Adam
  1e-4 with weight decay 1e-6 at batch 32, and its image augmentations.

Fields left at ``None`` are filled from the scale preset, then the profile, then derived, so
``ConVIRTConfig(profile="official", proj_dim=256)`` is the official recipe with 256-d heads. After
construction every field is concrete; :meth:`to_dict` / :meth:`from_dict` round-trip through JSON.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from g2d_bench.errors import G2DBenchError
from g2d_bench.methods.common.settings import ProfiledSettings, choice
from g2d_bench.methods.common.text import BIO_CLINICAL_BERT, SCRATCH_TEXT

PROFILE_NAMES = ("paper", "official", "original")


def _choice(name: str, value: Any, allowed: tuple) -> None:
    choice("convirt", name, value, allowed)


_MGCA = dict(
    proj_dim=128,  # MGCA convirt_module.py ConVIRT(emb_dim=128) and CLI --emb_dim 128
    projection="mgca",  # MGCA encoder.py GlobalEmbedding: Linear-BN-ReLU-Linear-BN(affine=False)
    proj_hidden=2048,  # MGCA encoder.py ImageEncoder / BertEncoder hidden_dim=2048
    temperature=0.07,  # MGCA convirt_module.py softmax_temperature 0.07 (constructor and CLI); REFERENCE.md
    i2t_weight=1.0,  # MGCA convirt_module.py info_nce_loss: loss0 + loss1 (a sum of both directions)
    t2i_weight=1.0,
    text_pooling="cls",  # MGCA encoder.py BertEncoder: report_feat = [CLS] of last_hidden_state
    normalization="half",  # MGCA transforms.py DataTransforms: Normalize((0.5,)*3, (0.5,)*3) → [-1, 1]
    augment="mgca",  # MGCA transforms.py DataTransforms(is_train): RandomCrop(224) of the 256-px image
    text_sampling="report",  # MGCA pretrain_dataset.py get_caption: every sentence of the report
)

#: profile-dependent defaults of :class:`ConVIRTConfig`
PROFILES: dict[str, dict[str, Any]] = {
    "paper": dict(
        _MGCA,
        gather="all",  # g2d-bench default: InfoNCE over the global batch (single-GPU equivalent)
        text_layers=0,  # all layers of the text model (MGCA paper: BioClinicalBERT)
        token_types=True,  # BERT's token-type embedding (type 0) kept
        text_positions="absolute",  # BERT's positions 0..L-1
        upsample=False,  # the encoder sees the crop as it is
    ),
    "official": dict(
        _MGCA,
        gather="local",  # MGCA code: Lightning DDP, info_nce_loss on the per-GPU batch (no all-gather)
        text_layers=6,  # MGCA configs/bert_config.json num_hidden_layers 6 (the first 6 of Bio_ClinicalBERT's 12)
        token_types=False,  # MGCA backbones/med.py BertEmbeddings: word + position embeddings only
        text_positions="zeros",  # MGCA encoder.py passes token_type_ids (all 0) as med.py's position_ids
        upsample=True,  # MGCA encoder.py resnet_forward: nn.Upsample((299, 299), bilinear, align_corners=True)
    ),
    "original": dict(
        proj_dim=512,  # ConVIRT paper §3/§4: projection dimension d = 512
        projection="mlp",  # ConVIRT paper §3 "single-hidden-layer neural network" with ReLU, g(h) = W2·σ(W1·h)
        proj_hidden=0,  # 0 = the input width (ours: the paper gives no hidden width)
        temperature=0.1,  # ConVIRT paper §4 τ = 0.1; REFERENCE.md
        i2t_weight=0.75,  # ConVIRT paper Eq. 3 λ = 0.75 on ℓ(v→u); REFERENCE.md
        t2i_weight=0.25,  # 1 − λ on ℓ(u→v)
        text_pooling="max",  # ConVIRT paper §3: BERT "followed by a max-pooling layer over all output vectors"
        normalization="imagenet",  # ours: an ImageNet-initialised ResNet-50 (paper) gets ImageNet statistics
        augment="convirt",  # ConVIRT paper §3 image transformations (crop, flip, affine, jitter, blur)
        text_sampling="sentence",  # ConVIRT paper §3: a sentence sampled uniformly from the report
        gather="all",  # g2d-bench default
        text_layers=0,
        token_types=True,
        text_positions="absolute",
        upsample=False,
    ),
}

#: model-size presets, applied before the profile
SCALE_DEFAULTS: dict[str, dict[str, Any]] = {
    "paper": dict(
        arch="resnet50",  # MGCA convirt_module.py img_encoder "resnet_50"; ConVIRT paper §4 ResNet-50
        image_size=224,  # MGCA transforms.py crop 224; ConVIRT paper 224×224
        text_model=BIO_CLINICAL_BERT,  # MGCA encoder.py bert_type; ConVIRT paper: ClinicalBERT (Alsentzer et al.)
        text_max_length=112,  # MGCA pretrain_dataset.py max_words=112
        scratch_mlm_steps=0,  # a scratch BERT at paper scale stays random (as G2D's config)
    ),
    # CPU runs on SynthCXR: G2D's CPU values (methods/g2d/config.py SCALE_DEFAULTS "cpu"): ResNet-18,
    # 96 px, 2-layer scratch BERT (hidden 128) MLM-pretrained for 600 steps, 64 tokens
    "cpu": dict(arch="resnet18", image_size=96, text_model=SCRATCH_TEXT, text_max_length=64, scratch_mlm_steps=600),
}


@dataclass(frozen=True)
class ConVIRTConfig(ProfiledSettings):
    LABEL = "ConVIRT"
    """All ConVIRT settings. ``None`` fields take the ``scale``'s value (:data:`SCALE_DEFAULTS`),
    then the ``profile``'s (:data:`PROFILES`), then are derived (``freeze_layers``,
    ``freeze_embeddings``, ``upsample_size``)."""

    profile: str = "paper"
    scale: str = "paper"
    # -- image tower -------------------------------------------------------------------------------
    arch: str | None = None
    image_size: int | None = None
    normalization: str | None = None  # "half" (mean 0.5, std 0.5) or "imagenet"
    #: optional local torchvision ResNet weights to start from (MGCA: torchvision ResNet50_Weights.
    #: DEFAULT; ConVIRT: ImageNet); nothing is downloaded, so a path or None (random init)
    encoder_weights: str | None = None
    #: resize the normalised image inside the encoder before the ResNet (official: True)
    upsample: bool | None = None
    #: the side it is resized to; None = round(image_size · 299 / 224) when ``upsample`` (299 px at
    #: 224, MGCA encoder.py), else 0
    upsample_size: int | None = None
    augment: str | None = None  # "mgca" or "convirt"
    # -- projection heads --------------------------------------------------------------------------
    projection: str | None = None  # "mgca" or "mlp"
    proj_hidden: int | None = None  # hidden width; 0 = the head's input width
    proj_dim: int | None = None
    # -- text tower (field names shared with methods/common/text.py) --------------------------------
    text_model: str | None = None  # hub id, local folder, or "scratch"
    text_max_length: int | None = None
    #: BERT layers 0..n-1 frozen; None = 6 for the original profile with a pretrained BERT (ConVIRT
    #: paper), 0 for paper/official (MGCA convirt_module.py freeze_bert=False); a scratch BERT
    #: freezes its lower half when MLM-pretrained (G2D's CPU convention, ours)
    freeze_layers: int | None = None
    #: freeze the word/position/token-type embeddings (None: original profile True, ConVIRT paper)
    freeze_embeddings: bool | None = None
    text_layers: int | None = None  # keep only the first N encoder layers (0 = all)
    token_types: bool | None = None  # False: the token-type embedding is zero and frozen (official)
    text_positions: str | None = None  # "absolute" or "zeros" (official quirk, see module docstring)
    text_pooling: str | None = None  # "cls" or "max" (over the non-padding tokens)
    text_sampling: str | None = None  # "report" or "sentence" (one sentence drawn per report per step)
    scratch_layers: int = 2  # G2D's CPU values (methods/g2d/config.py)
    scratch_hidden: int = 128
    scratch_heads: int = 2
    scratch_vocab: int = 2000
    scratch_mlm_steps: int | None = None
    # -- loss --------------------------------------------------------------------------------------
    temperature: float | None = None
    i2t_weight: float | None = None  # weight of CE(image→text)
    t2i_weight: float | None = None  # weight of CE(text→image)
    gather: str | None = None  # "all" (negatives from every rank) or "local"
    #: names of the fields filled from the scale/profile (re-derived by :meth:`with_overrides`)
    derived: frozenset = field(default=frozenset(), repr=False, compare=False)

    def __post_init__(self) -> None:
        _choice("profile", self.profile, PROFILE_NAMES)
        _choice("scale", self.scale, tuple(SCALE_DEFAULTS))
        derived = {  # read after the scale and profile filled text_model and scratch_mlm_steps
            "freeze_layers": lambda: (self.scratch_layers // 2 if self.scratch_mlm_steps else 0) if self.text_model == SCRATCH_TEXT
            else (6 if self.profile == "original" else 0),
            "freeze_embeddings": lambda: self.profile == "original",
            "upsample_size": lambda: round(self.image_size * 299 / 224) if self.upsample else 0,
        }
        self._fill((SCALE_DEFAULTS[self.scale], PROFILES[self.profile]), derived)
        self._validate()

    def _validate(self) -> None:
        _choice("normalization", self.normalization, ("half", "imagenet"))
        _choice("augment", self.augment, ("mgca", "convirt"))
        _choice("projection", self.projection, ("mgca", "mlp"))
        _choice("text_positions", self.text_positions, ("absolute", "zeros"))
        _choice("text_pooling", self.text_pooling, ("cls", "max"))
        _choice("text_sampling", self.text_sampling, ("report", "sentence"))
        _choice("gather", self.gather, ("all", "local"))
        if self.image_size < 32 or self.proj_dim < 1 or self.proj_hidden < 0 or self.text_max_length < 2:
            raise G2DBenchError("convirt: image_size must be >= 32, proj_dim >= 1, proj_hidden >= 0, text_max_length >= 2")
        if self.temperature <= 0:
            raise G2DBenchError(f"convirt.temperature = {self.temperature} must be positive (MGCA 0.07, ConVIRT 0.1)")
        if self.i2t_weight < 0 or self.t2i_weight < 0 or self.i2t_weight + self.t2i_weight == 0:
            raise G2DBenchError("convirt.i2t_weight and t2i_weight must be >= 0 and not both 0 (ConVIRT: 0.75 / 0.25)")
        if self.freeze_layers < 0 or self.text_layers < 0 or self.scratch_mlm_steps < 0 or self.upsample_size < 0:
            raise G2DBenchError("convirt: freeze_layers, text_layers, scratch_mlm_steps and upsample_size must be >= 0")


def training_profile(cfg: ConVIRTConfig) -> dict[str, Any]:
    """Optimiser / schedule constants for the pretraining engine, with ``sources`` (key → citation).

    Keys as G2D's (methods/g2d/config.py ``training_profile``) plus ``optimizer`` ("adamw" or "adam",
    used by the recipe's ``optimizer`` hook). ``cfg.scale == "cpu"`` changes batch, lr and epochs only.
    """
    if cfg.profile == "original":
        values: dict[str, Any] = dict(
            optimizer="adam", lr=1e-4, weight_decay=1e-6, betas=(0.9, 0.999), schedule="constant",
            warmup_fraction=0.0, warmup_steps=0, restart_steps=0, min_lr=0.0, epochs=50, batch_size=32, gpus=1,
        )
        sources = dict(
            optimizer="ConVIRT paper §4: Adam (L2 weight decay)", lr="ConVIRT paper §4: 1e-4",
            weight_decay="ConVIRT paper §4: 1e-6", betas="torch Adam default (paper silent)",
            schedule="ConVIRT paper §4 halves the lr when the validation loss plateaus; the engine has no validation "
                     "loss, so the lr stays constant (ours)",
            epochs="ours: the paper stops early on validation loss; 50 as MGCA's re-implementation",
            batch_size="ConVIRT paper §4: 32", gpus="ours",
        )
    else:
        values = dict(
            optimizer="adamw", lr=2e-5, weight_decay=0.05, betas=(0.9, 0.999), schedule="warmup-cosine",
            warmup_fraction=0.4, warmup_steps=0, restart_steps=0, min_lr=1e-8, epochs=50, batch_size=2 * 72, gpus=2,
        )
        sources = dict(
            optimizer="MGCA convirt_module.py configure_optimizers: AdamW",
            lr="MGCA convirt_module.py learning_rate 2e-5 (constructor and CLI)",
            weight_decay="MGCA convirt_module.py CLI --weight_decay 0.05 (the CLI passes it; the constructor default 1e-4 is unused)",
            betas="MGCA convirt_module.py betas=(momentum 0.9, 0.999)",
            schedule="MGCA convirt_module.py CosineAnnealingWarmupRestarts, one cycle over all steps, per step",
            warmup_fraction="MGCA convirt_module.py warmup_steps = 0.4 · training_steps",
            min_lr="MGCA convirt_module.py min_lr 1e-8",
            epochs="MGCA convirt_module.py max_epochs 50 (with early stopping on val_loss, patience 5: not in the engine)",
            batch_size="MGCA convirt_module.py CLI --batch_size 72 per GPU × 2 GPUs (MGCA README: 2 RTX 3090, batch 144)",
            gpus="MGCA README: 2 GPUs",
        )
    values.update(cache_size=round(cfg.image_size * 256 / 224), amp=True, find_unused_parameters=False)
    sources.update(
        cache_size="MGCA pretrain_dataset.py imsize 256 (resize-with-pad), then crop 224",
        amp="ours (MGCA's Trainer runs fp32 unless --precision 16 is given)",
        find_unused_parameters="every trainable parameter is used every step",
        restart_steps="no restarts", warmup_steps="0: warmup_fraction applies",
    )
    if cfg.scale == "cpu":
        values.update(batch_size=64, lr=1e-3, epochs=20)
        sources.update(batch_size="ours: G2D's CPU value (SYNTHCXR.md prototype batch 64)",
                       lr="ours: G2D's CPU value (SYNTHCXR.md prototype 1e-3)",
                       epochs="ours: G2D's CPU value; override with --epochs/--max-steps")
    return {**values, "sources": sources}
