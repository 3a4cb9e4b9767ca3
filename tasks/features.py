"""Frozen-encoder features, computed once per (checkpoint, data, split rows, preprocessing).

Frozen-encoder tasks never need the encoder twice for the same image: the features are computed in
eval mode under ``torch.no_grad()`` and stored as ``.npy`` under the run's feature cache, keyed by
everything they depend on.
"""
from __future__ import annotations

import hashlib
import logging
from pathlib import Path
from typing import Callable

import numpy as np

from g2d_bench.io import atomic_path, sha256_json
from g2d_bench.task import SplitArrays, TaskContext

log = logging.getLogger(__name__)
FEATURE_FORMAT = 1


def center_crop(images: np.ndarray, size: int) -> np.ndarray:
    """Centre crop ``N×S×S`` (or ``S×S``) arrays to ``size`` (MGCA eval transform: CenterCrop)."""
    s = images.shape[-1]
    if size > s:
        raise ValueError(f"crop {size} larger than cached images {s}")
    top = (images.shape[-2] - size) // 2
    left = (s - size) // 2
    return images[..., top : top + size, left : left + size]


def to_tensor(images: np.ndarray, device: str):
    """uint8 ``N×S×S`` → float ``N×1×S×S`` in [0, 1] on ``device``."""
    import torch

    return torch.from_numpy(np.ascontiguousarray(images)).to(device).unsqueeze(1).float().div_(255.0)


def encode(
    ctx: TaskContext,
    arrays: SplitArrays,
    crop: int,
    fn: Callable | None = None,
    batch_size: int = 64,
    tag: str = "pooled",
) -> np.ndarray:
    """``fn(images B×1×crop×crop) -> B×D`` over every image of ``arrays`` (default: the adapter's
    pooled last stage), batched, in eval mode, without gradients; cached when ``ctx.cache_dir`` is set."""
    import torch

    fn = fn or ctx.adapter.pooled_features
    ids_hash = hashlib.sha256("\n".join(arrays.sample_ids).encode()).hexdigest()
    key = sha256_json(
        {
            "format": FEATURE_FORMAT,
            "checkpoint": ctx.adapter.checkpoint_hash,
            "arch": ctx.adapter.arch,
            "dataset": ctx.spec.dataset,
            "ids": ids_hash,
            "cache_size": int(arrays.images.shape[-1]),
            "crop": crop,
            "tag": tag,
        }
    )[:24]
    path = Path(ctx.cache_dir) / f"{ctx.spec.dataset}-{tag}-{key}.npy" if ctx.cache_dir else None
    if path is not None and path.exists():
        return np.load(path)
    from tqdm.auto import tqdm

    # the runner prepared the adapter (eval mode, channels_last encoder); a task never changes it
    chunks = []
    starts = range(0, len(arrays), batch_size)
    with torch.no_grad():
        for start in tqdm(starts, desc=f"encoding {ctx.spec.dataset}", disable=not ctx.progress, leave=False):
            batch = center_crop(np.asarray(arrays.images[start : start + batch_size]), crop)
            x = to_tensor(batch, ctx.device).contiguous(memory_format=torch.channels_last)
            chunks.append(fn(x).float().cpu().numpy())
    features = np.concatenate(chunks).astype(np.float32)
    if path is not None:
        with atomic_path(path) as tmp:
            with open(tmp, "wb") as handle:
                np.save(handle, features)
    return features
