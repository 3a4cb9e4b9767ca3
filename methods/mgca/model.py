"""The MGCA model (ResNet variant): image and text encoders with global and local heads, and the
prototype layer.

Attribute names follow the official code (``mgca/models/mgca/mgca_module.py``,
``mgca/models/backbones/encoder.py``), so ``MGCA.state_dict()`` has the released checkpoint's keys:
``img_encoder_q.model.*`` (torchvision ResNet, ``fc`` = Identity), ``img_encoder_q.{global,local}_embed.head.*``,
``text_encoder_q.model.*`` (BERT), ``text_encoder_q.{global,local}_embed.head.*``, ``prototype_layer.weight``.
"""
from __future__ import annotations

import logging
import re
from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from g2d_bench.adapter import Preprocess
from g2d_bench.errors import G2DBenchError
from g2d_bench.methods.mgca.config import MGCAConfig
from g2d_bench.methods.mgca.losses import clipped_weights, instance_loss, prototype_loss, token_loss

log = logging.getLogger(__name__)

#: transforms.py DataTransforms: Normalize((0.5, 0.5, 0.5), (0.5, 0.5, 0.5)) → [-1, 1]
PIXEL_MEAN = (0.5, 0.5, 0.5)
PIXEL_STD = (0.5, 0.5, 0.5)


def preprocess_for(cfg: MGCAConfig) -> Preprocess:
    return Preprocess(channels=3, mean=PIXEL_MEAN, std=PIXEL_STD, train_size=cfg.image_size)


# -- report cleaning ------------------------------------------------------------------------------
_NUMBERED = re.compile(r"[0-9]+\.")
_WORD = re.compile(r"\w+")


def clean_report(text: str) -> str:
    """MGCA's report cleaning (pretrain_dataset.py ``create_path_2_sent_mapping``): newlines → spaces,
    split into sentences at "<n>." and ".", keep each sentence's lower-cased ``\\w+`` tokens (ASCII
    only), drop sentences of one token, join with spaces. If that leaves nothing (a one-word prompt),
    the text's tokens are kept (ours: MGCA drops such studies from training; prompts must not vanish)."""
    text = (text or "").replace("\n", " ")
    sentences = [s for part in _NUMBERED.split(text) for s in part.split(".")]
    kept = []
    for sentence in sentences:
        tokens = _WORD.findall(sentence.replace("\ufffd\ufffd", " ").lower())
        if len(tokens) <= 1:
            continue
        tokens = [t for t in (t.encode("ascii", "ignore").decode("ascii") for t in tokens) if t]
        if tokens:
            kept.append(" ".join(tokens))
    if kept:
        return " ".join(kept)
    return " ".join(t for t in (t.encode("ascii", "ignore").decode("ascii") for t in _WORD.findall(text.lower())) if t)


# -- heads ------------------------------------------------------------------------------------------
class GlobalEmbedding(nn.Module):
    """encoder.py GlobalEmbedding: Linear → BN → ReLU → Linear → BN(affine=False). B×C → B×E."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int) -> None:
        super().__init__()
        self.head = nn.Sequential(nn.Linear(input_dim, hidden_dim), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
                                  nn.Linear(hidden_dim, output_dim), nn.BatchNorm1d(output_dim, affine=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x)


class LocalEmbedding(nn.Module):
    """encoder.py LocalEmbedding: per token conv1×1 → BN → ReLU → conv1×1 → BN(affine=False), the
    BatchNorm statistics over every token of the batch. B×N×C → B×N×E."""

    def __init__(self, input_dim: int, hidden_dim: int, output_dim: int) -> None:
        super().__init__()
        self.head = nn.Sequential(nn.Conv1d(input_dim, hidden_dim, 1), nn.BatchNorm1d(hidden_dim), nn.ReLU(inplace=True),
                                  nn.Conv1d(hidden_dim, output_dim, 1), nn.BatchNorm1d(output_dim, affine=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(x.transpose(1, 2)).transpose(1, 2)


# -- image side ---------------------------------------------------------------------------------------
class ImageEncoder(nn.Module):
    """encoder.py ImageEncoder (ResNet): optional bilinear resize to ``input_size`` (299), the ResNet
    stem and stages; local features = layer3 (module ``local_features``), global = average-pooled
    layer4. ``model``: a torchvision ResNet with ``fc`` = Identity."""

    def __init__(self, model: nn.Module, emb_dim: int, hidden_dim: int, input_size: int = 0) -> None:
        super().__init__()
        self.model = model
        self.input_size = input_size
        width = model.layer4[-1].conv1.in_channels  # layer4 output channels (2048 / 512)
        local_width = model.layer3[-1].conv1.in_channels  # layer3 output channels (1024 / 256)
        self.global_embed = GlobalEmbedding(width, hidden_dim, emb_dim)
        self.local_embed = LocalEmbedding(local_width, hidden_dim, emb_dim)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, tuple[int, int]]:
        """``x``: normalised B×3×H×W → (pooled layer4 B×C4, layer3 tokens B×(h·w)×C3 in row-major
        order, (h, w))."""
        if self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear", align_corners=True)
        net = self.model
        x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        local = net.layer3(net.layer2(net.layer1(x)))
        pooled = net.layer4(local).mean(dim=(2, 3))
        h, w = local.shape[-2:]
        return pooled, local.flatten(2).transpose(1, 2), (h, w)


# -- text side ----------------------------------------------------------------------------------------
class TextEncoder(nn.Module):
    """encoder.py BertEncoder: a BERT, the report feature = last-layer [CLS] state, word features =
    last-layer states of the word pieces summed per word (``aggregate_tokens``), and each word's
    [CLS] attention in the last layer (mean over heads, summed over its pieces)."""

    def __init__(self, model: nn.Module, emb_dim: int, hidden_dim: int, positions: str = "absolute",
                 word_weights: str = "aligned") -> None:
        super().__init__()
        attention = getattr(getattr(getattr(model, "encoder", None), "layer", [None])[-1], "attention", None)
        if attention is None or not hasattr(getattr(attention, "self", None), "query"):
            raise G2DBenchError(f"MGCA needs a BERT-style text model (encoder.layer[-1].attention.self.query); got {type(model).__name__}")
        self.model = model
        self.positions, self.word_weights = positions, word_weights
        width = model.config.hidden_size
        self.global_embed = GlobalEmbedding(width, hidden_dim, emb_dim)
        self.local_embed = LocalEmbedding(width, hidden_dim, emb_dim)

    def cls_attention(self, hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        """Last-layer attention of the [CLS] query to every token, mean over heads, before dropout
        (what med.py's eager attention returns with ``output_attentions=True``), recomputed from the
        last layer's input so that the main forward may use fused attention. ``hidden``: B×L×D
        (input of the last layer) → B×L (0 at padded tokens). No gradient."""
        with torch.no_grad():
            layer = self.model.encoder.layer[-1].attention.self
            b, length, width = hidden.shape
            heads = self.model.config.num_attention_heads
            d = width // heads
            q = layer.query(hidden[:, :1]).view(b, 1, heads, d).transpose(1, 2)
            k = layer.key(hidden).view(b, length, heads, d).transpose(1, 2)
            scores = (q @ k.transpose(-1, -2)).float() / d ** 0.5  # B×heads×1×L
            scores = scores.masked_fill(~attention_mask.bool()[:, None, None, :], float("-inf"))
            return scores.softmax(dim=-1)[:, :, 0].mean(dim=1)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, word_index: torch.Tensor) -> dict:
        """``input_ids``, ``attention_mask``, ``word_index``: B×L (``word_index`` = the word slot of
        each token: [CLS] 0, words 1…, [SEP] its own slot, padding −1; :meth:`MGCA.tokenize`) →
        ``report`` B×D, ``words`` B×(L−1)×D (zeros at padded slots), ``word_attention`` B×(L−1) and
        ``word_padding`` B×(L−1) bool."""
        positions = torch.zeros_like(input_ids) if self.positions == "zeros" else None
        out = self.model(input_ids=input_ids, attention_mask=attention_mask, position_ids=positions,
                         output_hidden_states=True)
        hidden = out.last_hidden_state
        attention = self.cls_attention(out.hidden_states[-2], attention_mask)
        if self.word_weights == "shifted":  # token t gets token t+1's attention (encoder.py aggregate_tokens)
            attention = torch.cat([attention[:, 1:], attention.new_zeros(attention.shape[0], 1)], dim=1)
        b, length, width = hidden.shape
        valid = word_index >= 0
        slot = word_index.clamp_min(0)
        words = torch.zeros_like(hidden).scatter_add(1, slot[..., None].expand(-1, -1, width), hidden * valid[..., None].to(hidden.dtype))
        attn = torch.zeros_like(attention).scatter_add(1, slot, attention * valid.to(attention.dtype))
        count = word_index.max(dim=1).values + 1  # slots in use, [CLS] included
        padding = torch.arange(1, length, device=word_index.device)[None, :] >= count[:, None]
        return {"report": hidden[:, 0], "words": words[:, 1:], "word_attention": attn[:, 1:], "word_padding": padding}


def continuation_table(tokenizer) -> torch.Tensor:
    """Bool per vocabulary id: the token is a word-piece continuation (``##…``), as encoder.py's
    ``aggregate_tokens`` tests."""
    tokens = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    return torch.tensor([str(t).startswith("##") for t in tokens], dtype=torch.bool)


def word_slots(input_ids: torch.Tensor, attention_mask: torch.Tensor, continuation: torch.Tensor) -> torch.Tensor:
    """The word slot of every token (encoder.py ``aggregate_tokens``): a token that is not a ``##``
    continuation opens a slot ([CLS] = slot 0, [SEP] its own), continuations join the open one,
    padding gets −1. ``input_ids``, ``attention_mask``: B×L → B×L long."""
    valid = attention_mask.bool()
    starts = valid & ~continuation[input_ids.clamp(0, len(continuation) - 1)]
    starts[:, 0] = valid[:, 0]
    slots = starts.long().cumsum(dim=1) - 1
    return slots.masked_fill(~valid, -1)


# -- the model --------------------------------------------------------------------------------------
class MGCA(nn.Module):
    """MGCA (NeurIPS 2022), ResNet variant. ``forward(images, input_ids, attention_mask, word_index,
    step, epoch)`` → losses."""

    def __init__(self, cfg: MGCAConfig, resnet: nn.Module, text_model: nn.Module, tokenizer) -> None:
        super().__init__()
        self.cfg = cfg
        self.img_encoder_q = ImageEncoder(resnet, cfg.emb_dim, cfg.hidden_dim, cfg.encoder_input_size)
        self.text_encoder_q = TextEncoder(text_model, cfg.emb_dim, cfg.hidden_dim, cfg.text_positions, cfg.word_weights)
        self.prototype_layer = nn.Linear(cfg.emb_dim, cfg.num_prototypes, bias=False)  # module prototype_layer
        self.tokenizer = tokenizer
        self._continuation = continuation_table(tokenizer)
        self.register_buffer("pixel_mean", torch.tensor(PIXEL_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("pixel_std", torch.tensor(PIXEL_STD).view(1, 3, 1, 1), persistent=False)

    # -- inputs ------------------------------------------------------------------------------------
    def tokenize(self, texts: Sequence[str]) -> dict[str, torch.Tensor]:
        """Reports → ``input_ids``, ``attention_mask`` and ``word_index`` (B×L long; :func:`word_slots`),
        everything :meth:`forward` needs. Cleaned as MGCA does (``cfg.text_cleaning``), truncated to
        ``cfg.text_max_length`` (112), padded per ``cfg.text_padding`` in training (pad words are
        negatives of the token loss) and to the longest text in eval mode."""
        if self.cfg.text_cleaning == "mgca":
            texts = [clean_report(t) for t in texts]
        padding = self.cfg.text_padding if self.training else "longest"
        enc = self.tokenizer(list(texts), padding=padding, truncation=True, max_length=self.cfg.text_max_length,
                             return_tensors="pt")
        ids, mask = enc["input_ids"], enc["attention_mask"]
        return {"input_ids": ids, "attention_mask": mask, "word_index": word_slots(ids, mask, self._continuation)}

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """``B×1×H×W`` in [0, 1] → ``B×3×H×W`` in [−1, 1] (gray replicated)."""
        if images.dim() != 4 or images.shape[1] != 1:
            raise G2DBenchError(f"MGCA expects images B×1×H×W in [0, 1], got shape {tuple(images.shape)}")
        return (images.expand(-1, 3, -1, -1) - self.pixel_mean) / self.pixel_std

    # -- towers ------------------------------------------------------------------------------------
    def encode_image(self, images: torch.Tensor) -> dict:
        """``images``: B×1×H×W in [0, 1] → ``global`` B×E and ``patches`` B×P×E (L2-normalised), ``grid`` (h, w)."""
        pooled, local, grid = self.img_encoder_q(self.normalize(images))
        return {"global": F.normalize(self.img_encoder_q.global_embed(pooled), dim=-1),
                "patches": F.normalize(self.img_encoder_q.local_embed(local), dim=-1), "grid": grid}

    def encode_text(self, input_ids: torch.Tensor, attention_mask: torch.Tensor, word_index: torch.Tensor) -> dict:
        """Tokens B×L → ``global`` B×E and ``words`` B×(L−1)×E (L2-normalised), ``word_attention``
        (B×(L−1), [CLS] attention per word slot) and ``word_padding`` (B×(L−1) bool)."""
        out = self.text_encoder_q(input_ids, attention_mask, word_index)
        return {"global": F.normalize(self.text_encoder_q.global_embed(out["report"]), dim=-1),
                "words": F.normalize(self.text_encoder_q.local_embed(out["words"]), dim=-1),
                "word_attention": out["word_attention"], "word_padding": out["word_padding"]}

    def normalize_prototypes(self) -> None:
        """L2-normalise the prototype rows in place (module forward, every step)."""
        with torch.no_grad():
            self.prototype_layer.weight.copy_(F.normalize(self.prototype_layer.weight, dim=1))

    # -- training ----------------------------------------------------------------------------------
    def forward(self, images: torch.Tensor, input_ids: torch.Tensor, attention_mask: torch.Tensor,
                word_index: torch.Tensor, step: int = 0, epoch: int = 0) -> dict[str, torch.Tensor]:
        """``images``: B×1×H×W in [0, 1]; tokens from :meth:`tokenize`; ``step``/``epoch`` unused (the
        prototype freeze is the recipe's ``after_backward`` hook). Returns ``loss`` = λ1·instance +
        λ2·token + λ3·proto (with graph) and detached ``instance`` (sum of both directions),
        ``instance_mean`` (their mean: ln(batch) when collapsed), ``token``, ``token_word``,
        ``token_patch``, ``proto``, ``i2t_acc1``."""
        cfg = self.cfg
        img = self.encode_image(images)
        txt = self.encode_text(input_ids, attention_mask, word_index)
        instance = instance_loss(img["global"], txt["global"], cfg.temperature, cfg.gather)
        weights = clipped_weights(txt["word_attention"], cfg.weight_quantiles)
        word_side, patch_side = token_loss(txt["words"], img["patches"], weights, txt["word_padding"],
                                           cfg.local_temperature, cfg.bidirectional)
        token = word_side + patch_side
        self.normalize_prototypes()
        proto, _, _ = prototype_loss(self.prototype_layer(img["global"]), self.prototype_layer(txt["global"]),
                                     cfg.proto_temperature, cfg.epsilon, cfg.sinkhorn_iterations)
        l1, l2, l3 = cfg.lambdas
        loss = l1 * instance + l2 * token + l3 * proto
        with torch.no_grad():
            hits = (img["global"] @ txt["global"].T).argmax(dim=1) == torch.arange(images.shape[0], device=images.device)
        return {"loss": loss, "instance": instance.detach(), "instance_mean": instance.detach() / 2,
                "token": token.detach(), "token_word": word_side.detach(), "token_patch": patch_side.detach(),
                "proto": proto.detach(), "i2t_acc1": hits.float().mean()}


# -- building -----------------------------------------------------------------------------------------
def make_image_backbone(cfg: MGCAConfig) -> nn.Module:
    """A torchvision ResNet (``fc`` = Identity, as cnn_backbones.py), optionally from local weights."""
    from g2d_bench.methods.common.resnet import RESNETS, load_resnet_weights, make_resnet

    if cfg.arch not in RESNETS:
        raise G2DBenchError(f"MGCA arch {cfg.arch!r} is not supported; choose one of {', '.join(RESNETS)}")
    if cfg.encoder_weights:
        net, _ = load_resnet_weights(cfg.encoder_weights, cfg.arch)
        return net
    net = make_resnet(cfg.arch)
    net.fc = nn.Identity()
    return net


def keep_layers(text_model: nn.Module, layers: int) -> None:
    """Keep the first ``layers`` encoder layers (bert_config.json num_hidden_layers=6 on
    Bio_ClinicalBERT); 0 keeps all."""
    stack = text_model.encoder.layer
    if not layers or layers >= len(stack):
        return
    text_model.encoder.layer = stack[:layers]
    text_model.config.num_hidden_layers = layers


def build_mgca(cfg: MGCAConfig, corpus: Sequence[str] | None = None) -> MGCA:
    """A randomly initialised MGCA (the text tower pretrained when ``cfg.text_model`` names one; a
    scratch BERT trained on ``corpus``, cleaned as the reports will be). Uses the global torch RNG."""
    from g2d_bench.methods.common.text import build_text_tower

    if corpus is not None and cfg.text_cleaning == "mgca":
        corpus = [clean_report(t) for t in corpus]
    text_model, tokenizer = build_text_tower(cfg, corpus)
    keep_layers(text_model, cfg.text_layers)
    model = MGCA(cfg, make_image_backbone(cfg), text_model, tokenizer)
    log.info("built MGCA (%s profile, %s, text %s, %d prototypes)", cfg.profile, cfg.arch, cfg.text_model, cfg.num_prototypes)
    return model


def augmentations(cfg: MGCAConfig):
    """Pretraining augmentation, ``1×S×S`` uint8 → ``1×s×s`` float in [0, 1] (``s = cfg.image_size``):
    resize to ``s·256/224`` (the cache's side: pretrain_dataset.py resizes with padding to 256) and
    a random ``s`` crop (transforms.py DataTransforms RandomCrop(224)); no other augmentation."""
    from torchvision.transforms import v2

    size = cfg.image_size
    return v2.Compose([v2.Resize(round(size * 256 / 224), antialias=True), v2.RandomCrop(size),
                       v2.ToDtype(torch.float32, scale=True)])
