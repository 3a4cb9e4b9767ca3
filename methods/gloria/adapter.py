"""GLoRIA as a :class:`~g2d_bench.adapter.MethodAdapter`: what downstream tasks may ask of it.

- ``backbone``: the ResNet of the image tower (``pooled_features`` = its global-average-pooled last
  stage, the linear-probe input, as for every ResNet adapter);
- ``encode_text`` / ``project_image``: L2-normalised report / global image embeddings (TEXT);
- ``dense_embeddings``: the L2-normalised local embeddings (layer3 through the local embedder),
  ``B×E×h×w`` (DENSE_TEXT);
- ``similarity``: GLoRIA's zero-shot score (official ``gloria.get_similarities``, ``"both"``): the
  mean of the global cosine and the local similarity — the training score ``log Σ exp(temp2·cos)``
  or the official inference one ``max temp2·cos`` (setting ``zero_shot_local``). The official
  ``zero_shot_classification`` then takes the max over a class's prompts and z-scores each class's
  column over the evaluated images (``utils.normalize``); both are the task's business;
- ``grounding_maps``: the prompt words' attention over the local grid (official ``attention_fn``),
  averaged over the scored words (``grounding="attention"``), or the cosine default.

Prompts are cleaned as the official ``process_text`` does (captions.full_caption).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from g2d_bench.adapter import Capability, MethodAdapter
from g2d_bench.errors import G2DBenchError
from g2d_bench.io import sha256_file

if TYPE_CHECKING:
    import torch

    from g2d_bench.methods.gloria.model import GLoRIA

log = logging.getLogger(__name__)


@dataclass
class GLoRIAAdapter(MethodAdapter):
    """A :class:`MethodAdapter` with GLoRIA's text tower and global + local scoring."""

    model: "GLoRIA | None" = None
    #: "training" or "inference" (GLoRIAConfig.zero_shot_local)
    local_similarity: str = "training"
    #: "attention" or "cosine" (GLoRIAConfig.grounding)
    grounding: str = "attention"

    def _need_model(self, what: str) -> "GLoRIA":
        if self.model is None:
            raise NotImplementedError(f"{self.name}: this checkpoint has no {what} (image weights only)")
        return self.model

    def _device(self) -> "torch.device":
        return next(self._need_model("text tower").parameters()).device

    # -- text ----------------------------------------------------------------------------------------
    def _encode_words(self, texts: Sequence[str]) -> tuple["torch.Tensor", "torch.Tensor", "torch.Tensor"]:
        """(word features ``T×L×E``, report features ``T×E``, word counts ``T``) of cleaned ``texts``."""
        from g2d_bench.methods.gloria.captions import full_caption

        model = self._need_model("text tower")
        tok = {k: v.to(self._device()) for k, v in model.tokenize([full_caption(t) for t in texts]).items()}
        words, report = model.encode_text(tok["input_ids"], tok["attention_mask"], tok["word_index"])
        return words, report, tok["num_words"]

    def encode_text(self, texts: Sequence[str]) -> "torch.Tensor":
        """Reports / prompts → L2-normalised report embeddings ``T×E``."""
        import torch.nn.functional as F

        return F.normalize(self._encode_words(texts)[1], dim=-1)

    def encode_prompts(self, texts: Sequence[str]) -> dict:
        """``{"global": T×E normalised, "words": T×L×E, "num_words": T}``."""
        import torch.nn.functional as F

        words, report, num_words = self._encode_words(texts)
        return {"global": F.normalize(report, dim=-1), "words": words, "num_words": num_words}

    # -- image -----------------------------------------------------------------------------------------
    def project_image(self, images: "torch.Tensor") -> "torch.Tensor":
        """``B×1×H×W`` in [0, 1] → L2-normalised global image embeddings ``B×E``."""
        import torch.nn.functional as F

        return F.normalize(self._need_model("projection").encode_image(images)["global"], dim=-1)

    def dense_embeddings(self, images: "torch.Tensor") -> "torch.Tensor":
        """``B×1×H×W`` in [0, 1] → L2-normalised local embeddings ``B×E×h×w``."""
        import torch.nn.functional as F

        return F.normalize(self._need_model("projection").encode_image(images)["local"], dim=1)

    # -- scoring -----------------------------------------------------------------------------------------
    def _mask(self, prompts: dict) -> "torch.Tensor":
        from g2d_bench.methods.gloria.losses import word_masks

        return word_masks(prompts["num_words"], prompts["words"].shape[1], self.local_similarity)

    def similarity(self, images: "torch.Tensor", prompts: "Sequence[str] | dict") -> "torch.Tensor":
        """``(global cosine + local similarity) / 2``, ``B×T`` (official ``get_similarities``)."""
        import torch.nn.functional as F

        from g2d_bench.methods.gloria.losses import local_max_scores, local_scores

        model = self._need_model("text tower")
        cfg = model.cfg
        prompts = prompts if isinstance(prompts, dict) else self.encode_prompts(prompts)
        image = model.encode_image(images)
        glob = F.normalize(image["global"], dim=-1) @ prompts["global"].T
        mask = self._mask(prompts)
        if self.local_similarity == "inference":
            local = local_max_scores(image["local"], prompts["words"], mask, cfg.temp1, cfg.temp2, cfg.attention)
        else:
            local = local_scores(image["local"], prompts["words"], mask, cfg.temp1, cfg.temp2, cfg.local_agg, cfg.attention)
        return (glob + local.to(glob.dtype)) / 2

    def grounding_maps(self, images: "torch.Tensor", prompts: "Sequence[str] | dict") -> "torch.Tensor":
        """``B×T×h×w``: the mean word→region attention of each prompt's scored words
        (``grounding="attention"``; each map sums to 1 over the grid) or the cosine default."""
        if self.grounding == "cosine":
            return super().grounding_maps(images, prompts)
        from g2d_bench.methods.gloria.losses import attention_fn

        model = self._need_model("text tower")
        prompts = prompts if isinstance(prompts, dict) else self.encode_prompts(prompts)
        local = model.encode_image(images)["local"].float()
        b, _, h, w = local.shape
        rows = local.flatten(2).transpose(1, 2)[:, None]  # B×1×R×E
        mask = self._mask(prompts)
        _, attention = attention_fn(prompts["words"].float()[None], rows, model.cfg.temp1, mask[None], model.cfg.attention)
        weights = mask.float() / mask.sum(dim=1, keepdim=True)  # T×W: mean over the scored words
        maps = (attention * weights[None, :, :, None]).sum(dim=2)  # B×T×R
        return maps.view(b, -1, h, w)

    # -- devices -----------------------------------------------------------------------------------------
    def to(self, device) -> "GLoRIAAdapter":
        super().to(device)
        if self.model is not None:
            self.model.to(device)
        return self

    def eval(self) -> "GLoRIAAdapter":
        super().eval()
        if self.model is not None:
            self.model.eval()
        return self


def adapter_from_model(model: "GLoRIA", checkpoint_hash: str, info: dict | None = None, local_similarity: str | None = None,
                       grounding: str | None = None) -> GLoRIAAdapter:
    """Wrap a GLoRIA model (eval mode); scoring settings default to the model's config."""
    from g2d_bench.methods.gloria.model import preprocess_for

    cfg = model.cfg
    local_similarity, grounding = local_similarity or cfg.zero_shot_local, grounding or cfg.grounding
    if local_similarity not in ("training", "inference") or grounding not in ("attention", "cosine"):
        raise G2DBenchError(f"gloria: local_similarity must be 'training' or 'inference' (got {local_similarity!r}) and "
                            f"grounding 'attention' or 'cosine' (got {grounding!r})")
    return GLoRIAAdapter(
        name="gloria", arch=cfg.arch, backbone=model.img_encoder.model, preprocess=preprocess_for(cfg),
        checkpoint_hash=checkpoint_hash, capabilities=frozenset({Capability.TEXT, Capability.DENSE_TEXT}),
        description=f"GLoRIA ({cfg.profile} profile, {cfg.arch}, embedding {model.embed_dim})",
        info={"config": cfg.to_dict(), **(info or {})}, model=model.eval(), local_similarity=local_similarity,
        grounding=grounding,
    )


def load_gloria_adapter(path: str | os.PathLike, text_model: str | None = None, local_similarity: str | None = None,
                        grounding: str | None = None) -> GLoRIAAdapter:
    """A :class:`GLoRIAAdapter` from a checkpoint folder (``g2d-bench pretrain``) or a published
    ``.ckpt`` (full model when ``text_model`` names the local BERT folder, else the image side only)."""
    from g2d_bench.methods.gloria import checkpoint as ck
    from g2d_bench.methods.gloria.model import preprocess_for

    path = Path(path).expanduser()
    if path.is_dir():
        return adapter_from_model(ck.load_gloria(path), sha256_file(path / ck.WEIGHTS_FILE), {"checkpoint": str(path)},
                                  local_similarity, grounding)
    state = ck.official_state(path)
    info = {"checkpoint": str(path), "layout": "lightning"}
    if text_model is not None:
        model = ck.model_from_official(state, text_model, str(path))
        return adapter_from_model(model, sha256_file(path), info | {"text_model": str(text_model)}, local_similarity, grounding)
    log.warning("%s: no text_model given, loading the GLoRIA image encoder only", path)
    encoder, cfg = ck.load_official_image(state, str(path))
    return GLoRIAAdapter(
        name="gloria", arch=cfg.arch, backbone=encoder.model.eval(), preprocess=preprocess_for(cfg),
        checkpoint_hash=sha256_file(path), description=f"GLoRIA published image encoder ({cfg.arch})", info=info,
    )


def build(checkpoint: str | None = None, *, arch: str | None = None, text_model: str | None = None,
          local_similarity: str | None = None, grounding: str | None = None, **_: object) -> GLoRIAAdapter:
    """Registry factory (``METHODS`` entry ``gloria``): a folder written by ``g2d-bench pretrain`` (the
    runner passes the quick CPU model's folder when no ``--checkpoint`` is given on SynthCXR) or a
    published ``.ckpt`` (``text_model``: local Bio_ClinicalBERT folder for its text side)."""
    if not checkpoint:
        raise G2DBenchError("method 'gloria' needs --checkpoint on real data: a folder written by g2d-bench pretrain, "
                            "or a published GLoRIA .ckpt (e.g. chexpert_resnet50.ckpt)")
    adapter = load_gloria_adapter(checkpoint, text_model, local_similarity, grounding)
    if arch and arch != adapter.arch:
        raise G2DBenchError(f"{checkpoint} holds a {adapter.arch} GLoRIA encoder, but --arch {arch} was asked for; drop --arch")
    return adapter
