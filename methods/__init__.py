"""Methods: one :class:`~g2d_bench.method.MethodEntry` per name — its adapter factory
(``build(checkpoint, *, arch, scale, home, progress) -> MethodAdapter``, see
:mod:`g2d_bench.adapter`) and, if pretrainable, its recipe (:class:`g2d_bench.pretrain.Recipe`).
References are lazy, so listing methods imports no torch.
"""
from g2d_bench.method import MethodEntry
from g2d_bench.registry import Registry

METHODS: Registry = Registry("method")


def register(entry: MethodEntry) -> None:
    """Add ``entry`` to :data:`METHODS` (a duplicate name is an error)."""
    METHODS.register(entry.name, entry, entry.help)


def pretrainable() -> list[str]:
    """Names of the methods ``g2d-bench pretrain`` can train."""
    return [name for name in METHODS.names() if METHODS.get(name).pretrainable]


register(MethodEntry("random", "g2d_bench.methods.baselines:build_random", example="g2d_bench.methods.baselines:example_random",
                     help="random-init torchvision ResNet (default BatchNorm statistics)"))
register(MethodEntry("imagenet", "g2d_bench.methods.baselines:build_imagenet", example="g2d_bench.methods.baselines:example_imagenet",
                     help="torchvision ImageNet ResNet weights from a local file (--checkpoint)"))
register(MethodEntry("g2d", "g2d_bench.methods.g2d.adapter:build", recipe="g2d_bench.methods.g2d.recipe:RECIPE",
                     commands="g2d_bench.methods.g2d.cli:COMMANDS",
                     help="G2D (NeurIPS 2024): VLA + pseudo segmentation; our pretrained folder or an official .pth "
                          "(none on SynthCXR: the quick CPU model, pretrained once)"))
register(MethodEntry("convirt", "g2d_bench.methods.convirt.adapter:build", recipe="g2d_bench.methods.convirt.recipe:RECIPE", help="ConVIRT (Zhang et al. 2020) as re-implemented by MGCA: image-report InfoNCE"))
register(MethodEntry("mgca", "g2d_bench.methods.mgca.adapter:build", recipe="g2d_bench.methods.mgca.recipe:RECIPE", help="MGCA (Wang et al. 2022): instance, token and prototype alignment"))
register(MethodEntry("gloria", "g2d_bench.methods.gloria.adapter:build", recipe="g2d_bench.methods.gloria.recipe:RECIPE", help="GLoRIA (Huang et al. 2021): global + local word-region alignment"))
