"""MGCA as a :class:`~g2d_bench.adapter.MethodAdapter`: what downstream tasks may ask of it.

- ``backbone``: the pretrained torchvision ResNet (``img_encoder_q.model``, ``fc`` = Identity);
  the linear probe reads its average-pooled last stage (the default ``pooled_features``);
- ``encode_text`` / ``project_image`` (TEXT): the L2-normalised 128-d global embeddings of the
  instance loss (report [CLS] → text ``global_embed``; pooled layer4 → image ``global_embed``);
  zero-shot classification scores them by cosine (the default ``similarity``);
- ``dense_embeddings`` (DENSE_TEXT): the L2-normalised 128-d local patch embeddings (layer3 →
  image ``local_embed``), B×128×h×w. They share a space with the *word* embeddings (the token loss
  aligns patches with words), not with the global report embedding, so :meth:`encode_prompts` adds
  a ``local`` prompt embedding — the prompt's word embeddings averaged with MGCA's word weights
  ([CLS] attention, clipped and normalised as in training), L2-normalised — and
  :meth:`grounding_maps` is the cosine of every patch with it (ours: MGCA has no zero-shot grounding).

:func:`load_mgca_adapter` reads our checkpoint folders and the released ``.ckpt``; the released
file without ``text_model`` (a local Bio_ClinicalBERT folder for config and tokenizer) gives the
image side only.
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

    from g2d_bench.methods.mgca.model import MGCA

log = logging.getLogger(__name__)


@dataclass
class MGCAAdapter(MethodAdapter):
    """A :class:`MethodAdapter` with MGCA's text tower and local embeddings."""

    model: "MGCA | None" = None

    def _need_model(self, what: str) -> "MGCA":
        if self.model is None:
            raise NotImplementedError(f"{self.name}: this checkpoint has no {what} (image weights only; pass text_model)")
        return self.model

    def _text(self, texts: Sequence[str]) -> dict:
        model = self._need_model("text tower")
        device = next(model.parameters()).device
        tokens = {k: v.to(device) for k, v in model.tokenize(texts).items()}
        return model.encode_text(**tokens)

    def encode_text(self, texts: Sequence[str]) -> "torch.Tensor":
        """Prompts / reports → L2-normalised global text embeddings ``B×128``."""
        return self._text(texts)["global"]

    def project_image(self, images: "torch.Tensor") -> "torch.Tensor":
        """``B×1×H×W`` in [0, 1] → L2-normalised global image embeddings ``B×128``."""
        return self._need_model("projection").encode_image(images)["global"]

    def dense_embeddings(self, images: "torch.Tensor") -> "torch.Tensor":
        """``B×1×H×W`` in [0, 1] → L2-normalised local patch embeddings ``B×128×h×w`` (layer3 grid)."""
        out = self._need_model("projection").encode_image(images)
        b, _, e = out["patches"].shape
        h, w = out["grid"]
        return out["patches"].transpose(1, 2).reshape(b, e, h, w)

    def encode_prompts(self, texts: Sequence[str]) -> dict:
        """``{"global": T×128, "local": T×128}``: the global embeddings, and the word-weighted mean of
        each prompt's word embeddings (the patches' space), both L2-normalised."""
        import torch.nn.functional as F

        from g2d_bench.methods.mgca.losses import clipped_weights

        out = self._text(texts)
        weights = clipped_weights(out["word_attention"], self._need_model("text tower").cfg.weight_quantiles)
        local = (weights.to(out["words"].dtype)[..., None] * out["words"]).sum(dim=1)
        return {"global": out["global"], "local": F.normalize(local, dim=-1)}

    def grounding_maps(self, images: "torch.Tensor", prompts: "Sequence[str] | dict") -> "torch.Tensor":
        """Cosine of every local patch embedding with each prompt's ``local`` embedding, ``B×T×h×w``."""
        import torch

        prompts = prompts if isinstance(prompts, dict) else self.encode_prompts(prompts)
        return torch.einsum("behw,te->bthw", self.dense_embeddings(images), prompts["local"])

    def to(self, device) -> "MGCAAdapter":
        super().to(device)
        if self.model is not None:
            self.model.to(device)
        return self

    def eval(self) -> "MGCAAdapter":
        super().eval()
        if self.model is not None:
            self.model.eval()
        return self


def adapter_from_model(model: "MGCA", checkpoint_hash: str, info: dict | None = None) -> MGCAAdapter:
    """Wrap an MGCA model (eval mode); the backbone is the model's own ResNet."""
    from g2d_bench.methods.mgca.model import preprocess_for

    cfg = model.cfg
    return MGCAAdapter(
        name="mgca", arch=cfg.arch, backbone=model.img_encoder_q.model, preprocess=preprocess_for(cfg),
        checkpoint_hash=checkpoint_hash, capabilities=frozenset({Capability.TEXT, Capability.DENSE_TEXT}),
        description=f"MGCA ({cfg.profile} profile, {cfg.arch}, {cfg.num_prototypes} prototypes)",
        info={"config": cfg.to_dict(), **(info or {})}, model=model.eval(),
    )


def load_mgca_adapter(path: str | os.PathLike, text_model: str | None = None) -> MGCAAdapter:
    """An :class:`MGCAAdapter` from a checkpoint folder or a released ``.ckpt`` (full model when
    ``text_model`` names a local Bio_ClinicalBERT folder, else the image side only)."""
    from g2d_bench.methods.mgca import checkpoint as ck
    from g2d_bench.methods.mgca.model import preprocess_for

    path = Path(path).expanduser()
    if path.is_dir():
        return adapter_from_model(ck.load_mgca(path), sha256_file(path / ck.WEIGHTS_FILE), {"checkpoint": str(path)})
    state = ck.read_official(path)
    info = {"checkpoint": str(path), "layout": "mgca-lightning"}
    if text_model is not None:
        return adapter_from_model(ck.model_from_official(state, text_model, str(path)), sha256_file(path), info)
    log.warning("%s: no text_model given, loading the MGCA image encoder only", path)
    encoder, cfg = ck.image_encoder_from_official(state, str(path))
    return MGCAAdapter(name="mgca", arch=cfg.arch, backbone=encoder.model.eval(), preprocess=preprocess_for(cfg),
                       checkpoint_hash=sha256_file(path), description=f"MGCA released ({cfg.arch}, image side)", info=info)


def build(checkpoint: str | None = None, *, arch: str | None = None, text_model: str | None = None, **_: object) -> MGCAAdapter:
    """Registry factory (``METHODS`` entry ``mgca``): a folder written by ``g2d-bench pretrain`` (the
    runner passes the quick CPU model's folder when no ``--checkpoint`` is given on SynthCXR) or the
    released ``.ckpt`` (``text_model``: local Bio_ClinicalBERT folder; without it, image side only)."""
    if not checkpoint:
        raise G2DBenchError("method 'mgca' needs --checkpoint on real data: a folder written by g2d-bench pretrain, "
                            "or the released MGCA ResNet-50 .ckpt")
    adapter = load_mgca_adapter(checkpoint, text_model=text_model)
    if arch and arch != adapter.arch:
        raise G2DBenchError(f"{checkpoint} holds a {adapter.arch} MGCA encoder, but --arch {arch} was asked for; drop --arch")
    return adapter
