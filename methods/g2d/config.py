"""Typed settings of G2D: the ``paper`` and ``official`` profiles, each field overridable.

Where the G2D paper (NeurIPS 2024) and its official pretraining code disagree, both are settings and
the paper is the default (REFERENCE.md). Every default cites its source; "ours" marks a choice the
paper and the code leave open (docs/g2d.md lists them all).

Fields left at ``None`` are filled from the scale preset and the profile in ``__post_init__``, so
``G2DConfig(profile="official", heads=3)`` is the official recipe with three heads. After construction every field is
concrete; :meth:`G2DConfig.to_dict` / :meth:`G2DConfig.from_dict` round-trip through JSON.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from g2d_bench.errors import G2DBenchError
# the scratch-BERT name and Bio_ClinicalBERT (G2D §4.1 "ClinicalBERT"; official config.yaml)
from g2d_bench.methods.common.settings import ProfiledSettings
from g2d_bench.methods.common.text import BIO_CLINICAL_BERT, SCRATCH_TEXT

PROFILE_NAMES = ("paper", "official")


def _choice(owner: str, name: str, value: Any, allowed: tuple) -> None:
    if value not in allowed:
        raise G2DBenchError(f"{owner}.{name} = {value!r} is not allowed; choose one of {', '.join(map(repr, allowed))}")


@dataclass(frozen=True)
class PseudoMaskConfig:
    """How the pseudo segmentation mask is built from the attention-pool weights (G2D §3.2).

    Defaults are the paper's; :meth:`official` gives the official code's ``transform_att2label``.
    """

    #: head aggregation: "mean" (§3.2 Eq. 2) or "none" (Table 5f "w/o aggregation": one mask per
    #: head, the decoder then predicts one channel per head, as the code's ``num_pseudo_map`` needs)
    aggregate: str = "mean"
    #: "nearest" (official code ``Resize(..., NEAREST)``; §3.2 smooths the "square-like boundary
    #: caused by upsampling", i.e. nearest) or "bilinear" (ours, a setting)
    upsample: str = "nearest"
    #: zero attention outside a body mask from histogram thresholding (§3.2; not in official code)
    body_mask: bool = True
    #: "quantile" (§3.2), "median" / "gmm" (Table 5d), "mean" (official code option)
    threshold: str = "quantile"
    #: the quantile of "quantile": 0.85 (§3.2 "85% percentile"; official config ``quantil: 0.85``);
    #: 0.75 is the other Table 5d row
    quantile: float = 0.85
    #: ">=" (§3.2 Eq. 3) or ">" (official code ``pseudo_map > threshold``)
    compare: str = ">="
    #: pixels the threshold statistic is taken over: "body" (§3.2 "filter out low attention scores
    #: within the body mask") or "all" (official code: the whole map)
    quantile_over: str = "body"
    #: bilateral filtering of the binary mask (§3.2, Tomasi & Manduchi 1998; not in official code)
    smooth: bool = True
    #: bilateral range sigma on the {0,1} mask (ours: the paper gives none; must exceed ~0.7 for the
    #: filter to round a block corner at all, see docs/g2d.md)
    sigma_color: float = 1.0
    #: bilateral spatial sigma in pixels; None = a quarter of the attention-map stride (ours: 8 px at
    #: 224 px input with a 7×7 map)
    sigma_space: float | None = None
    #: "binary" (re-threshold the smoothed mask at ``target_threshold``) or "soft" (smoothed values)
    target: str = "binary"
    target_threshold: float = 0.5  # ours
    #: pair each image with another image's mask (A.6 / Table 8 "shuffled"), a random derangement
    shuffle: bool = False
    #: below this body fraction the body mask is treated as failed and all pixels count (ours)
    body_min_fraction: float = 0.05

    def __post_init__(self) -> None:
        _choice("mask", "aggregate", self.aggregate, ("mean", "none"))
        _choice("mask", "upsample", self.upsample, ("nearest", "bilinear"))
        _choice("mask", "threshold", self.threshold, ("quantile", "median", "gmm", "mean"))
        _choice("mask", "compare", self.compare, (">=", ">"))
        _choice("mask", "quantile_over", self.quantile_over, ("body", "all"))
        _choice("mask", "target", self.target, ("binary", "soft"))
        if not 0.0 < self.quantile < 1.0:
            raise G2DBenchError(f"mask.quantile = {self.quantile} must lie in (0, 1), e.g. 0.85 (G2D §3.2)")
        if self.sigma_color <= 0 or (self.sigma_space is not None and self.sigma_space <= 0):
            raise G2DBenchError("mask.sigma_color and mask.sigma_space must be positive")

    @classmethod
    def official(cls) -> "PseudoMaskConfig":
        """The official code's ``transform_att2label``: no body mask, ``>`` over all pixels, no
        smoothing."""
        return cls(body_mask=False, compare=">", quantile_over="all", smooth=False)

    @classmethod
    def for_profile(cls, profile: str) -> "PseudoMaskConfig":
        return cls.official() if profile == "official" else cls()


#: profile-dependent defaults of :class:`G2DConfig` (the mask's are in :class:`PseudoMaskConfig`)
PROFILES: dict[str, dict[str, Any]] = {
    "paper": dict(
        image_size=224,  # A.3: resize 256, centre-crop 224
        normalization="unit",  # A.3: intensities in [0, 1]
        heads=3,  # Table 5g / §4.5: 3 heads chosen
        vla_reduction="mean",  # ours: CLIP's symmetric InfoNCE (§3.1 follows CLIP); "i2t" = Eq. 1 as written
        gather="all",  # Eq. 1 over the (global) batch; g2d-bench default
        pa_loss="paper",  # Eq. 4: ½(soft Dice + BCE)
        pa_start_step=0,  # the paper mentions no PA warm-up
    ),
    "official": dict(
        image_size=256,  # official config.yaml img_size / crop_img_size 256
        normalization="imagenet",  # official dataset.py Normalize(ImageNet mean/std)
        heads=4,  # official config.yaml att_pool_head 4
        vla_reduction="sum",  # official loss.py clip_loss returns loss_t + loss_i
        gather="local",  # official code: no all-gather, negatives from the local GPU batch
        pa_loss="official",  # official loss.py bceDiceLoss: Dice on logits + 0.2·BCE
        pa_start_step=200,  # official trainer.py: global loss only while global_step < 200
    ),
}


#: model-size presets, applied before the profile (so ``scale="cpu"`` sets the image size)
SCALE_DEFAULTS: dict[str, dict[str, Any]] = {
    "paper": dict(
        arch="resnet50",  # §4.1 "a standard ResNet-50"
        text_model=BIO_CLINICAL_BERT,  # §4.1 ClinicalBERT; official config.yaml
        text_max_length=256,  # official pre_model/cnn_ae ``_tokenize`` max_length=256 (paper silent)
        scratch_mlm_steps=0,  # a scratch BERT at paper scale stays random (ours)
    ),
    # CPU runs on SynthCXR (ours): SYNTHCXR.md's prototype (ResNet-18, 2-layer BERT with hidden 128,
    # 96 px — a multiple of the U-Net stride 32; the same size as g2d-bench's cpu scale for tasks);
    # SynthCXR reports average 44 tokens (max 106: the longest are truncated at 64). The scratch
    # BERT is MLM-pretrained for 600 steps (~70 s): with a random one both towers sit collapsed at
    # ln(batch) for ~600 steps, with it the contrastive loss falls from step ~150 (docs/g2d.md)
    "cpu": dict(arch="resnet18", image_size=96, text_model=SCRATCH_TEXT, text_max_length=64, scratch_mlm_steps=600),
}


@dataclass(frozen=True)
class G2DConfig(ProfiledSettings):
    LABEL = "G2D"
    """All G2D settings. ``None`` fields take the ``scale``'s value (:data:`SCALE_DEFAULTS`), then
    the ``profile``'s (:data:`PROFILES`), then are derived (``mask``, ``freeze_layers``, ``head_dim``)."""

    profile: str = "paper"
    #: model size preset: "paper" or "cpu" (:data:`SCALE_DEFAULTS`); it fills ``None`` fields first
    scale: str = "paper"
    # -- image tower -------------------------------------------------------------------------------
    arch: str | None = None
    image_size: int | None = None
    #: stride of the dense map V (the attention grid is image_size / output_stride): 32, a plain
    #: ResNet (§4.1; official ``cnn_ae.py``), or 16, the last stage dilated instead of strided
    #: (smp ``make_dilated``; ours, a CPU-scale setting: a 6×6 grid at 96 px, near the paper's 7×7
    #: at 224 px; docs/g2d.md "A finer grid at the same cost")
    output_stride: int = 32
    normalization: str | None = None  # "unit" ([0,1], 3 replicated channels) or "imagenet"
    #: optional local torchvision ResNet weights to start the encoder from (official code uses
    #: smp ``encoder_weights='imagenet'``; nothing is downloaded here, so this is a path or None)
    encoder_weights: str | None = None
    proj_hidden: int = 128  # official config projection_head.mlp_hidden_size
    proj_dim: int = 128  # Table 5e: 128-d projectors
    heads: int | None = None
    #: per-head dimension; None = proj_dim / heads when divisible, else ceil(proj_dim / heads)
    #: (3 heads → 43, inner width 129; ours, docs/g2d.md)
    head_dim: int | None = None
    # -- text tower --------------------------------------------------------------------------------
    text_model: str | None = None  # hub id, local folder, or "scratch"
    #: BERT layers 0..n-1 frozen (official main.py ``free_layers: 9``; paper silent); None = 9 for
    #: a pretrained model, 0 for a scratch BERT
    freeze_layers: int | None = None
    text_max_length: int | None = None
    #: "max_length" (official code pads every report to 256 in training; the text projector's
    #: BatchNorm1d then sees the pad tokens too) or "longest" (pad to the longest in the batch)
    text_padding: str = "max_length"
    scratch_layers: int = 2  # ours (SYNTHCXR.md prototype: 2-layer BERT, hidden 128)
    scratch_hidden: int = 128  # ours
    scratch_heads: int = 2  # ours
    scratch_vocab: int = 2000  # ours: WordPiece vocabulary trained on the report corpus
    #: masked-LM steps of the scratch BERT on the report corpus before G2D pretraining (ours; 0 = a
    #: random BERT): the CPU analog of starting from Bio_ClinicalBERT, pretrained on clinical notes
    #: (§4.1). None = the scale's (cpu: 600, paper: 0)
    scratch_mlm_steps: int | None = None
    # -- losses ------------------------------------------------------------------------------------
    temperature: float = 0.07  # §3.1 "empirically set to 0.07 following MGCA"; official loss.py
    vla_reduction: str | None = None  # "mean" (symmetric, default), "sum" (official) or "i2t" (Eq. 1 as written)
    gather: str | None = None  # "all" (negatives from every rank) or "local" (official)
    #: decoder objective: "pseudo_seg" (§3.3), "reconstruction" or "none" (Table 5c)
    decoder_loss: str = "pseudo_seg"
    pa_loss: str | None = None  # "paper" or "official"
    pa_start_step: int | None = None
    mask: PseudoMaskConfig | None = None
    #: names of the fields filled from the scale/profile (re-derived by :meth:`with_overrides`)
    derived: frozenset = field(default=frozenset(), repr=False, compare=False)

    def __post_init__(self) -> None:
        _choice("g2d", "profile", self.profile, PROFILE_NAMES)
        _choice("g2d", "scale", self.scale, tuple(SCALE_DEFAULTS))
        derived = {
            "mask": lambda: PseudoMaskConfig.for_profile(self.profile),
            # official main.py freezes 9 of 12 pretrained layers; an MLM-pretrained scratch BERT
            # freezes its lower half (ours: 1 of 2 layers; measured better than 0, docs/g2d.md),
            # freezing a random one would only remove capacity (ours)
            "freeze_layers": lambda: (self.scratch_layers // 2 if self.scratch_mlm_steps else 0)
            if self.text_model == SCRATCH_TEXT else 9,
            "head_dim": lambda: -(-self.proj_dim // self.heads),
        }
        self._fill((SCALE_DEFAULTS[self.scale], PROFILES[self.profile]), derived)
        self._validate()

    def _validate(self) -> None:
        _choice("g2d", "normalization", self.normalization, ("unit", "imagenet"))
        _choice("g2d", "vla_reduction", self.vla_reduction, ("mean", "sum", "i2t"))
        _choice("g2d", "gather", self.gather, ("all", "local"))
        _choice("g2d", "decoder_loss", self.decoder_loss, ("pseudo_seg", "reconstruction", "none"))
        _choice("g2d", "pa_loss", self.pa_loss, ("paper", "official"))
        _choice("g2d", "text_padding", self.text_padding, ("max_length", "longest"))
        _choice("g2d", "output_stride", self.output_stride, (32, 16))
        if self.image_size % 32:
            raise G2DBenchError(f"g2d.image_size = {self.image_size} must be a multiple of 32 (U-Net stride)")
        if self.heads < 1 or self.head_dim < 1:
            raise G2DBenchError(f"g2d.heads = {self.heads} and head_dim = {self.head_dim} must be positive")
        if self.freeze_layers < 0 or self.temperature <= 0 or self.scratch_mlm_steps < 0:
            raise G2DBenchError("g2d.freeze_layers and g2d.scratch_mlm_steps must be >= 0 and g2d.temperature > 0")

    @property
    def decoder_classes(self) -> int:
        """Output channels of the U-Net head: one per pseudo mask (heads without aggregation)."""
        if self.decoder_loss == "pseudo_seg" and self.mask.aggregate == "none":
            return self.heads
        return 1

    @property
    def grid(self) -> int:
        """Side of the last-stage feature map (the attention grid) at ``image_size``."""
        return self.image_size // self.output_stride

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "G2DConfig":
        """Build from a (partial) dict. ``mask`` may be a partial dict, and ``"mask.quantile"``-style
        keys are allowed; both apply over the profile's mask settings. Unknown keys are an error."""
        data = dict(data)
        data.pop("derived", None)  # bookkeeping (present in dataclasses.asdict dumps)
        mask = data.pop("mask", None)
        dotted = {k.split(".", 1)[1]: data.pop(k) for k in list(data) if k.startswith("mask.")}
        known = {f.name for f in fields(cls)} - {"derived"}
        unknown = sorted(set(data) - known)
        if unknown:
            raise G2DBenchError(f"unknown G2D setting(s) {unknown}; known: {', '.join(sorted(known))}")
        if isinstance(mask, PseudoMaskConfig):
            mask = asdict(mask)
        if mask is not None or dotted:
            mask = {**(mask or {}), **dotted}
            base = PseudoMaskConfig.for_profile(data.get("profile", "paper"))
            mask_known = {f.name for f in fields(PseudoMaskConfig)}
            bad = sorted(set(mask) - mask_known)
            if bad:
                raise G2DBenchError(f"unknown mask setting(s) {bad}; known: {', '.join(sorted(mask_known))}")
            mask = replace(base, **mask)
        return cls(**data, mask=mask)


def training_profile(cfg: G2DConfig) -> dict[str, Any]:
    """Optimizer / schedule constants for the pretraining engine, with ``sources`` (key → citation).

    Keys: ``lr``, ``weight_decay``, ``betas``, ``schedule`` ("warmup-cosine" or "cosine-restarts"),
    ``warmup_fraction`` (of all steps), ``warmup_steps`` (0: the fraction applies), ``restart_steps``,
    ``min_lr``, ``epochs``, ``batch_size`` (global), ``gpus``, ``cache_size`` (stored image side),
    ``amp``, ``find_unused_parameters``. ``cfg.scale == "cpu"`` changes batch, lr and epochs only.
    """
    official = cfg.profile == "official"
    src = "official code" if official else "G2D"
    values: dict[str, Any] = dict(
        lr=2e-5 if official else 2e-4, weight_decay=1e-8, betas=(0.9, 0.999),
        schedule="cosine-restarts" if official else "warmup-cosine",
        warmup_fraction=0.0 if official else 0.4, warmup_steps=0, restart_steps=200 if official else 0,
        min_lr=1e-8, epochs=52 if official else 50, batch_size=8 * 64 if official else 16 * 128,
        gpus=8 if official else 16,
        cache_size=cfg.image_size if official else round(cfg.image_size * 256 / 224),
        amp=True, find_unused_parameters=cfg.pa_start_step > 0 and cfg.decoder_loss != "none",
    )
    sources = dict(
        lr=f"{src}: " + ("config.yaml lr 2e-5" if official else "§4.1 2e-4"),
        weight_decay=f"{src}: " + ("config.yaml 1e-8" if official else "§4.1 1e-8"),
        betas="official main.py (0.9, 0.999); G2D A.4 uses the same for every AdamW",
        schedule=f"{src}: " + ("trainer.py CosineAnnealingWarmRestarts per step" if official else "§4.1 linear warm-up + cosine annealing"),
        warmup_fraction="official: none" if official else "MGCA code (warm-up = 40 % of steps); G2D §4.1 trains 'in line with MGCA' and gives no length",
        warmup_steps="0: warmup_fraction applies", restart_steps="official trainer.py T_0=200" if official else "no restarts",
        min_lr="official trainer.py eta_min=1e-8 / MGCA code min_lr 1e-8",
        epochs="official config.yaml max_epochs 51 → range(0, 52) = 52 epochs" if official else "G2D §4.1 50 epochs",
        batch_size="official config.yaml 64 per GPU × 8 GPUs (REFERENCE.md)" if official else "G2D §4.1 128 per GPU × 16 A100",
        gpus="REFERENCE.md" if official else "G2D §4.1",
        cache_size="official dataset.py CenterCrop(256) of the stored image" if official else "G2D A.3 resize 256 (then crop 224)",
        amp="official trainer.py autocast + GradScaler" + ("" if official else " (paper silent)"),
        find_unused_parameters="the decoder is idle before pa_start_step (official trainer.py; official main.py "
                               "also sets find_unused_parameters=True); otherwise every trainable parameter is used",
    )
    if cfg.scale == "cpu":
        values.update(batch_size=64, lr=1e-3, epochs=20)
        sources.update(batch_size="ours: SYNTHCXR.md prototype batch 64", lr="ours: SYNTHCXR.md prototype AdamW 1e-3",
                       epochs="ours: ≈25k image-steps on SynthCXR (SYNTHCXR.md); override with --epochs/--max-steps")
    return {**values, "sources": sources}
