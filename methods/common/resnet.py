"""torchvision ResNet helpers shared by every method with a ResNet image encoder: build one without
downloads, infer its depth from a state dict, load weights strictly (``weights_only=True``)."""
from __future__ import annotations

from pathlib import Path

from g2d_bench.errors import G2DBenchError

RESNETS = ("resnet18", "resnet34", "resnet50", "resnet101")


def make_resnet(arch: str):
    """An uninitialised-by-download torchvision ResNet (``weights=None``: no network access)."""
    import torchvision

    if arch not in RESNETS:
        raise G2DBenchError(f"unsupported backbone {arch!r}; choose one of {', '.join(RESNETS)}")
    return getattr(torchvision.models, arch)(weights=None)


def arch_of_state_dict(state: dict) -> str:
    """Infer the torchvision ResNet depth from a state dict's keys and shapes."""
    blocks = {k.split(".")[0]: 0 for k in state if k.startswith("layer")}
    for layer in blocks:
        blocks[layer] = 1 + max(int(k.split(".")[1]) for k in state if k.startswith(layer + "."))
    bottleneck = "layer1.0.conv3.weight" in state
    layout = (blocks.get("layer1"), blocks.get("layer2"), blocks.get("layer3"), blocks.get("layer4"))
    known = {
        ((2, 2, 2, 2), False): "resnet18",
        ((3, 4, 6, 3), False): "resnet34",
        ((3, 4, 6, 3), True): "resnet50",
        ((3, 4, 23, 3), True): "resnet101",
    }
    if (layout, bottleneck) not in known:
        raise G2DBenchError(f"weights do not look like a torchvision ResNet (blocks per stage {layout})")
    return known[(layout, bottleneck)]


def load_resnet_weights(path: str | Path, arch: str | None = None):
    """A torchvision ResNet with the weights in ``path`` (``weights_only=True``), loaded strictly.

    ``fc.*`` keys are dropped (the classifier is not part of the encoder). Asking for an ``arch``
    the weights were not trained for is an error, not a partial load.
    """
    import torch

    path = Path(path).expanduser()
    if not path.is_file():
        raise G2DBenchError(f"checkpoint {path} does not exist; pass the path of a local weights file")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            state = load_file(str(path))
        else:
            state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # corrupt file, pickled code, …
        raise G2DBenchError(f"cannot read weights from {path}: {exc.__class__.__name__}: {exc}".splitlines()[0]) from exc
    if isinstance(state, dict) and "state_dict" in state and isinstance(state["state_dict"], dict):
        state = state["state_dict"]
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    found = arch_of_state_dict(state)
    if arch and arch != found:
        raise G2DBenchError(f"{path} holds {found} weights, but --arch {arch} was asked for; drop --arch or pass matching weights")
    net = make_resnet(found)
    net.fc = torch.nn.Identity()
    missing, unexpected = net.load_state_dict(state, strict=False)
    if missing or unexpected:
        raise G2DBenchError(f"{path}: not a plain torchvision {found} state dict (missing {missing[:3]}, unexpected {unexpected[:3]})")
    return net, found
