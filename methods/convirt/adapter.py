"""ConVIRT as a :class:`~g2d_bench.adapter.MethodAdapter`: what downstream tasks may ask of it.

- ``backbone``: the torchvision ResNet of the image encoder (``fc`` = Identity);
- ``encode_text`` / ``project_image``: L2-normalised embeddings of the shared space (``proj_dim``:
  128 for MGCA's re-implementation, 512 for the original profile) — capability TEXT. ConVIRT has no
  per-position embeddings (its image head projects the pooled vector only), so no DENSE_TEXT.

Image features for tasks (``pooled_features``, ``stage_features``) are the ResNet on the task's
images at the task's size, normalised as the weights were trained (mean/std 0.5 for MGCA's
re-implementation); the official profile's resize to 299 px inside the encoder is part of
``project_image`` only (tasks choose their own input size).

:func:`build` reads our checkpoint folders, the MGCA repository's ConVIRT ``.ckpt`` and a bare
torchvision ResNet state dict (image side only).
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from g2d_bench.adapter import Capability, MethodAdapter, Preprocess
from g2d_bench.errors import G2DBenchError
from g2d_bench.io import sha256_file

if TYPE_CHECKING:
    import torch

    from g2d_bench.methods.convirt.model import ConVIRT

log = logging.getLogger(__name__)


@dataclass
class ConVIRTAdapter(MethodAdapter):
    """A :class:`MethodAdapter` with ConVIRT's text tower and projection heads."""

    model: "ConVIRT | None" = None

    def _need_model(self, what: str) -> "ConVIRT":
        if self.model is None:
            raise NotImplementedError(f"{self.name}: this checkpoint has no {what} (image weights only)")
        return self.model

    def encode_text(self, texts: Sequence[str]) -> "torch.Tensor":
        """Prompts / reports → L2-normalised text embeddings ``B×proj_dim``."""
        import torch.nn.functional as F

        model = self._need_model("text tower")
        if model.tokenizer is None:
            raise NotImplementedError(f"{self.name}: no tokenizer for the text tower (pass text_model=FOLDER)")
        device = next(model.parameters()).device
        tok = model.tokenize(texts)
        return F.normalize(model.embed_text(tok["input_ids"].to(device), tok["attention_mask"].to(device)), dim=-1)

    def project_image(self, images: "torch.Tensor") -> "torch.Tensor":
        """``B×1×H×W`` in [0, 1] → L2-normalised global image embeddings ``B×proj_dim``."""
        import torch.nn.functional as F

        return F.normalize(self._need_model("projection head").embed_image(images), dim=-1)

    def to(self, device) -> "ConVIRTAdapter":
        super().to(device)
        if self.model is not None:
            self.model.to(device)
        return self

    def eval(self) -> "ConVIRTAdapter":
        super().eval()
        if self.model is not None:
            self.model.eval()
        return self


def adapter_from_model(model: "ConVIRT", checkpoint_hash: str, info: dict | None = None,
                       description: str | None = None) -> ConVIRTAdapter:
    """Wrap a ConVIRT model (eval mode); TEXT when it has a tokenizer."""
    from g2d_bench.methods.convirt.model import preprocess_for

    cfg = model.cfg
    caps = frozenset({Capability.TEXT}) if model.tokenizer is not None else frozenset()
    return ConVIRTAdapter(
        name="convirt", arch=cfg.arch, backbone=model.img_encoder.model, preprocess=preprocess_for(cfg),
        checkpoint_hash=checkpoint_hash, capabilities=caps,
        description=description or f"ConVIRT ({cfg.profile} profile, {cfg.arch}, {cfg.proj_dim}-d)",
        info={"config": cfg.to_dict(), **(info or {})}, model=model.eval(),
    )


def _image_only(path: Path, arch: str | None) -> ConVIRTAdapter:
    """A bare torchvision ResNet state dict (e.g. the image encoder taken out of a ConVIRT
    checkpoint), normalised as MGCA's re-implementation trains (mean/std 0.5)."""
    from g2d_bench.methods.common.resnet import load_resnet_weights
    from g2d_bench.methods.convirt.model import HALF

    net, found = load_resnet_weights(path, arch)
    return ConVIRTAdapter(
        name="convirt", arch=found, backbone=net.eval(), preprocess=Preprocess(channels=3, mean=HALF, std=HALF),
        checkpoint_hash=sha256_file(path), description=f"ConVIRT image encoder ({found}) from {path.name}",
        info={"checkpoint": str(path), "layout": "torchvision"},
    )


def load_convirt_adapter(path: str | os.PathLike, text_model: str | None = None, arch: str | None = None) -> ConVIRTAdapter:
    """A :class:`ConVIRTAdapter` from a checkpoint folder (:func:`~.checkpoint.save_convirt` / the
    engine), the MGCA repository's ConVIRT ``.ckpt`` (full model; TEXT when a tokenizer is found,
    :func:`~.checkpoint.local_tokenizer`), or a bare torchvision ResNet state dict."""
    from g2d_bench.methods.common.lightning import read_lightning
    from g2d_bench.methods.convirt import checkpoint as ck

    path = Path(path).expanduser()
    if path.is_dir():
        from g2d_bench.checkpoints import WEIGHTS_FILE

        return adapter_from_model(ck.load_convirt(path), sha256_file(path / WEIGHTS_FILE), {"checkpoint": str(path)})
    if path.suffix == ".safetensors":  # a ResNet state dict (our folders hold config.json)
        return _image_only(path, arch)
    checkpoint = read_lightning(path)
    if ck.layout_of(checkpoint.state_dict) == "torchvision":
        return _image_only(path, arch)
    model = ck.model_from_mgca(checkpoint.state_dict, str(path), text_model)
    info = {"checkpoint": str(path), "layout": "mgca", "reader": checkpoint.loader,
            "hyper_parameters": checkpoint.hyper_parameters}
    return adapter_from_model(model, sha256_file(path), info, f"ConVIRT as released with MGCA ({model.cfg.arch})")


def build(checkpoint: str | None = None, *, arch: str | None = None, text_model: str | None = None, **_: object) -> ConVIRTAdapter:
    """Registry factory (``METHODS`` entry ``convirt``): a folder written by ``g2d-bench pretrain``
    (the runner passes the quick CPU model's folder when no ``--checkpoint`` is given on SynthCXR),
    the MGCA repository's ConVIRT ``.ckpt``, or a bare torchvision ResNet state dict."""
    if not checkpoint:
        raise G2DBenchError("method 'convirt' needs --checkpoint on real data: a folder written by g2d-bench pretrain, "
                            "the MGCA repository's ConVIRT .ckpt, or a torchvision ResNet state dict")
    adapter = load_convirt_adapter(checkpoint, text_model=text_model, arch=arch)
    if arch and arch != adapter.arch:
        raise G2DBenchError(f"{checkpoint} holds a {adapter.arch} ConVIRT encoder, but --arch {arch} was asked for; drop --arch")
    return adapter
