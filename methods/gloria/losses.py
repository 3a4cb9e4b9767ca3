"""GLoRIA's losses and matching scores (Huang et al. 2021 §3; official ``gloria/loss/gloria_loss.py``
and ``gloria/models/gloria_model.py``, read for the facts, not copied).

- Word→region attention (:func:`attention_fn`): ``two-softmax`` as the official ``attention_fn`` —
  the word·region dot products are soft-maxed over the caption's words for each region, then scaled
  by ``temp1`` (4) and soft-maxed over the regions for each word, so each word's attention sums to 1
  over the region grid; ``one-softmax`` soft-maxes ``temp1``·word·region over the regions only.
  The attended context of a word is its attention-weighted sum of region features.
- Local matching score of image j and caption i (:func:`local_scores`):
  ``Z = log Σ_w exp(temp2 · cos(word_w, context_w))`` over the caption's word slice (``agg="sum"``;
  ``"mean"`` divides the sum by the number of words), temp2 = 5. In training the slice is [CLS]
  followed by the caption's words (official ``cap_lens`` = words + 1, slice ``[:cap_len]``, so [SEP]
  and padding are out). :func:`local_max_scores` is the official inference-time score
  (``get_local_similarities``): the words without [CLS], aggregated with a max, i.e.
  ``max_w temp2 · cos`` — the ``zero_shot_local`` setting picks one for zero-shot scoring.
- Local loss: ``temp3 · Z`` (temp3 = 10) as logits, cross-entropy image→text (rows) and text→image.
- Global loss: ``temp3 · cos(image, report)`` as logits, cross-entropy in both directions.

Every loss returns its two directions as a 2-vector (image→text, text→image), each a mean over the
batch rows; the model weights their sums (official ``calc_loss``). :func:`local_loss` and
:func:`global_loss` take the negatives from every rank (``gather="all"``, DDP-exact through
:func:`g2d_bench.methods.common.contrastive.global_batch`) or from the local batch (``"local"``,
official code). Scores are computed in float32 (autocast off).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from g2d_bench.errors import G2DBenchError
from g2d_bench.methods.common.contrastive import global_batch, world

#: official gloria_loss.py cosine_similarity: the product of the norms is clamped at 1e-8
COSINE_EPS = 1e-8


def cosine(a: torch.Tensor, b: torch.Tensor, dim: int = -1, eps: float = COSINE_EPS) -> torch.Tensor:
    """Cosine of ``a`` and ``b`` along ``dim``: ``a·b / max(|a||b|, eps)`` (a zero vector scores 0)."""
    return (a * b).sum(dim) / (a.norm(dim=dim) * b.norm(dim=dim)).clamp(min=eps)


def attention_fn(words: torch.Tensor, regions: torch.Tensor, temp1: float, word_mask: torch.Tensor | None = None,
                 mode: str = "two-softmax") -> tuple[torch.Tensor, torch.Tensor]:
    """Word→region attention and each word's attended region context.

    ``words``: ``…×W×D``; ``regions``: ``…×R×D`` (the leading dimensions broadcast);
    ``word_mask``: ``…×W`` bool, the words of the caption (the others take no part in the softmax
    over words; their rows are meaningless). Returns ``(context …×W×D, attention …×W×R)``; every
    word's attention sums to 1 over the R regions.
    """
    scores = words @ regions.transpose(-1, -2)  # …×W×R
    if mode == "two-softmax":
        if word_mask is not None:
            scores = scores.masked_fill(~word_mask[..., None], float("-inf"))
        scores = scores.softmax(dim=-2)  # over the words, for each region (masked words: 0)
        attention = (scores * temp1).softmax(dim=-1)  # over the regions, for each word
    elif mode == "one-softmax":
        attention = (scores * temp1).softmax(dim=-1)
    else:
        raise G2DBenchError(f"GLoRIA attention must be 'two-softmax' or 'one-softmax', got {mode!r}")
    return attention @ regions, attention


def word_masks(num_words: torch.Tensor, length: int, kind: str = "training") -> torch.Tensor:
    """Which word slots of each caption a score uses, ``B×length`` bool. Slot 0 is [CLS], slots
    1..n the caption's n words (``num_words``, B), then [SEP] and padding.

    ``"training"``: [CLS] and the words, slots ``[0, n+1)`` (official local loss ``[:cap_len]``);
    ``"inference"``: the words only, ``[1, n+1)`` (official ``get_local_similarities``), or [CLS]
    alone for a caption without words (ours: the official code would fail on it).
    """
    slots = torch.arange(length, device=num_words.device)[None]
    n = num_words[:, None]
    if kind == "training":
        return slots <= n
    if kind == "inference":
        return ((slots >= 1) & (slots <= n)) | ((n == 0) & (slots == 0))
    raise G2DBenchError(f"word mask kind must be 'training' or 'inference', got {kind!r}")


def _region_rows(regions: torch.Tensor) -> torch.Tensor:
    """``N×D×h×w`` local features → ``N×R×D`` (R = h·w, row-major)."""
    return regions.flatten(2).transpose(1, 2)


def _pair_cosines(regions: torch.Tensor, words: torch.Tensor, mask: torch.Tensor, temp1: float,
                  attention: str) -> torch.Tensor:
    """cos(word, attended context) for every image j and caption i: ``N×M×W``."""
    rows = _region_rows(regions)[:, None]  # N×1×R×D
    context, _ = attention_fn(words[None], rows, temp1, mask[None], attention)  # N×M×W×D
    return cosine(words[None].expand_as(context), context)


def local_scores(regions: torch.Tensor, words: torch.Tensor, mask: torch.Tensor, temp1: float = 4.0,
                 temp2: float = 5.0, agg: str = "sum", attention: str = "two-softmax") -> torch.Tensor:
    """Training-time local matching scores ``Z``, ``N×M`` (image rows, caption columns).

    ``regions``: image local features ``N×D×h×w``; ``words``: caption word features ``M×W×D``;
    ``mask``: ``M×W`` bool (:func:`word_masks`). ``Z[j, i] = log Σ_w exp(temp2·cos(w, c_w))`` over
    the masked words (``agg="mean"``: the log of the mean)."""
    with torch.autocast(device_type=regions.device.type, enabled=False):
        cos = _pair_cosines(regions.float(), words.float(), mask, temp1, attention)
        terms = torch.exp(temp2 * cos) * mask[None]
        total = terms.sum(dim=-1)
        if agg == "mean":
            total = total / mask.sum(dim=-1)[None]
        elif agg != "sum":
            raise G2DBenchError(f"GLoRIA local_agg must be 'sum' or 'mean', got {agg!r}")
        return torch.log(total)


def local_max_scores(regions: torch.Tensor, words: torch.Tensor, mask: torch.Tensor, temp1: float = 4.0,
                     temp2: float = 5.0, attention: str = "two-softmax") -> torch.Tensor:
    """Inference-time local similarities (official ``get_local_similarities``): ``max_w temp2·cos``
    over the masked words (``log max exp`` = ``max``), ``N×M``. Same arguments as :func:`local_scores`."""
    with torch.autocast(device_type=regions.device.type, enabled=False):
        cos = _pair_cosines(regions.float(), words.float(), mask, temp1, attention)
        return (temp2 * cos).masked_fill(~mask[None], float("-inf")).amax(dim=-1)


def _both_directions(logits: torch.Tensor) -> torch.Tensor:
    """``[CE(rows → columns), CE(columns → rows)]`` of a square logit matrix whose diagonal pairs match."""
    labels = torch.arange(logits.shape[0], device=logits.device)
    return torch.stack([F.cross_entropy(logits, labels), F.cross_entropy(logits.T, labels)])


def local_loss_terms(regions: torch.Tensor, words: torch.Tensor, num_words: torch.Tensor, temp1: float = 4.0,
                     temp2: float = 5.0, temp3: float = 10.0, agg: str = "sum",
                     attention: str = "two-softmax") -> torch.Tensor:
    """``[local image→text, local text→image]`` of paired rows: ``regions`` ``N×D×h×w``, ``words``
    ``N×W×D``, ``num_words`` ``N`` (the training word slice: [CLS] + words)."""
    width = int(num_words.max()) + 1
    mask = word_masks(num_words, width, "training")
    scores = local_scores(regions, words[:, :width], mask, temp1, temp2, agg, attention)
    return _both_directions(scores * temp3)


def global_loss_terms(images: torch.Tensor, texts: torch.Tensor, temp3: float = 10.0) -> torch.Tensor:
    """``[global image→text, global text→image]`` of paired rows ``images``, ``texts`` (``N×D``):
    logits ``temp3 · cos``."""
    with torch.autocast(device_type=images.device.type, enabled=False):
        images, texts = images.float(), texts.float()
        norms = images.norm(dim=1)[:, None] * texts.norm(dim=1)[None]
        return _both_directions(images @ texts.T / norms.clamp(min=COSINE_EPS) * temp3)


def global_loss(images: torch.Tensor, texts: torch.Tensor, temp3: float = 10.0, gather: str = "all") -> torch.Tensor:
    """:func:`global_loss_terms` over the global batch (``gather="all"``) or the local one."""
    return global_batch(lambda i, t: global_loss_terms(i, t, temp3), images, texts, gather=gather)


def local_loss(regions: torch.Tensor, words: torch.Tensor, num_words: torch.Tensor, temp1: float = 4.0,
               temp2: float = 5.0, temp3: float = 10.0, agg: str = "sum", attention: str = "two-softmax",
               gather: str = "all", pad_to: int | None = None) -> torch.Tensor:
    """:func:`local_loss_terms` over the global batch (``gather="all"``) or the local one. Under
    several processes the word axis is padded to ``pad_to`` (the tokenizer's maximum length) so every
    rank gathers tensors of one shape."""
    if gather == "all" and world()[1] > 1 and pad_to is not None and words.shape[1] < pad_to:
        words = F.pad(words, (0, 0, 0, pad_to - words.shape[1]))
    return global_batch(lambda r, w, n: local_loss_terms(r, w, n, temp1, temp2, temp3, agg, attention),
                        regions, words, num_words, gather=gather)
