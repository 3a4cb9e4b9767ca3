"""The interface between methods and tasks: what a task may ask of a method, and nothing more.

Architecture, weights and preprocessing travel together in one adapter; a task never loads weights
itself. Every method (G2D, ConVIRT, GLoRIA, MGCA, random/ImageNet init, published checkpoints)
implements :class:`MethodAdapter`; every task uses only these calls.

Image tensors handed to an adapter are ``B×1×H×W`` float in [0, 1] (grayscale radiographs, as
stored in the cache); the adapter's :meth:`MethodAdapter.normalize` turns them into what its
weights expect (3 channels, mean/std).
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Sequence

if TYPE_CHECKING:
    import torch
    from torch import nn

#: ImageNet statistics (torchvision), used by ImageNet-initialised encoders and G2D's official code.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Capability(str, enum.Enum):
    """What an adapter can do beyond the image backbone every adapter has."""

    #: ``encode_text`` and ``project_image``: a shared image–text embedding space (zero-shot cls).
    TEXT = "text"
    #: ``dense_embeddings``: per-position projected image embeddings (zero-shot grounding).
    DENSE_TEXT = "dense-text"
    #: ``decoder_state_dict``: a pretrained U-Net decoder (G2D encoder+decoder transfer).
    DECODER = "decoder"


@dataclass(frozen=True)
class Preprocess:
    """How images must be prepared for the adapter's weights.

    ``mean``/``std`` are applied after replicating the gray channel to ``channels``; ``None``
    means images stay in [0, 1] (G2D paper §4: "[0,1]").
    """

    channels: int = 3
    mean: tuple[float, ...] | None = IMAGENET_MEAN
    std: tuple[float, ...] | None = IMAGENET_STD
    #: the resolution the weights were trained at (informational; tasks set their own input size)
    train_size: int = 224


@dataclass
class MethodAdapter:
    """Base class. Subclasses fill ``backbone`` and override the capability methods they support.

    The image side is backbone-neutral for tasks: they read features only through
    :meth:`pooled_features` (global), :meth:`stage_features` / :meth:`feature_info` (dense maps and
    their strides) and :meth:`trainable_encoder` (a private copy to train or freeze), never through
    ``backbone``'s attributes. The defaults here implement them for a torchvision ResNet
    ``backbone``; an adapter with another encoder (a ViT) overrides them.

    - ``backbone``: the method's pretrained image encoder (a torchvision ``ResNet`` for the defaults).
    - ``arch``: its name (``resnet50``, …), informational: records and feature-cache keys.
    - ``checkpoint_hash``: SHA-256 of the weights file (or of the init recipe for random init);
      part of every run record's key.

    A task never mutates an adapter: the runner prepares it once (:meth:`prepare`) and shares it
    across the runs of a sweep; what a task trains is its own copy (:meth:`trainable_encoder`).
    """

    name: str
    arch: str
    backbone: "nn.Module"
    preprocess: Preprocess
    checkpoint_hash: str
    capabilities: frozenset[Capability] = frozenset()
    description: str = ""
    #: provenance for the run record (checkpoint path, pretraining config, …)
    info: dict = field(default_factory=dict)

    # -- image side (every adapter) ----------------------------------------------------------------
    def normalize(self, images: "torch.Tensor") -> "torch.Tensor":
        """``B×1×H×W`` in [0, 1] → ``B×C×H×W`` as the weights expect."""
        import torch

        x = images.expand(-1, self.preprocess.channels, -1, -1) if images.shape[1] == 1 else images
        if self.preprocess.mean is not None:
            mean = torch.tensor(self.preprocess.mean, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
            std = torch.tensor(self.preprocess.std, dtype=x.dtype, device=x.device).view(1, -1, 1, 1)
            x = (x - mean) / std
        return x

    def stage_features(self, images: "torch.Tensor") -> list["torch.Tensor"]:
        """Multi-scale dense features of the encoder, finest first, at the strides
        :meth:`feature_info` gives. ``images``: ``B×1×H×W`` in [0, 1].

        Default (torchvision ResNet): ``[layer1, layer2, layer3, layer4]``, ``B×C_i×H/4·2^-i×W/4·2^-i``
        (ResNet-50: 256, 512, 1024, 2048 channels at strides 4, 8, 16, 32)."""
        net = self.backbone
        x = self.normalize(images)
        x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        feats = []
        for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
            x = layer(x)
            feats.append(x)
        return feats

    def feature_info(self) -> tuple[tuple[int, int], ...]:
        """``(channels, stride)`` of each :meth:`stage_features` map (measured once on a 64 px input)."""
        cached = self.__dict__.get("_feature_info")
        if cached is None:
            import torch

            device = next(self.backbone.parameters()).device
            with torch.no_grad():
                maps = self.stage_features(torch.zeros(1, 1, 64, 64, device=device))
            cached = tuple((int(m.shape[1]), 64 // int(m.shape[-1])) for m in maps)
            self.__dict__["_feature_info"] = cached
        return cached

    def pooled_features(self, images: "torch.Tensor") -> "torch.Tensor":
        """Global-average-pooled last stage, ``B×D`` (D = 2048 for ResNet-50): the linear-probe input
        of the MGCA/G2D protocol."""
        return self.stage_features(images)[-1].mean(dim=(2, 3))

    def trainable_encoder(self) -> "nn.Module":
        """A private copy of the image encoder for tasks that train or freeze it (segmentation,
        detection, fine-tuning), in the segmentation-models-pytorch encoder interface: ``forward(x)``
        on normalised ``B×C×H×W`` returns ``[x, f_2, f_4, f_8, f_16, f_32]`` (strides 1 to 32) and
        ``out_channels`` names their widths, so smp's decoders fit it. Trainable (``requires_grad``),
        in train mode, on the CPU; the adapter is never changed by what is done to it.

        Default (torchvision ResNet): smp's ``ResNetEncoder`` of ``arch``, built fresh — its random
        initialisation draws from the global RNG exactly as ``smp.Unet(arch)`` does, then is
        overwritten by the adapter's weights (strictly) — so a task that builds its U-Net around it
        draws the same decoder initialisation as ``smp.Unet`` would."""
        import segmentation_models_pytorch as smp

        encoder = smp.encoders.get_encoder(self.arch, in_channels=3, depth=5, weights=None)
        weights = {k: v.detach().cpu() for k, v in self.backbone.state_dict().items() if not k.startswith("fc.")}
        encoder.load_state_dict(weights, strict=True)
        return encoder.train().requires_grad_(True)

    def torchvision_backbone(self) -> tuple[str, "nn.Module"]:
        """``(torchvision model name, a private CPU copy of the model)`` of the image encoder, for
        protocols that rebuild a torchvision backbone themselves (ultralytics' ``TorchVision``
        module). Encoders that are not torchvision models raise ``NotImplementedError``."""
        import copy

        import torch

        net = copy.deepcopy(self.backbone).cpu().to(memory_format=torch.contiguous_format)
        return self.arch, net

    # -- capabilities (override where supported) ---------------------------------------------------
    def encode_text(self, texts: Sequence[str]) -> "torch.Tensor":
        """Projected, L2-normalised text embeddings ``B×E`` (the adapter owns its tokenizer)."""
        raise NotImplementedError(f"method {self.name!r} has no text encoder")

    def project_image(self, images: "torch.Tensor") -> "torch.Tensor":
        """Projected, L2-normalised global image embeddings ``B×E``, comparable with ``encode_text``."""
        raise NotImplementedError(f"method {self.name!r} has no image–text embedding space")

    def dense_embeddings(self, images: "torch.Tensor") -> "torch.Tensor":
        """Projected, L2-normalised per-position image embeddings ``B×E×h×w`` (zero-shot grounding)."""
        raise NotImplementedError(f"method {self.name!r} has no dense image–text embeddings")

    def decoder_state_dict(self) -> dict:
        """State dict of a pretrained smp U-Net ``decoder.*`` and ``segmentation_head.*``."""
        raise NotImplementedError(f"method {self.name!r} has no pretrained decoder")

    # -- zero-shot scoring hooks (cosine defaults; a method may override them) ---------------------
    def encode_prompts(self, texts: Sequence[str]) -> dict:
        """Prompts → what :meth:`similarity` and :meth:`grounding_maps` need of them, computed once
        per prompt set. Default: ``{"global": encode_text(texts)}`` (``T×E``, L2-normalised)."""
        return {"global": self.encode_text(texts)}

    def similarity(self, images: "torch.Tensor", prompts: "Sequence[str] | dict") -> "torch.Tensor":
        """Image–prompt scores ``B×T`` (higher = more similar). ``images``: ``B×1×H×W`` in [0, 1];
        ``prompts``: texts or :meth:`encode_prompts`' output. Default: cosine of
        :meth:`project_image` and the prompts' global embeddings."""
        prompts = prompts if isinstance(prompts, dict) else self.encode_prompts(prompts)
        return self.project_image(images) @ prompts["global"].T

    def grounding_maps(self, images: "torch.Tensor", prompts: "Sequence[str] | dict") -> "torch.Tensor":
        """Per-position image–prompt scores ``B×T×h×w`` on the dense grid (resized to the image by the
        task). Default (BioViL, G2D A.5): cosine of :meth:`dense_embeddings` with each prompt's
        global embedding."""
        import torch

        prompts = prompts if isinstance(prompts, dict) else self.encode_prompts(prompts)
        return torch.einsum("behw,te->bthw", self.dense_embeddings(images), prompts["global"])

    def has(self, capability: Capability) -> bool:
        return capability in self.capabilities

    def to(self, device) -> "MethodAdapter":
        """Move every module the adapter owns to ``device``."""
        self.backbone.to(device)
        return self

    def eval(self) -> "MethodAdapter":
        self.backbone.eval()
        return self

    def prepare(self, device) -> "MethodAdapter":
        """Ready for frozen use, once, by the runner: on ``device``, eval mode, channels_last image
        encoder (ENVIRONMENT.md: 2.4x faster ResNet forward on CPU at 224 px). Tasks never change
        an adapter's device, mode or memory format themselves."""
        import torch

        self.to(device).eval()
        self.backbone.to(memory_format=torch.channels_last)
        return self
