"""SIIM-ACR Pneumothorax run-length encoding (REFERENCE.md, docs/formats.md).

The encoding is *relative* and *column-major*: the string is pairs ``start length``; the first start
is an absolute 0-based offset, every later start counts from the end of the previous run, and
offsets run down the columns of the image (flat index ``col * height + row``). ``"-1"`` means no
lesion. Example (REFERENCE.md): a 4×4 mask with ones at rows 1–2, cols 1–2 is ``"5 2 2 2"``.
"""
from __future__ import annotations

from typing import Iterable

import numpy as np

from g2d_bench.errors import G2DBenchError

EMPTY = "-1"


def _fail(where: str | None, message: str) -> G2DBenchError:
    prefix = f"{where}: " if where else ""
    return G2DBenchError(f"{prefix}malformed RLE: {message}; re-download the release (SIIM train-rle.csv)")


def rle_runs(rle: str, *, where: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Absolute column-major run ``(starts, lengths)`` (int64, K each) of an RLE string.

    Checks the structure only (integers, pairs, no negative offsets, lengths ≥ 1); whether the runs
    fit an image is checked by :func:`rle_decode`. ``"-1"`` or blank gives two empty arrays.
    """
    text = str(rle).strip()
    if text in ("", EMPTY):
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    tokens = text.split()
    try:
        values = np.array(tokens, dtype=np.int64)
    except (ValueError, OverflowError):
        bad = next((t for t in tokens if not t.lstrip("-").isdigit()), None)
        raise _fail(where, f"{bad!r} is not an integer" if bad else "a value is out of range") from None
    if values.size % 2:
        raise _fail(where, f"odd number of values ({values.size}); expected start/length pairs")
    offsets, lengths = values[0::2], values[1::2]
    if (offsets < 0).any():
        raise _fail(where, f"negative start offset {int(offsets[offsets < 0][0])}")
    if (lengths < 1).any():
        raise _fail(where, f"run length {int(lengths[lengths < 1][0])} (must be ≥ 1)")
    # start_i = offset_0 + … + offset_i + length_0 + … + length_{i-1}
    starts = np.cumsum(offsets) + np.concatenate(([0], np.cumsum(lengths)[:-1]))
    return starts, lengths


def rle_decode(rle: str, height: int, width: int, *, where: str | None = None) -> np.ndarray:
    """Binary mask, bool ``height×width``, of one SIIM RLE string (``"-1"`` → all False).

    ``where`` (e.g. ``"train-rle.csv row 17"``) is named in the error of a malformed string.
    """
    starts, lengths = rle_runs(rle, where=where)
    mask = np.zeros((height, width), dtype=bool)
    if starts.size:
        end = int(starts[-1] + lengths[-1])
        if end > height * width:
            raise _fail(where, f"runs reach pixel {end} past the end of a {height}×{width} image")
        # every flat index covered by a run, without a Python loop over runs
        flat = np.repeat(starts - np.concatenate(([0], np.cumsum(lengths)[:-1])), lengths)
        flat += np.arange(flat.size)
        # column-major: flat index = col * height + row
        mask[flat % height, flat // height] = True
    return mask


def rle_decode_union(rles: Iterable[str], height: int, width: int, *, where: str | None = None) -> np.ndarray:
    """Union (logical OR) of several lesions' RLE strings of one image, bool ``height×width``."""
    mask = np.zeros((height, width), dtype=bool)
    for rle in rles:
        mask |= rle_decode(rle, height, width, where=where)
    return mask


def rle_encode(mask: np.ndarray) -> str:
    """The SIIM RLE string of a bool/0-1 H×W mask; ``"-1"`` for an empty mask. Inverse of :func:`rle_decode`."""
    mask = np.asarray(mask)
    if mask.ndim != 2:
        raise G2DBenchError(f"rle_encode: expected an H×W mask, got shape {mask.shape}")
    flat = np.concatenate(([False], mask.T.ravel().astype(bool), [False]))
    edges = np.flatnonzero(flat[1:] != flat[:-1])
    if edges.size == 0:
        return EMPTY
    starts, ends = edges[0::2], edges[1::2]
    offsets = starts - np.concatenate(([0], ends[:-1]))
    pairs = np.stack([offsets, ends - starts], axis=1).ravel()
    return " ".join(map(str, pairs.tolist()))
