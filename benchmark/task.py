"""Task specifications and the context a task family runs in.

A task is data (:class:`TaskSpec`: dataset, split manifest, protocol, metrics, hyperparameters
with their sources, version) plus a *family* function ``run(ctx) -> TaskResult`` shared by all
tasks of that family (linear classification, U-Net segmentation, detection, zero-shot …).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping

import numpy as np

from g2d_bench.adapter import Capability, MethodAdapter

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Hyper:
    """A hyperparameter value and where it comes from (``"G2D A.4"``, ``"MGCA code"``, …)."""

    value: Any
    source: str


@dataclass(frozen=True)
class TaskSpec:
    """Everything that defines a task's numbers. Bump ``version`` whenever prompts, splits,
    protocol or metric change: the leaderboard never mixes versions in one column."""

    name: str
    version: int
    family: str
    dataset: str
    split: str
    protocol: str
    metrics: tuple[str, ...]
    primary: str
    run: str  # lazy reference to the family function, "g2d_bench.tasks.linear:run"
    hparams: Mapping[str, Hyper] = field(default_factory=dict)
    requires: frozenset[Capability] = frozenset()
    #: capabilities a setting value adds: ((setting, value, capability), …), e.g.
    #: ("transfer", "encoder-decoder", DECODER)
    requires_when: tuple[tuple[str, Any, Capability], ...] = ()
    #: what the preprocessed cache must hold besides images: subset of {"labels", "masks", "boxes"}
    needs: frozenset[str] = frozenset({"labels"})
    description: str = ""
    #: whether a larger value of the task's metrics is better (ranking, best/second marks, the
    #: direction of the paired bootstrap in g2d_bench.stats); every metric so far (AUC, accuracy,
    #: Dice, mAP, F1, IoU, recall) is
    higher_is_better: bool = True
    #: whether the label fraction changes what the task does; False for tasks that use no training
    #: data (zero-shot classification and grounding): a grid runs them once, at fraction 1
    uses_fraction: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "hparams", MappingProxyType(dict(self.hparams)))
        if self.primary not in self.metrics:
            raise ValueError(f"task {self.name}: primary metric {self.primary!r} not in {self.metrics}")

    def required(self, settings: Mapping[str, Any]) -> frozenset[Capability]:
        """Capabilities a run needs given its settings (overrides on top of the spec's values)."""
        extra = {cap for name, value, cap in self.requires_when
                 if settings.get(name, self.hparams[name].value if name in self.hparams else None) == value}
        return frozenset(self.requires) | extra

    def describe(self) -> dict:
        """JSON-friendly form for run records."""
        return {
            "name": self.name,
            "version": self.version,
            "family": self.family,
            "dataset": self.dataset,
            "split": self.split,
            "protocol": self.protocol,
            "metrics": list(self.metrics),
            "primary": self.primary,
            "requires": sorted(c.value for c in self.requires),
            "hparams": {k: {"value": h.value, "source": h.source} for k, h in self.hparams.items()},
        }


@dataclass
class SplitArrays:
    """One split of a task's data, preprocessed (from the cache), with the label fraction applied.

    - ``images``: uint8 ``N×S×S`` (a memory map; index it, do not copy it whole)
    - ``labels``: float32 ``N×L`` after the task's label policy (NaN where unknown), or ``None``
    - ``masks``: uint8 ``N×S×S`` in {0, 1}, or ``None``
    - ``boxes``: list of N float32 ``k×4`` arrays, ``x1, y1, x2, y2`` in cache pixels, or ``None``
    """

    sample_ids: list[str]
    images: np.ndarray
    labels: np.ndarray | None = None
    masks: np.ndarray | None = None
    boxes: list[np.ndarray] | None = None
    label_names: tuple[str, ...] = ()

    def __len__(self) -> int:
        return len(self.sample_ids)


@dataclass
class TaskResult:
    """What a family function returns: metrics (primary included), per-sample scores, notes."""

    metrics: dict[str, float]
    per_sample: "pd.DataFrame"
    info: dict = field(default_factory=dict)


@dataclass
class TaskContext:
    """What a family function gets: the spec, the method, the data, and run settings."""

    spec: TaskSpec
    adapter: MethodAdapter
    data: Callable[[str], SplitArrays]  # split name ("train" | "valid" | "test") → arrays
    fraction: float
    seed: int
    device: str
    workdir: Path
    overrides: Mapping[str, Any] = field(default_factory=dict)
    progress: bool = False
    #: persistent folder for artefacts reusable across runs (e.g. frozen-encoder features)
    cache_dir: Path | None = None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("g2d_bench.task"))

    def hp(self, name: str) -> Any:
        """A hyperparameter: the run's override if given, else the spec's value."""
        if name in self.overrides:
            return self.overrides[name]
        if name not in self.spec.hparams:
            raise KeyError(f"task {self.spec.name} has no hyperparameter {name!r}")
        return self.spec.hparams[name].value

    def resolved_hparams(self) -> dict[str, Any]:
        return {name: self.hp(name) for name in self.spec.hparams} | dict(self.overrides)
