"""Non-VLP reference points: random initialisation and ImageNet initialisation.

Random init is defined once (SynthCXR.md: the baseline moves by ~0.1 AUC with BatchNorm
statistics): torchvision's default initialisation under a fixed init seed, BatchNorm left at its
default running statistics (mean 0, variance 1), used in eval mode like every frozen encoder.
"""
from __future__ import annotations

import logging
from pathlib import Path

from g2d_bench.adapter import IMAGENET_MEAN, IMAGENET_STD, MethodAdapter, Preprocess
from g2d_bench.errors import G2DBenchError
from g2d_bench.io import sha256_file, sha256_json
from g2d_bench.methods.common.resnet import load_resnet_weights, make_resnet

log = logging.getLogger(__name__)
#: the init seed of the random baseline (fixed: the run seed varies the task, not the encoder)
RANDOM_INIT_SEED = 0


def build_random(checkpoint: str | None = None, *, arch: str | None = None, **_: object) -> MethodAdapter:
    """Random-init ResNet (``arch`` default resnet50; resnet18 for CPU runs)."""
    import torch

    if checkpoint:
        raise G2DBenchError("method 'random' takes no --checkpoint; did you mean --method imagenet?")
    arch = arch or "resnet50"
    with torch.random.fork_rng():
        torch.manual_seed(RANDOM_INIT_SEED)
        net = make_resnet(arch)
    net.fc = torch.nn.Identity()
    recipe = {"method": "random", "arch": arch, "init_seed": RANDOM_INIT_SEED, "bn": "default-stats"}
    return MethodAdapter(
        name="random",
        arch=arch,
        backbone=net.eval(),
        preprocess=Preprocess(mean=IMAGENET_MEAN, std=IMAGENET_STD),
        checkpoint_hash=sha256_json(recipe),
        description=f"random-init {arch}",
        info=recipe,
    )


def build_imagenet(checkpoint: str | None = None, *, arch: str | None = None, **_: object) -> MethodAdapter:
    """torchvision ImageNet weights from a local file; there is no download."""
    if not checkpoint:
        raise G2DBenchError(
            "method 'imagenet' needs --checkpoint PATH to torchvision's ImageNet ResNet weights "
            "(e.g. resnet50-11ad3fa6.pth from download.pytorch.org); nothing is downloaded here"
        )
    net, found = load_resnet_weights(checkpoint, arch)
    return MethodAdapter(
        name="imagenet",
        arch=found,
        backbone=net.eval(),
        preprocess=Preprocess(mean=IMAGENET_MEAN, std=IMAGENET_STD),
        checkpoint_hash=sha256_file(checkpoint),
        description=f"ImageNet {found} from {checkpoint}",
        info={"checkpoint": str(checkpoint), "arch": found},
    )


# -- tiny instances for the registry's contract tests (MethodEntry.example) -----------------------------
def example_random(folder: Path) -> dict:
    """Factory arguments of a small random-init encoder."""
    return {"arch": "resnet18"}


def example_imagenet(folder: Path) -> dict:
    """A torchvision ResNet-18 state dict written to ``folder`` (random weights, ImageNet layout)."""
    import torch
    import torchvision

    path = Path(folder) / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return {"checkpoint": str(path)}
