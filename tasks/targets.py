"""Target rules: how a classification task turns a release's cached raw labels into training targets.

A task spec carries its rule object as the ``targets`` hyperparameter, so the family code calls
``rule(arrays, settings)`` instead of branching on label kinds. ``str(rule)`` is its stable name in
records and ``--set targets=NAME`` (:func:`parse_rule`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

import numpy as np

from g2d_bench.errors import G2DBenchError
from g2d_bench.task import SplitArrays


def _raw(arrays: SplitArrays) -> np.ndarray:
    if arrays.labels is None:
        raise G2DBenchError("classification needs labels, but the cached data has none; rebuild the cache")
    return np.asarray(arrays.labels, dtype=np.float32)


@dataclass(frozen=True)
class CheXpertCompetition:
    """CheXpert's 5 competition labels (REFERENCE.md), uncertain (−1) labels resolved by the task's
    ``uncertain_policy`` (MGCA: U-ones for Atelectasis, Edema, Pleural Effusion; U-zeros otherwise)."""

    multiclass = False

    def __call__(self, arrays: SplitArrays, settings: Mapping[str, Any]) -> tuple[np.ndarray, tuple[str, ...]]:
        from g2d_bench.datasets.chexpert import COMPETITION, competition_labels

        policy = settings.get("uncertain_policy") or "mgca"
        return competition_labels(_raw(arrays), policy).astype(np.float32), tuple(COMPETITION)

    def __str__(self) -> str:
        return "chexpert-competition"


@dataclass(frozen=True)
class BinaryColumn:
    """One raw label column as a binary target (``> 0.5``; unknown → 0), e.g. RSNA's Target."""

    column: str
    multiclass = False

    def __call__(self, arrays: SplitArrays, settings: Mapping[str, Any]) -> tuple[np.ndarray, tuple[str, ...]]:
        names = tuple(arrays.label_names)
        if self.column not in names:
            raise G2DBenchError(f"label column {self.column!r} is not in the cached labels ({', '.join(names)})")
        y = np.nan_to_num(_raw(arrays)[:, [names.index(self.column)]], nan=0.0)
        return (y > 0.5).astype(np.float32), (self.column,)

    def __str__(self) -> str:
        return f"column:{self.column}"


@dataclass(frozen=True)
class ArgmaxClass:
    """One class per image: the argmax of one-hot raw labels (COVIDx's three classes)."""

    multiclass = True

    def __call__(self, arrays: SplitArrays, settings: Mapping[str, Any]) -> tuple[np.ndarray, tuple[str, ...]]:
        return _raw(arrays).argmax(axis=1).astype(np.int64), tuple(arrays.label_names)

    def __str__(self) -> str:
        return "argmax"


def parse_rule(value: Any):
    """A rule object from itself or its name (``chexpert-competition``, ``column:NAME``, ``argmax``)."""
    if callable(value):
        return value
    text = str(value)
    if text == "chexpert-competition":
        return CheXpertCompetition()
    if text == "argmax":
        return ArgmaxClass()
    if text.startswith("column:"):
        return BinaryColumn(text.split(":", 1)[1])
    raise G2DBenchError(f"unknown targets rule {text!r}; use chexpert-competition, argmax or column:NAME")
