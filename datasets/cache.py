"""The preprocessed cache: every image of a manifest decoded once, resized, stored as uint8 in a
memory-mapped ``.npy`` file, with masks, boxes and raw labels alongside.

Decoding DICOM/JPEG every epoch is the bottleneck of every task; the cache turns an epoch into
array slicing. A cache folder is keyed by dataset, manifest hash and preprocessing (size, mode,
what it holds, format version) and built in a temporary sibling folder that is renamed into place,
so a killed build leaves nothing a reader could mistake for a cache.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from g2d_bench.datasets.base import Release
from g2d_bench.errors import G2DBenchError
from g2d_bench.io import sha256_json, write_json

log = logging.getLogger(__name__)
CACHE_FORMAT = 1


@dataclass(frozen=True)
class CacheSpec:
    """What a cache holds. ``mode``: ``"pad"`` = resize the longer side to ``size`` and pad to a
    square (MGCA "resize with pad"), ``"stretch"`` = resize to ``size``×``size``."""

    dataset: str
    manifest_sha256: str
    size: int
    mode: str = "pad"
    masks: bool = False
    boxes: bool = False
    format: int = CACHE_FORMAT
    #: the data the ids refer to (g2d_bench.data.data_identity: SynthCXR version or the release's
    #: label-file fingerprint), so a changed world or release never reuses stale pixels
    source: str = ""

    def key(self) -> str:
        return f"{self.dataset}-{self.size}px-{sha256_json(asdict(self))[:16]}"


def letterbox(shape: tuple[int, int], size: int, mode: str) -> tuple[float, float, int, int, int, int]:
    """Geometry of the resize: (scale_x, scale_y, new_w, new_h, pad_left, pad_top)."""
    h, w = shape
    if mode == "stretch":
        return size / w, size / h, size, size, 0, 0
    if mode != "pad":
        raise ValueError(f"cache mode must be 'pad' or 'stretch', not {mode!r}")
    scale = size / max(h, w)
    new_w, new_h = max(1, round(w * scale)), max(1, round(h * scale))
    return scale, scale, new_w, new_h, (size - new_w) // 2, (size - new_h) // 2


def _resize_into(array: np.ndarray, size: int, mode: str, interpolation: int) -> np.ndarray:
    import cv2

    sx, sy, new_w, new_h, left, top = letterbox(array.shape[:2], size, mode)
    out = np.zeros((size, size), dtype=np.uint8)
    out[top : top + new_h, left : left + new_w] = cv2.resize(array, (new_w, new_h), interpolation=interpolation)
    return out


def preprocess_sample(release: Release, sample, spec: CacheSpec) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
    """Decode one sample: (image uint8 S×S, mask uint8 S×S or None, boxes k×4 in cache pixels)."""
    import cv2

    image = release.read_image(sample)
    # INTER_AREA: the anti-aliased downscale; masks go through it too and are re-thresholded at 0.5
    # so a thin lesion is not lost to nearest-neighbour sampling.
    small = _resize_into(image, spec.size, spec.mode, cv2.INTER_AREA)
    mask = None
    if spec.masks:
        full = release.read_mask(sample, *image.shape[:2]).astype(np.uint8) * 255
        mask = (_resize_into(full, spec.size, spec.mode, cv2.INTER_AREA) >= 128).astype(np.uint8)
    boxes = np.zeros((0, 4), dtype=np.float32)
    if spec.boxes and sample.boxes is not None and len(sample.boxes):
        sx, sy, _, _, left, top = letterbox(image.shape[:2], spec.size, spec.mode)
        b = np.asarray(sample.boxes, dtype=np.float32).reshape(-1, 4)
        boxes = np.stack([b[:, 0] * sx + left, b[:, 1] * sy + top, b[:, 2] * sx + left, b[:, 3] * sy + top], axis=1)
        boxes = np.clip(boxes, 0, spec.size).astype(np.float32)
    return small, mask, boxes


class PreprocessedCache:
    """A built cache folder: ``images.npy`` (N×S×S uint8, memory-mapped), optional ``masks.npy``,
    ``boxes.npy`` (M×5: row, x1, y1, x2, y2), ``labels.npy`` (N×L float32, raw release labels),
    ``index.json`` (sample ids in row order, label names, spec)."""

    def __init__(self, folder: Path) -> None:
        self.folder = Path(folder)
        meta = json.loads((self.folder / "index.json").read_text())
        self.sample_ids: list[str] = meta["sample_ids"]
        self.label_names: tuple[str, ...] = tuple(meta["label_names"])
        self.spec = CacheSpec(**meta["spec"])
        self.row_of = {sid: i for i, sid in enumerate(self.sample_ids)}
        self.images = np.load(self.folder / "images.npy", mmap_mode="r")
        self.masks = np.load(self.folder / "masks.npy", mmap_mode="r") if self.spec.masks else None
        self.labels = np.load(self.folder / "labels.npy") if (self.folder / "labels.npy").exists() else None
        flat = np.load(self.folder / "boxes.npy") if self.spec.boxes else None
        self._boxes = None
        if flat is not None:
            self._boxes = [np.zeros((0, 4), np.float32) for _ in self.sample_ids]
            for row in np.unique(flat[:, 0]).astype(int):
                self._boxes[row] = flat[flat[:, 0] == row, 1:].astype(np.float32)

    def rows(self, sample_ids: Sequence[str]) -> np.ndarray:
        try:
            return np.array([self.row_of[s] for s in sample_ids], dtype=np.int64)
        except KeyError as exc:
            raise G2DBenchError(f"cache {self.folder} has no sample {exc.args[0]!r}; delete the folder to rebuild it") from None

    def boxes(self, rows: Sequence[int]) -> list[np.ndarray] | None:
        return None if self._boxes is None else [self._boxes[r] for r in rows]


def build_cache(release: Release, sample_ids: Sequence[str], spec: CacheSpec, cache_root: Path, progress: bool = False) -> PreprocessedCache:
    """The cache for ``spec`` under ``cache_root``, building it if absent (atomically)."""
    folder = Path(cache_root) / spec.key()
    if (folder / "index.json").exists():
        return PreprocessedCache(folder)
    by_id = {s.sample_id: s for s in release.samples()}
    missing = [s for s in sample_ids if s not in by_id]
    if missing:
        raise G2DBenchError(
            f"{release.title}: {len(missing)} manifest samples are not in the release under {release.root} "
            f"(e.g. {missing[0]!r}); run `g2d-bench data check {spec.dataset}`"
        )
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", dir=folder.parent))
    try:
        _write_cache(release, [by_id[s] for s in sample_ids], spec, tmp, progress)
        try:
            os.rename(tmp, folder)
        except OSError:  # another process built it first: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return PreprocessedCache(folder)


def _write_cache(release: Release, samples: list, spec: CacheSpec, folder: Path, progress: bool) -> None:
    from tqdm.auto import tqdm

    n, size = len(samples), spec.size
    images = np.lib.format.open_memmap(folder / "images.npy", mode="w+", dtype=np.uint8, shape=(n, size, size))
    masks = np.lib.format.open_memmap(folder / "masks.npy", mode="w+", dtype=np.uint8, shape=(n, size, size)) if spec.masks else None
    box_rows = []
    bar = tqdm(samples, desc=f"caching {spec.dataset} at {size}px", unit="img", disable=not progress, leave=False)
    for row, sample in enumerate(bar):
        image, mask, boxes = preprocess_sample(release, sample, spec)
        images[row] = image
        if masks is not None:
            masks[row] = mask
        if len(boxes):
            box_rows.append(np.concatenate([np.full((len(boxes), 1), row, np.float32), boxes], axis=1))
    images.flush()
    del images
    if masks is not None:
        masks.flush()
        del masks
    if spec.boxes:
        np.save(folder / "boxes.npy", np.concatenate(box_rows) if box_rows else np.zeros((0, 5), np.float32))
    if release.label_names and samples[0].labels is not None:
        np.save(folder / "labels.npy", np.stack([s.labels for s in samples]).astype(np.float32))
    write_json(
        folder / "index.json",
        {"sample_ids": [s.sample_id for s in samples], "label_names": list(release.label_names), "spec": asdict(spec)},
    )
