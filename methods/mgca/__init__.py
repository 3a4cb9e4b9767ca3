"""MGCA (Wang et al., NeurIPS 2022): multi-granularity cross-modal alignment — instance-wise,
token-wise (cross-attention) and disease-level (prototype) alignment. Settings and sources:
docs/mgca.md.

The names below import lazily (torch and transformers load on first use): ``MGCAConfig``,
``training_profile`` (config), ``MGCA``, ``build_mgca``, ``augmentations`` (model), ``save_mgca``,
``load_mgca``, ``load_official`` (checkpoint), ``MGCAAdapter``, ``load_mgca_adapter`` (adapter).
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "MGCAConfig": "config", "training_profile": "config",
    "MGCA": "model", "build_mgca": "model", "augmentations": "model",
    "save_mgca": "checkpoint", "load_mgca": "checkpoint", "load_official": "checkpoint",
    "MGCAAdapter": "adapter", "load_mgca_adapter": "adapter",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
