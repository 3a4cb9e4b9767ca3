"""G2D as a :class:`~g2d_bench.adapter.MethodAdapter`: what downstream tasks may ask of it.

- ``backbone``: a torchvision ResNet carrying the pretrained U-Net encoder weights;
- ``encode_text`` / ``project_image``: L2-normalised 128-d embeddings of the VLA space (TEXT);
- ``dense_embeddings``: per-position embeddings in that space, B×128×h×w (DENSE_TEXT): the
  projector output at every position (positional embedding added) through the attention pool's
  value, output and ``c_proj`` projections — MaskCLIP's recipe for CLIP's attention pool, the same
  maps whose attention-weighted mix is the global embedding (attnpool.py);
- ``decoder_state_dict``: the pretrained smp ``decoder.*`` + ``segmentation_head.*`` (DECODER).

:func:`load_g2d_adapter` reads our checkpoint folders and the official files; an official
training checkpoint without ``text_model`` (the local text-encoder folder) gives the image side only.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Sequence

from g2d_bench.adapter import IMAGENET_MEAN, IMAGENET_STD, Capability, MethodAdapter, Preprocess
from g2d_bench.errors import G2DBenchError
from g2d_bench.io import sha256_file

if TYPE_CHECKING:
    import torch
    from torch import nn

    from g2d_bench.methods.g2d.model import G2D

log = logging.getLogger(__name__)


@dataclass
class G2DAdapter(MethodAdapter):
    """A :class:`MethodAdapter` with G2D's text tower, dense embeddings and decoder."""

    model: "G2D | None" = None
    decoder_state: dict | None = None

    def _need_model(self, what: str) -> "G2D":
        if self.model is None:
            raise NotImplementedError(f"{self.name}: this checkpoint has no {what} (image weights only)")
        return self.model

    def _device(self) -> "torch.device":
        return next(self._need_model("text tower").parameters()).device

    def encode_text(self, texts: Sequence[str]) -> "torch.Tensor":
        """Prompts / reports → L2-normalised text embeddings ``B×128``."""
        model = self._need_model("text tower")
        tok = model.tokenize(texts)
        device = self._device()
        return model.encode_text(tok["input_ids"].to(device), tok["attention_mask"].to(device))

    def project_image(self, images: "torch.Tensor") -> "torch.Tensor":
        """``B×1×H×W`` in [0, 1] → L2-normalised global image embeddings ``B×128``."""
        import torch.nn.functional as F

        return F.normalize(self._need_model("projection").encode_image(images)["global"], dim=-1)

    def dense_embeddings(self, images: "torch.Tensor") -> "torch.Tensor":
        """``B×1×H×W`` in [0, 1] → L2-normalised per-position embeddings ``B×128×h×w``."""
        import torch.nn.functional as F

        model = self._need_model("projection")
        return F.normalize(model.attnpool.dense(model.encode_image(images)["dense"]), dim=1)

    def decoder_state_dict(self) -> dict:
        """smp U-Net ``decoder.*`` and ``segmentation_head.*`` tensors (copies)."""
        if self.decoder_state is None:
            raise NotImplementedError(f"{self.name}: this checkpoint has no pretrained decoder")
        return {k: v.clone() for k, v in self.decoder_state.items()}

    def to(self, device) -> "G2DAdapter":
        super().to(device)
        if self.model is not None:
            self.model.to(device)
        return self

    def eval(self) -> "G2DAdapter":
        super().eval()
        if self.model is not None:
            self.model.eval()
        return self


def _resnet_from(encoder: "nn.Module", arch: str) -> "nn.Module":
    """A plain torchvision ResNet (``fc`` = Identity) with an smp encoder's weights."""
    import torch

    from g2d_bench.methods.common.resnet import make_resnet
    from g2d_bench.methods.g2d.checkpoint import uninitialised

    net = uninitialised(lambda: make_resnet(arch))
    net.fc = torch.nn.Identity()
    net.load_state_dict(encoder.state_dict(), strict=True)
    return net.eval()


def _decoder_state(unet: "nn.Module") -> dict:
    return {k: v.detach().clone() for k, v in unet.state_dict().items() if k.startswith(("decoder.", "segmentation_head."))}


def adapter_from_model(model: "G2D", checkpoint_hash: str, info: dict | None = None) -> G2DAdapter:
    """Wrap a G2D model (eval mode). DECODER only when the decoder was trained (not ``none``)."""
    from g2d_bench.methods.g2d.model import preprocess_for

    cfg = model.cfg
    caps = {Capability.TEXT, Capability.DENSE_TEXT}
    if cfg.decoder_loss != "none":
        caps.add(Capability.DECODER)
    return G2DAdapter(
        name="g2d", arch=cfg.arch, backbone=_resnet_from(model.img_model.encoder, cfg.arch),
        preprocess=preprocess_for(cfg), checkpoint_hash=checkpoint_hash, capabilities=frozenset(caps),
        description=f"G2D ({cfg.profile} profile, {cfg.arch}, {cfg.heads} heads)",
        info={"config": cfg.to_dict(), **(info or {})}, model=model.eval(),
        decoder_state=_decoder_state(model.img_model) if Capability.DECODER in caps else None,
    )


def _image_only(unet: "nn.Module | None", encoder: "nn.Module", arch: str, path: Path, layout: str) -> G2DAdapter:
    """Adapter for official files without the text side (ImageNet normalisation: official code)."""
    caps = frozenset({Capability.DECODER}) if unet is not None else frozenset()
    return G2DAdapter(
        name="g2d", arch=arch, backbone=encoder.eval(),
        preprocess=Preprocess(channels=3, mean=IMAGENET_MEAN, std=IMAGENET_STD, train_size=256),
        checkpoint_hash=sha256_file(path), capabilities=caps,
        description=f"G2D official {layout} ({arch})", info={"checkpoint": str(path), "layout": layout},
        decoder_state=_decoder_state(unet) if unet is not None else None,
    )


def load_g2d_adapter(path: str | os.PathLike, text_model: str | None = None) -> G2DAdapter:
    """A :class:`G2DAdapter` from a checkpoint folder (:func:`~.checkpoint.save_g2d`), an official
    ``*_checkpoint.pth`` (full model when ``text_model`` names the local text-encoder folder, else
    image side only), ``*_encoder_decoder.pth`` or ``*_encoder.pth``."""
    from g2d_bench.methods.common.resnet import load_resnet_weights
    from g2d_bench.methods.g2d import checkpoint as ck

    path = Path(path).expanduser()
    if path.is_dir():
        return adapter_from_model(ck.load_g2d(path), sha256_file(path / ck.WEIGHTS_FILE), {"checkpoint": str(path)})
    obj = ck.read_torch_file(path)
    layout = ck.official_layout(obj)
    if layout == "encoder":
        net, arch = load_resnet_weights(path)
        return _image_only(None, net, arch, path, layout)
    if layout == "encoder_decoder":
        unet, arch = ck.load_official_unet(obj, str(path))
        return _image_only(unet, _resnet_from(unet.encoder, arch), arch, path, layout)
    state = ck.official_model_state(obj)
    if text_model is not None:
        model = ck.model_from_official(state, text_model, None, str(path))
        return adapter_from_model(model, sha256_file(path), {"checkpoint": str(path), "layout": layout})
    log.warning("%s: no text_model given, loading the image encoder and decoder only", path)
    unet, arch = ck.load_official_unet({k.removeprefix("img_model."): v for k, v in state.items()
                                        if k.startswith("img_model.")}, str(path))
    return _image_only(unet, _resnet_from(unet.encoder, arch), arch, path, layout)


def build(checkpoint: str | None = None, *, arch: str | None = None, text_model: str | None = None, **_: object) -> G2DAdapter:
    """Registry factory (``METHODS`` entry ``g2d``): a folder written by ``g2d-bench pretrain`` (the
    runner passes the quick CPU model's folder when no ``--checkpoint`` is given on SynthCXR) or an
    official file."""
    if not checkpoint:
        raise G2DBenchError("method 'g2d' needs --checkpoint on real data: a folder written by g2d-bench pretrain, or an "
                            "official G2D *_checkpoint.pth / *_encoder_decoder.pth / *_encoder.pth")
    adapter = load_g2d_adapter(checkpoint, text_model=text_model)
    if arch and arch != adapter.arch:
        raise G2DBenchError(f"{checkpoint} holds a {adapter.arch} G2D encoder, but --arch {arch} was asked for; drop --arch")
    return adapter
