"""The ConVIRT model: a ResNet image encoder and a BERT text encoder, each with a projection head.

Module names follow the MGCA repository's ConVIRT (``mgca/models/convirt/convirt_module.py``,
``mgca/models/backbones/encoder.py``), so ``ConVIRT.state_dict()`` uses its keys:
``img_encoder.model.*`` (torchvision ResNet, ``fc`` = Identity), ``img_encoder.global_embed.head.*``,
``text_encoder.model.*`` (a ``transformers`` BertModel without pooler) and
``text_encoder.global_embed.head.*``. The MGCA encoders' unused ``local_embed`` heads are not built
(ConVIRT never calls them; checkpoint.py drops them from published files).
"""
from __future__ import annotations

import logging
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from g2d_bench.adapter import IMAGENET_MEAN, IMAGENET_STD, Preprocess
from g2d_bench.errors import G2DBenchError
from g2d_bench.methods.convirt.config import ConVIRTConfig
from g2d_bench.methods.convirt.losses import convirt_loss

log = logging.getLogger(__name__)
#: MGCA transforms.py DataTransforms: Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
HALF = (0.5, 0.5, 0.5)


def preprocess_for(cfg: ConVIRTConfig) -> Preprocess:
    """Input preparation tied to the weights: mean/std 0.5 (MGCA) or ImageNet statistics."""
    if cfg.normalization == "imagenet":
        return Preprocess(channels=3, mean=IMAGENET_MEAN, std=IMAGENET_STD, train_size=cfg.image_size)
    return Preprocess(channels=3, mean=HALF, std=HALF, train_size=cfg.image_size)


class ProjectionHead(nn.Module):
    """``head``: the projection to the shared space, ``B×c_in → B×c_out``.

    ``"mgca"`` (MGCA encoder.py ``GlobalEmbedding``): Linear(c_in, hidden) → BatchNorm1d(hidden) →
    ReLU → Linear(hidden, c_out) → BatchNorm1d(c_out, affine=False). The two Linear biases feed a
    BatchNorm: in training the batch mean removes them, so their gradient is zero; they are kept
    (checkpoint layout) and frozen. ``"mlp"`` (ConVIRT paper §3): Linear(c_in, hidden) → ReLU →
    Linear(hidden, c_out). ``hidden`` 0 = ``c_in``.
    """

    def __init__(self, kind: str, c_in: int, hidden: int, c_out: int) -> None:
        super().__init__()
        hidden = hidden or c_in
        if kind == "mgca":
            self.head = nn.Sequential(nn.Linear(c_in, hidden), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True),
                                      nn.Linear(hidden, c_out), nn.BatchNorm1d(c_out, affine=False))
            self.head[0].bias.requires_grad_(False)
            self.head[3].bias.requires_grad_(False)
        elif kind == "mlp":
            self.head = nn.Sequential(nn.Linear(c_in, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, c_out))
        else:
            raise G2DBenchError(f"unknown projection {kind!r} (mgca, mlp)")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


def resnet_width(net: nn.Module) -> int:
    """Channels of a torchvision ResNet's last stage (512 for ResNet-18/34, 2048 for ResNet-50/101)."""
    block = net.layer4[-1]
    return (block.conv3 if hasattr(block, "conv3") else block.conv2).out_channels


class ImageEncoder(nn.Module):
    """``model``: a torchvision ResNet with ``fc`` = Identity; ``global_embed``: its projection head."""

    def __init__(self, cfg: ConVIRTConfig, net: nn.Module) -> None:
        super().__init__()
        self.cfg = cfg
        net.fc = nn.Identity()
        self.model = net
        self.global_embed = ProjectionHead(cfg.projection, resnet_width(net), cfg.proj_hidden, cfg.proj_dim)
        pre = preprocess_for(cfg)
        self.register_buffer("pixel_mean", torch.tensor(pre.mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(pre.std).view(1, 3, 1, 1), persistent=False)

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """``B×1×H×W`` in [0, 1] → ``B×3×H×W`` normalised, resized to ``cfg.upsample_size`` when set
        (official: 299 px, bilinear with aligned corners, MGCA encoder.py ``resnet_forward``)."""
        if images.dim() != 4 or images.shape[1] != 1:
            raise G2DBenchError(f"ConVIRT expects images B×1×H×W in [0, 1], got shape {tuple(images.shape)}")
        x = (images.expand(-1, 3, -1, -1) - self.pixel_mean) / self.pixel_std
        if self.cfg.upsample_size:
            size = self.cfg.upsample_size
            x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=True)
        return x

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """``B×1×H×W`` in [0, 1] → global-average-pooled last stage ``B×C``."""
        return self.model(self.normalize(images))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """``B×1×H×W`` in [0, 1] → projected image embeddings ``B×proj_dim`` (not normalised)."""
        return self.global_embed(self.features(images))


class TextEncoder(nn.Module):
    """``model``: a ``transformers`` BertModel (pooler removed; first ``cfg.text_layers`` layers kept;
    token-type embedding zeroed and frozen when ``cfg.token_types`` is False; embeddings frozen when
    ``cfg.freeze_embeddings``); ``global_embed``: its projection head."""

    def __init__(self, cfg: ConVIRTConfig, bert: nn.Module) -> None:
        super().__init__()
        self.cfg = cfg
        bert.pooler = None  # MGCA encoder.py: add_pooling_layer=False; ConVIRT pools itself
        layers = bert.encoder.layer
        if cfg.text_layers and len(layers) > cfg.text_layers:
            bert.encoder.layer = layers[: cfg.text_layers]
            bert.config.num_hidden_layers = cfg.text_layers  # saved with the text config: reloads alike
        if not cfg.token_types:
            with torch.no_grad():
                bert.embeddings.token_type_embeddings.weight.zero_()
            bert.embeddings.token_type_embeddings.requires_grad_(False)
        if cfg.freeze_embeddings:
            bert.embeddings.requires_grad_(False)
        self.model = bert
        self.global_embed = ProjectionHead(cfg.projection, bert.config.hidden_size, cfg.proj_hidden, cfg.proj_dim)

    def pooled(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token ids ``B×L`` → the report vector ``B×hidden``: [CLS] of ``last_hidden_state`` or the
        max over its non-padding tokens."""
        extra = {"position_ids": torch.zeros_like(input_ids)} if self.cfg.text_positions == "zeros" else {}
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask, **extra).last_hidden_state
        if self.cfg.text_pooling == "cls":
            return hidden[:, 0]
        keep = attention_mask.bool().unsqueeze(-1)
        return hidden.masked_fill(~keep, float("-inf")).amax(dim=1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Token ids ``B×L`` → projected report embeddings ``B×proj_dim`` (not normalised)."""
        return self.global_embed(self.pooled(input_ids, attention_mask))


class ConVIRT(nn.Module):
    """ConVIRT. ``forward(images, input_ids, attention_mask, step, epoch)`` → losses."""

    def __init__(self, cfg: ConVIRTConfig, net: nn.Module, bert: nn.Module, tokenizer) -> None:
        super().__init__()
        self.cfg = cfg
        self.img_encoder = ImageEncoder(cfg, net)
        self.text_encoder = TextEncoder(cfg, bert)
        self.tokenizer = tokenizer

    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Reports → ``{"input_ids", "attention_mask"}`` (B×L long), truncated to
        ``cfg.text_max_length`` and padded to the longest text: padding is masked out of attention
        and of the max pooling, and the [CLS] embedding does not depend on it (MGCA pads to 112)."""
        if self.tokenizer is None:
            raise G2DBenchError("this ConVIRT model has no tokenizer (published weights loaded without text_model); "
                                "pass text_model=<local Bio_ClinicalBERT folder> to encode text")
        enc = self.tokenizer(list(texts), padding="longest", truncation=True, max_length=self.cfg.text_max_length,
                             return_tensors="pt")
        return {"input_ids": enc["input_ids"], "attention_mask": enc["attention_mask"]}

    def embed_image(self, images: torch.Tensor) -> torch.Tensor:
        """``B×1×H×W`` in [0, 1] → ``B×proj_dim`` (not normalised)."""
        return self.img_encoder(images)

    def embed_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """``B×L`` token ids → ``B×proj_dim`` (not normalised)."""
        return self.text_encoder(input_ids, attention_mask)

    def forward(self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                step: int = 0, epoch: int = 0) -> dict[str, torch.Tensor]:
        """``images``: B×1×H×W in [0, 1] (augmented by the engine); ``input_ids``/``attention_mask``:
        B×L from :meth:`tokenize` (``step``/``epoch`` unused). Returns ``loss`` (with graph) and the
        detached ``i2t``, ``t2i`` and ``nce`` (their mean) of :func:`~.losses.convirt_loss`."""
        cfg = self.cfg
        return convirt_loss(self.embed_image(images), self.embed_text(input_ids, attention_mask), cfg.temperature,
                            cfg.i2t_weight, cfg.t2i_weight, cfg.gather)


def build_image_net(cfg: ConVIRTConfig) -> nn.Module:
    """The torchvision ResNet of ``cfg.arch``: random init, or the local weights ``cfg.encoder_weights``."""
    from g2d_bench.methods.common.resnet import load_resnet_weights, make_resnet

    if cfg.encoder_weights:
        net, _ = load_resnet_weights(cfg.encoder_weights, cfg.arch)
        return net
    return make_resnet(cfg.arch)


def build_convirt(cfg: ConVIRTConfig, corpus: Sequence[str] | None = None) -> ConVIRT:
    """A ConVIRT with random projection heads, the image encoder random or from
    ``cfg.encoder_weights``, and the text tower of ``cfg.text_model`` (a scratch BERT needs
    ``corpus``, the training reports). Uses the global torch RNG: seed it for a reproducible model."""
    from g2d_bench.methods.common.text import build_text_tower

    model = ConVIRT(cfg, build_image_net(cfg), *build_text_tower(cfg, corpus))
    log.info("built ConVIRT (%s profile, %s, text %s, %d-d)", cfg.profile, cfg.arch, cfg.text_model, cfg.proj_dim)
    return model


def augmentations(cfg: ConVIRTConfig):
    """The pretraining augmentation: ``1×S×S`` uint8 (or float in [0, 1]) → ``1×s×s`` float in
    [0, 1], ``s = cfg.image_size`` (torchvision v2).

    ``mgca`` (MGCA transforms.py ``DataTransforms(is_train=True)`` after the dataset's 256-px
    resize-with-pad): resize to ``s·256/224`` then a random ``s``-crop, nothing else.
    ``convirt`` (ConVIRT paper §3, image transformation family): random crop of 60–100 % of the area
    (resized to ``s``), horizontal flip p 0.5, affine (±20°, translation 0.1, scale 0.95–1.05),
    brightness and contrast jitter 0.4 (ratios in [0.6, 1.4]), Gaussian blur σ ∈ [0.1, 3.0] (kernel
    ≈ s/10, odd; ours: the paper gives no kernel size).
    """
    from torchvision.transforms import v2

    size = cfg.image_size
    if cfg.augment == "mgca":
        return v2.Compose([v2.Resize(round(size * 256 / 224), antialias=True), v2.RandomCrop(size),
                           v2.ToDtype(torch.float32, scale=True)])
    kernel = max(3, (size // 10) | 1)
    return v2.Compose([
        v2.ToDtype(torch.float32, scale=True),
        v2.RandomResizedCrop(size, scale=(0.6, 1.0), antialias=True),
        v2.RandomHorizontalFlip(0.5),
        v2.RandomAffine(degrees=20, translate=(0.1, 0.1), scale=(0.95, 1.05)),
        v2.ColorJitter(brightness=0.4, contrast=0.4),
        v2.GaussianBlur(kernel, sigma=(0.1, 3.0)),
    ])


def sentence_sampler():
    """``report -> one sentence``, drawn uniformly with torch's global generator (seeded per sample
    by the engine): the ConVIRT paper's text transformation (§3). Sentences are split at ., ! or ?
    followed by whitespace (or the end); a section header ("FINDINGS:") stays with its sentence; a
    report without a sentence is returned unchanged."""
    import re

    splitter = re.compile(r"(?<=[.!?])\s+")

    def sample(report: str) -> str:
        sentences = [s.strip() for s in splitter.split(report or "") if s.strip(" .!?\n\t")]
        if not sentences:
            return report
        return sentences[int(torch.randint(len(sentences), ()))]

    return sample
