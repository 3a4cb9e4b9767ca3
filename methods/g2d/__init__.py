"""G2D (Liu et al., NeurIPS 2024): global + dense visual representations from vision-language
pretraining via pseudo segmentation. Settings and sources: docs/g2d.md.

The names below import lazily (torch, smp and transformers load on first use):
``G2DConfig``, ``PseudoMaskConfig``, ``training_profile`` (config), ``G2D``, ``build_g2d``,
``augmentations`` (model), ``save_g2d``, ``load_g2d`` (checkpoint), ``G2DAdapter``,
``load_g2d_adapter`` (adapter).
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "G2DConfig": "config", "PseudoMaskConfig": "config", "training_profile": "config",
    "G2D": "model", "build_g2d": "model", "augmentations": "model",
    "save_g2d": "checkpoint", "load_g2d": "checkpoint",
    "G2DAdapter": "adapter", "load_g2d_adapter": "adapter",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
