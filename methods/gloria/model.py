"""The GLoRIA model: a ResNet with a global and a local embedder, a BERT whose last layers give word
and report features, and the global + local losses (losses.py).

Attribute names follow the official code (``gloria/models/gloria_model.py``, ``vision_model.py``,
``text_model.py``): ``img_encoder.model`` (torchvision ResNet, ``fc`` = identity),
``img_encoder.global_embedder`` (Linear 2048 → 768), ``img_encoder.local_embedder`` (1×1 conv
1024 → 768, no bias), ``text_encoder.model`` (BERT), so ``GLoRIA.state_dict()`` holds the published
checkpoint's keys without their ``gloria.`` prefix (checkpoint.py). The embedding width is the BERT
hidden size (the official text side has no projection: ``emb_global``/``emb_local`` are None); at
CPU scale the widths follow ResNet-18 (layer3 256, layer4 512) and the scratch BERT (128).
"""
from __future__ import annotations

import logging
from typing import Sequence

import torch
from torch import nn

from g2d_bench.adapter import Preprocess
from g2d_bench.errors import G2DBenchError
from g2d_bench.methods.gloria.config import GLoRIAConfig
from g2d_bench.methods.gloria.losses import global_loss, local_loss

log = logging.getLogger(__name__)


def preprocess_for(cfg: GLoRIAConfig) -> Preprocess:
    """How images are prepared for these weights (official config ``transforms.norm``)."""
    mean, std = cfg.image_mean_std
    return Preprocess(channels=3, mean=mean, std=std, train_size=cfg.image_size)


class ImageEncoder(nn.Module):
    """ResNet + embedders (official ``ImageEncoder``): ``model`` is a torchvision ResNet without its
    classifier; ``global_embedder`` maps the pooled layer4 features, ``local_embedder`` the layer3 map."""

    def __init__(self, arch: str, embed_dim: int) -> None:
        super().__init__()
        from g2d_bench.methods.common.resnet import make_resnet

        self.model = make_resnet(arch)
        feature_dim = self.model.fc.in_features
        # the width of layer3's output is the input width of layer4 (1024 for ResNet-50, 256 for ResNet-18)
        local_dim = self.model.layer4[0].conv1.in_channels
        self.model.fc = nn.Identity()
        self.global_embedder = nn.Linear(feature_dim, embed_dim)  # official vision_model.py
        self.local_embedder = nn.Conv2d(local_dim, embed_dim, kernel_size=1, bias=False)  # official: 1×1, no bias

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised ``B×3×H×W`` → (global embedding ``B×E``, local embeddings ``B×E×h×w``, h = H/16)."""
        net = self.model
        x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        local = net.layer3(net.layer2(net.layer1(x)))
        pooled = net.layer4(local).mean(dim=(2, 3))  # official: AdaptiveAvgPool2d(1) + flatten
        return self.global_embedder(pooled), self.local_embedder(local)


class TextEncoder(nn.Module):
    """The BERT of the official ``BertEncoder`` (``model``); word and report features are computed
    by :meth:`GLoRIA.encode_text`."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model


def aggregate_words(hidden: torch.Tensor, word_index: torch.Tensor) -> torch.Tensor:
    """Sum token features into word slots: ``hidden`` ``B×L×D``, ``word_index`` ``B×L`` (slot of each
    token, −1 = none) → ``B×L×D`` with slot s holding the sum of its tokens (zeros for unused slots)."""
    b, length, dim = hidden.shape
    index = torch.where(word_index < 0, torch.full_like(word_index, length), word_index)
    out = hidden.new_zeros(b, length + 1, dim).scatter_add_(1, index[..., None].expand(-1, -1, dim), hidden)
    return out[:, :length]


class GLoRIA(nn.Module):
    """GLoRIA. ``forward(images, input_ids, attention_mask, word_index, num_words, step, epoch)`` → losses."""

    def __init__(self, cfg: GLoRIAConfig, img_encoder: ImageEncoder, text_model: nn.Module, tokenizer) -> None:
        super().__init__()
        self.cfg = cfg
        self.img_encoder = img_encoder
        self.text_encoder = TextEncoder(text_model)
        self.tokenizer = tokenizer
        width = text_model.config.hidden_size
        if img_encoder.global_embedder.out_features != width:
            raise G2DBenchError(f"GLoRIA image embedding width {img_encoder.global_embedder.out_features} differs from the "
                                f"text hidden size {width}; the official text side has no projection, so they must match")
        mean, std = cfg.image_mean_std
        self.register_buffer("pixel_mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    @property
    def embed_dim(self) -> int:
        return self.img_encoder.global_embedder.out_features

    # -- inputs ------------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Captions → ``input_ids``, ``attention_mask``, ``word_index`` (``B×L`` long: the word slot of
        each token, −1 after [SEP]; captions.word_slots) and ``num_words`` (``B``: the caption's words,
        official ``cap_lens`` − 1), truncated at ``cfg.text_max_length`` (official ``word_num`` 97).
        Padded to the longest caption: the official code pads to ``word_num``, which changes nothing
        but cost (attention masks the padding; the report feature's 1/L factor cancels in the cosine)."""
        from g2d_bench.methods.gloria.captions import word_slots

        enc = self.tokenizer(list(texts), padding="longest", truncation=True, max_length=self.cfg.text_max_length,
                             return_tensors="pt")
        ids, mask = enc["input_ids"], enc["attention_mask"]
        sep = self.tokenizer.sep_token or "[SEP]"
        rows = [word_slots(self.tokenizer.convert_ids_to_tokens(row), int(n), self.cfg.aggregate_word_pieces, sep)
                for row, n in zip(ids.tolist(), mask.sum(dim=1).tolist())]
        return {"input_ids": ids, "attention_mask": mask,
                "word_index": torch.tensor([slots for slots, _ in rows], dtype=torch.long).view_as(ids),
                "num_words": torch.tensor([n for _, n in rows], dtype=torch.long)}

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """``B×1×H×W`` in [0, 1] → ``B×3×H'×W'`` normalised (gray replicated), resized to
        ``cfg.input_resize`` when set (official ``resnet_forward``: bilinear, align_corners=True)."""
        if images.dim() != 4 or images.shape[1] != 1:
            raise G2DBenchError(f"GLoRIA expects images B×1×H×W in [0, 1], got shape {tuple(images.shape)}")
        x = (images.expand(-1, 3, -1, -1) - self.pixel_mean) / self.pixel_std
        if self.cfg.input_resize:
            size = (self.cfg.input_resize, self.cfg.input_resize)
            x = nn.functional.interpolate(x, size=size, mode="bilinear", align_corners=True)
        return x

    # -- towers ------------------------------------------------------------------------------------
    def encode_image(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        """``images``: ``B×1×H×W`` in [0, 1] → ``global`` (``B×E``) and ``local`` (``B×E×h×w``)
        embeddings, not normalised."""
        global_emb, local_emb = self.img_encoder(self.normalize(images))
        return {"global": global_emb, "local": local_emb}

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                    word_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Token ids ``B×L`` → (word features ``B×L×E``: slot 0 [CLS], then the words, [SEP], zeros;
        report features ``B×E``), not normalised.

        The last ``cfg.last_n_layers`` hidden states are combined (sum; official ``aggregate_method``)
        and word pieces summed per word (official ``aggregate_tokens``; both sums are linear, so the
        order does not matter). The report feature is the mean over the L word slots (official:
        ``embeddings.mean(axis=2)`` before the layer sum, padding slots included)."""
        out = self.text_encoder.model(input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True)
        layers = torch.stack(out.hidden_states[-self.cfg.last_n_layers:], dim=1)  # B×n×L×E
        hidden = layers.sum(dim=1) if self.cfg.layer_aggregate == "sum" else layers.mean(dim=1)
        words = aggregate_words(hidden, word_index)
        return words, words.mean(dim=1)

    # -- training ----------------------------------------------------------------------------------
    def forward(self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                word_index: torch.Tensor, num_words: torch.Tensor, step: int = 0, epoch: int = 0) -> dict[str, torch.Tensor]:
        """``images``: ``B×1×H×W`` in [0, 1]; the rest from :meth:`tokenize` (``step``/``epoch`` unused).

        ``loss`` = local_loss_weight·(local i→t + local t→i) + global_loss_weight·(global i→t +
        global t→i) (official ``calc_loss``), with graph; detached: ``global`` and ``local`` (the mean
        of each loss's two directions: ln(batch) when collapsed), the four directional terms."""
        cfg = self.cfg
        image = self.encode_image(images)
        words, report = self.encode_text(input_ids, attention_mask, word_index)
        glob = global_loss(image["global"], report, cfg.temp3, cfg.gather)
        loc = local_loss(image["local"], words, num_words, cfg.temp1, cfg.temp2, cfg.temp3, cfg.local_agg,
                         cfg.attention, cfg.gather, pad_to=cfg.text_max_length)
        loss = cfg.local_loss_weight * loc.sum() + cfg.global_loss_weight * glob.sum()
        g, lo = glob.detach(), loc.detach()
        return {"loss": loss, "global": g.mean(), "local": lo.mean(), "global_i2t": g[0], "global_t2i": g[1],
                "local_i2t": lo[0], "local_t2i": lo[1]}


def build_image_encoder(cfg: GLoRIAConfig, embed_dim: int) -> ImageEncoder:
    """The image tower, optionally from local torchvision ResNet weights (``cfg.encoder_weights``)."""
    from g2d_bench.methods.common.resnet import load_resnet_weights

    encoder = ImageEncoder(cfg.arch, embed_dim)
    if cfg.encoder_weights:
        net, _ = load_resnet_weights(cfg.encoder_weights, cfg.arch)
        encoder.model.load_state_dict(net.state_dict(), strict=True)
    return encoder


def build_gloria(cfg: GLoRIAConfig, corpus: Sequence[str] | None = None) -> GLoRIA:
    """A randomly initialised GLoRIA (the text tower pretrained when ``cfg.text_model`` names one;
    ``corpus``: report texts for ``text_model="scratch"``). Uses the global torch RNG."""
    from g2d_bench.methods.common.text import build_text_tower

    text_model, tokenizer = build_text_tower(cfg, corpus)
    model = GLoRIA(cfg, build_image_encoder(cfg, text_model.config.hidden_size), text_model, tokenizer)
    log.info("built GLoRIA (%s profile, %s, embedding %d, text %s)", cfg.profile, cfg.arch, model.embed_dim, cfg.text_model)
    return model


def augmentations(cfg: GLoRIAConfig):
    """The pretraining augmentation: ``1×S×S`` uint8 → ``1×s×s`` float in [0, 1], ``s = cfg.image_size``:
    resize to 256/224·s (official imsize 256; the cache stores that size already) and a random
    ``s``-crop (official config ``random_crop.crop_size`` 224; no other augmentation is configured)."""
    from torchvision.transforms import v2

    size = cfg.image_size
    return v2.Compose([v2.Resize(round(size * 256 / 224), antialias=True), v2.RandomCrop(size),
                       v2.ToDtype(torch.float32, scale=True)])
