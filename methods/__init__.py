"""Methods: each registered name maps to a factory ``build(checkpoint, *, arch, seed, context) ->
MethodAdapter`` (see :mod:`g2d_bench.adapter`). Entries are lazy so listing methods imports no torch.
"""
from g2d_bench.registry import Registry

METHODS: Registry = Registry("method")
METHODS.register("random", "g2d_bench.methods.baselines:build_random", "random-init torchvision ResNet (default BatchNorm statistics)")
METHODS.register("g2d", "g2d_bench.methods.g2d.adapter:build", "G2D (NeurIPS 2024): our pretrained folder, an official .pth, or none = CPU-size G2D pretrained on SynthCXR once")
METHODS.register("imagenet", "g2d_bench.methods.baselines:build_imagenet", "torchvision ImageNet ResNet weights from a local file (--checkpoint)")

#: Pretrainable methods: name → Recipe (see g2d_bench.pretrain.Recipe)
PRETRAIN_RECIPES: Registry = Registry("pretrainable method")
PRETRAIN_RECIPES.register("g2d", "g2d_bench.methods.g2d.recipe:RECIPE", "G2D: VLA + pseudo segmentation")
