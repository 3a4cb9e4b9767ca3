"""The G2D model: U-Net image encoder–decoder, attention-pooled projections, text tower, losses.

Attribute names follow the official checkpoint layout (``img_model``, ``proj_v``, ``attnpool``,
``lm_model``, ``proj_t``), so ``G2D.state_dict()`` has the official keys (checkpoint.py).
"""
from __future__ import annotations

import logging
import math
from typing import Sequence

import torch
from torch import nn

from g2d_bench.adapter import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from g2d_bench.errors import G2DBenchError
from g2d_bench.methods.g2d.attnpool import AttentionPool2d
from g2d_bench.methods.g2d.config import G2DConfig
from g2d_bench.methods.g2d.losses import pa_loss, reconstruction_loss, vla_loss
from g2d_bench.methods.g2d.pseudo_mask import build_pseudo_masks

log = logging.getLogger(__name__)


def preprocess_for(cfg: G2DConfig) -> Preprocess:
    """Input preparation tied to the weights: [0, 1] (paper A.3) or ImageNet mean/std (official)."""
    if cfg.normalization == "imagenet":
        return Preprocess(channels=3, mean=IMAGENET_MEAN, std=IMAGENET_STD, train_size=cfg.image_size)
    return Preprocess(channels=3, mean=None, std=None, train_size=cfg.image_size)


def _projector(conv: type[nn.Module], bn: type[nn.Module], c_in: int, hidden: int, out: int) -> nn.Sequential:
    """conv1x1 (no bias) → BN (affine=False) → ReLU → conv1x1 (no bias): official proj_v / proj_t."""
    return nn.Sequential(conv(c_in, hidden, 1, bias=False), bn(hidden, affine=False),
                         nn.ReLU(inplace=True), conv(hidden, out, 1, bias=False))


class G2D(nn.Module):
    """G2D (NeurIPS 2024). ``forward(images, input_ids, attention_mask, step)`` → losses."""

    def __init__(self, cfg: G2DConfig, img_model: nn.Module, lm_model: nn.Module, tokenizer) -> None:
        super().__init__()
        self.cfg = cfg
        self.img_model = img_model
        self.proj_v = _projector(nn.Conv2d, nn.BatchNorm2d, img_model.encoder.out_channels[-1],
                                 cfg.proj_hidden, cfg.proj_dim)
        self.attnpool = AttentionPool2d(cfg.grid, cfg.proj_dim, cfg.heads, cfg.head_dim, cfg.proj_dim)
        self.lm_model = lm_model
        self.proj_t = _projector(nn.Conv1d, nn.BatchNorm1d, lm_model.config.hidden_size,
                                 cfg.proj_hidden, cfg.proj_dim)
        self.tokenizer = tokenizer
        pre = preprocess_for(cfg)
        mean, std = (pre.mean or (0.0,) * 3), (pre.std or (1.0,) * 3)
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    # -- inputs ------------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Reports → ``{"input_ids", "attention_mask"}`` (B×L long), truncated to
        ``cfg.text_max_length`` (official code: 256); padded per ``cfg.text_padding`` in training
        and to the longest text in eval mode (official ``_tokenize``; BatchNorm then uses running
        statistics, so padding does not change the embedding)."""
        padding = self.cfg.text_padding if self.training else "longest"
        enc = self.tokenizer(list(texts), padding=padding, truncation=True,
                             max_length=self.cfg.text_max_length, return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """``B×1×H×W`` in [0, 1] → ``B×3×H×W`` as the encoder expects (gray replicated)."""
        if images.dim() != 4 or images.shape[1] != 1:
            raise G2DBenchError(f"G2D expects images B×1×H×W in [0, 1], got shape {tuple(images.shape)}")
        if images.shape[-1] % 32 or images.shape[-2] % 32:
            raise G2DBenchError(f"G2D image sides must be multiples of 32 (U-Net stride), got {tuple(images.shape[-2:])}")
        return (images.expand(-1, 3, -1, -1) - self.pixel_mean) / self.pixel_std

    # -- towers ------------------------------------------------------------------------------------
    def encode_image(self, images: torch.Tensor) -> dict:
        """``images``: B×1×H×W in [0, 1] → ``features`` (the U-Net encoder's list), ``dense``
        (projected V, B×E×h×w), ``global`` (attention-pooled, B×E, not normalised) and
        ``attention`` (B×heads×h×w)."""
        features = self.img_model.encoder(self.normalize(images))
        dense = self.proj_v(features[-1])
        pooled, attention = self.attnpool(dense)
        return {"features": features, "dense": dense, "global": pooled, "attention": attention}

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token ids B×L → L2-normalised text embedding B×E: the projected [CLS] of the
        per-token projection of ``last_hidden_state``."""
        hidden = self.lm_model(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        tokens = self.proj_t(hidden.transpose(1, 2))  # B×E×L; BN statistics over all tokens (official)
        return nn.functional.normalize(tokens[:, :, 0], dim=-1)

    def decode(self, features: list[torch.Tensor]) -> torch.Tensor:
        """U-Net decoder + head: logits B×K×H×W at input resolution."""
        return self.img_model.segmentation_head(self.img_model.decoder(features))

    # -- training ----------------------------------------------------------------------------------
    def decoder_objective(self, images: torch.Tensor, image_out: dict) -> tuple[torch.Tensor, dict]:
        """The PA term (Table 5c: pseudo segmentation, reconstruction or none) and diagnostics."""
        cfg = self.cfg
        if cfg.decoder_loss == "none":
            return images.new_zeros(()), {}
        logits = self.decode(image_out["features"])
        if cfg.decoder_loss == "reconstruction":
            return reconstruction_loss(logits, images), {}
        masks = build_pseudo_masks(image_out["attention"], images, cfg.mask)
        diag = {"pseudo_mask_fraction": masks.target.mean()}
        if masks.body is not None:
            diag["body_fraction"] = masks.body.float().mean()
        return pa_loss(logits, masks.target.to(logits.device), cfg.pa_loss), diag

    def forward(self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                step: int = 0, epoch: int = 0) -> dict[str, torch.Tensor]:
        """``images``: B×1×H×W in [0, 1] (augmented by the engine); ``input_ids``/``attention_mask``:
        B×L from :meth:`tokenize`; ``step``: optimizer steps taken (``epoch`` is unused). Returns ``loss`` (VLA + PA, with
        graph), detached ``vla``, ``pa``, ``pa_active`` and diagnostics. Before
        ``cfg.pa_start_step`` (official: 200) the decoder still runs and PA is computed (and
        reported), but left out of ``loss``, as in the official ``trainer.py`` (``loss =
        global_loss`` while ``global_step < 200``): the decoder's BatchNorm statistics move, its
        weights get no gradient (DDP then needs ``find_unused_parameters``; :func:`training_profile`
        says so)."""
        cfg = self.cfg
        image_out = self.encode_image(images)
        txt = self.encode_text(input_ids, attention_mask)
        vla = vla_loss(image_out["global"], txt, cfg.temperature, cfg.vla_reduction, cfg.gather)
        active = step >= cfg.pa_start_step
        pa, diag = self.decoder_objective(images, image_out)
        loss = vla + pa if active else vla
        out = {"loss": loss, "vla": vla.detach(), "pa": pa.detach(), "pa_active": vla.new_tensor(float(active)),
               "attention_entropy": attention_entropy(image_out["attention"])}
        out.update({k: v.detach() for k, v in diag.items()})
        return out


def attention_entropy(attention: torch.Tensor) -> torch.Tensor:
    """How spread the head-aggregated pixel attention is, a diagnostic for the pretraining log: the
    entropy of its renormalised ``h×w`` weights over ``ln(h·w)``, averaged over the batch — 1 for
    uniform attention, 0 for all weight on one pixel. ``attention``: B×heads×h×w."""
    with torch.no_grad():
        weights = attention.detach().float().mean(dim=1).flatten(1)
        if weights.shape[1] < 2:
            return weights.new_zeros(())
        p = weights / weights.sum(dim=1, keepdim=True)
        return (-(p * p.clamp_min(1e-12).log()).sum(dim=1) / math.log(p.shape[1])).mean()


def build_g2d(cfg: G2DConfig, corpus: Sequence[str] | None = None) -> G2D:
    """A randomly initialised G2D (the text tower pretrained when ``cfg.text_model`` names one).

    ``corpus``: the report texts, needed for ``text_model="scratch"`` (WordPiece vocabulary).
    Uses the global torch RNG: seed it for a reproducible initialisation.
    """
    from g2d_bench.methods.common.text import build_text_tower

    model = G2D(cfg, build_image_model(cfg), *build_text_tower(cfg, corpus))
    log.info("built G2D (%s profile, %s, %d heads, text %s)", cfg.profile, cfg.arch, cfg.heads, cfg.text_model)
    return model


def build_image_model(cfg: G2DConfig) -> nn.Module:
    """``smp.Unet(arch, classes=cfg.decoder_classes)`` (decoder 256,128,64,32,16, smp default),
    optionally starting from local torchvision ResNet weights (``cfg.encoder_weights``), its last
    stage dilated when ``cfg.output_stride == 16`` (same weights, a finer map). With
    ``decoder_loss="none"`` the decoder is frozen (it is never run)."""
    import segmentation_models_pytorch as smp

    from g2d_bench.methods.common.resnet import RESNETS, load_resnet_weights

    if cfg.arch not in RESNETS:
        raise G2DBenchError(f"G2D arch {cfg.arch!r} is not supported; choose one of {', '.join(RESNETS)}")
    unet = smp.Unet(cfg.arch, encoder_weights=None, classes=cfg.decoder_classes)
    if cfg.encoder_weights:
        net, _ = load_resnet_weights(cfg.encoder_weights, cfg.arch)
        unet.encoder.load_state_dict(net.state_dict())
    if cfg.output_stride != 32:
        unet.encoder.make_dilated(cfg.output_stride)  # smp: strides → dilations in the last stage
    if cfg.decoder_loss == "none":
        unet.decoder.requires_grad_(False)
        unet.segmentation_head.requires_grad_(False)
    return unet


def augmentations(cfg: G2DConfig):
    """The pretraining augmentation: ``1×S×S`` uint8 (or float in [0, 1]) → ``1×s×s`` float in
    [0, 1], ``s = cfg.image_size`` (torchvision v2).

    paper (A.3): resize 256 → centre-crop 224 (scaled by ``image_size/224``), then random
    grayscale, random perspective and random autocontrast "using the PyTorch vision library"
    (parameters not given: torchvision defaults; grayscale is a no-op on one channel).
    official (dataset.py): centre-crop 256 (``image_size``; we resize first, as the cache may store
    another size), RandomAffine(15°, shear 15), ColorJitter(brightness 0.2, contrast 0.2).
    """
    from torchvision.transforms import v2

    size = cfg.image_size
    if cfg.profile == "official":
        geometry, jitter = [v2.Resize(size, antialias=True), v2.CenterCrop(size)], [
            v2.RandomAffine(degrees=15, shear=15), v2.ColorJitter(brightness=0.2, contrast=0.2)]
    else:
        geometry, jitter = [v2.Resize(round(size * 256 / 224), antialias=True), v2.CenterCrop(size)], [
            v2.RandomGrayscale(), v2.RandomPerspective(), v2.RandomAutocontrast()]
    return v2.Compose([*geometry, v2.ToDtype(torch.float32, scale=True), *jitter])
