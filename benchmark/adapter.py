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

    - ``backbone``: a torchvision ``ResNet`` (``arch`` names it: ``resnet50``, ``resnet18``, …)
      carrying the method's pretrained image-encoder weights. Tasks get features through
      :meth:`stage_features` and :meth:`pooled_features`, or copy its ``state_dict()`` into a
      segmentation-models-pytorch encoder (same keys, ``fc.*`` dropped).
    - ``checkpoint_hash``: SHA-256 of the weights file (or of the init recipe for random init);
      part of every run record's key.
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
        """Multi-scale dense features ``[layer1, layer2, layer3, layer4]`` of the backbone.

        ``images``: ``B×1×H×W`` in [0, 1]. Returns ``B×C_i×H/4·2^-i×W/4·2^-i`` tensors (ResNet-50:
        256, 512, 1024, 2048 channels at strides 4, 8, 16, 32).
        """
        net = self.backbone
        x = self.normalize(images)
        x = net.maxpool(net.relu(net.bn1(net.conv1(x))))
        feats = []
        for layer in (net.layer1, net.layer2, net.layer3, net.layer4):
            x = layer(x)
            feats.append(x)
        return feats

    def pooled_features(self, images: "torch.Tensor") -> "torch.Tensor":
        """Global-average-pooled last stage, ``B×D`` (D = 2048 for ResNet-50): the linear-probe input
        of the MGCA/G2D protocol."""
        return self.stage_features(images)[-1].mean(dim=(2, 3))

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

    def has(self, capability: Capability) -> bool:
        return capability in self.capabilities

    def to(self, device) -> "MethodAdapter":
        """Move every module the adapter owns to ``device``."""
        self.backbone.to(device)
        return self

    def eval(self) -> "MethodAdapter":
        self.backbone.eval()
        return self
