"""Deterministic split manifests with nested label fractions.

A :class:`SplitSpec` says how a release is split (G2D Table 6 sizes by default, MGCA's as a compat
manifest); :func:`make_manifest` turns a release + spec into a table
``sample_id, split, in_1pct, in_10pct, in_100pct``.

Determinism without a global shuffle: every group (patient, or image) gets a rank from
``sha256(seed, purpose, group_id)``; test/valid take the lowest ranks and the label fractions take
the lowest ranks of the training groups, so 1 % ⊂ 10 % ⊂ 100 % by construction and a group's place
does not depend on the order of CSV rows. Splits are always by group, never by CSV row.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from g2d_bench.datasets.base import Release, Sample
from g2d_bench.errors import G2DBenchError

FRACTIONS = (0.01, 0.1, 1.0)
FRACTION_COLUMNS = {0.01: "in_1pct", 0.1: "in_10pct", 1.0: "in_100pct"}
SPLITS = ("train", "valid", "test")
#: An integer validation size (CheXpert's 5,000) is capped at this share of the pool, so that a
#: small copy such as SynthCXR keeps a training split. Stated in the manifest's notes.
SMALL_POOL_VALID_CAP = 0.1


@dataclass(frozen=True)
class SplitSpec:
    """How one manifest of a release is built.

    - ``test``: an official split name whose samples form the test set (e.g. ``"valid"`` for
      CheXpert's valid.csv, ``"test"`` for NIH's test_list.txt), or a fraction of groups.
    - ``valid``: an official split name, a fraction of the groups left after the test set is taken
      (RSNA 60/20/20 is ``test=0.2, valid=0.25``), or a number of images (drawn group by group until
      reached; capped at ``SMALL_POOL_VALID_CAP`` of the pool).
    - ``group_by``: ``"patient"`` or ``"image"``: the unit that never straddles two splits.
    - ``pool``: which samples enter at all (e.g. frontal views only); ``None`` = all.
    - ``select``: a custom rule ``(samples, seed) -> {sample_id: split}`` replacing the above
      (CheXpert 5×200).
    - ``source``: where the sizes come from, cited in manifest.json.
    """

    name: str
    source: str
    test: str | float = 0.2
    valid: str | float | int = 0.2
    group_by: str = "patient"
    pool: Callable[[Sample], bool] | None = None
    select: Callable[[Sequence[Sample], int], dict[str, str]] | None = None
    notes: str = ""

    def describe(self) -> dict:
        """JSON-friendly description for manifest.json."""
        return {
            "source": self.source,
            "test": self.test,
            "valid": self.valid,
            "group_by": self.group_by,
            "custom_select": self.select is not None,
            "notes": self.notes,
        }


def rank_key(seed: int, purpose: str, group: str) -> int:
    """Deterministic pseudo-random rank of a group for a purpose ("split", "fraction", …)."""
    digest = hashlib.sha256(f"{seed}\x1f{purpose}\x1f{group}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _group_of(sample: Sample, group_by: str) -> str:
    if group_by == "patient":
        return sample.patient_id
    if group_by == "image":
        return sample.sample_id
    raise ValueError(f"group_by must be 'patient' or 'image', not {group_by!r}")


def _take_groups(groups: list[str], sizes: dict[str, int], amount: float | int, seed: int, purpose: str) -> set[str]:
    """Lowest-ranked groups: a fraction of the groups, or whole groups until ``amount`` images."""
    ordered = sorted(groups, key=lambda g: (rank_key(seed, purpose, g), g))
    if isinstance(amount, float):
        return set(ordered[: int(round(amount * len(ordered)))])
    taken, images = set(), 0
    for group in ordered:
        if images >= amount:
            break
        taken.add(group)
        images += sizes[group]
    return taken


def assign_splits(samples: Sequence[Sample], spec: SplitSpec, seed: int = 0) -> dict[str, str]:
    """``{sample_id: "train" | "valid" | "test"}`` for the samples in the spec's pool."""
    pool = [s for s in samples if spec.pool is None or spec.pool(s)]
    if spec.select is not None:
        return spec.select(pool, seed)
    groups: dict[str, list[Sample]] = {}
    for sample in pool:
        groups.setdefault(_group_of(sample, spec.group_by), []).append(sample)
    sizes = {g: len(members) for g, members in groups.items()}

    def official(name: str) -> set[str]:
        chosen = {g for g, members in groups.items() if any(m.official_split == name for m in members)}
        if not chosen:
            raise G2DBenchError(f"split {spec.name!r}: no samples in the official {name!r} split; is the release complete?")
        return chosen

    remaining = set(groups)
    test = official(spec.test) if isinstance(spec.test, str) else _take_groups(sorted(remaining), sizes, spec.test, seed, "test")
    remaining -= test
    if isinstance(spec.valid, str):
        valid = official(spec.valid) & remaining
    else:
        amount = spec.valid
        if isinstance(amount, int):
            pool_images = sum(sizes[g] for g in remaining)
            amount = min(amount, int(round(SMALL_POOL_VALID_CAP * pool_images)))
        valid = _take_groups(sorted(remaining), sizes, amount, seed, "valid")
    remaining -= valid
    split_of = {**{g: "test" for g in test}, **{g: "valid" for g in valid}, **{g: "train" for g in remaining}}
    return {s.sample_id: split_of[g] for g, members in groups.items() for s in members}


def fraction_groups(train_groups: Sequence[str], fraction: float, seed: int = 0) -> set[str]:
    """The first ``round(fraction × n)`` training groups in rank order; nested across fractions."""
    if not 0.0 < fraction <= 1.0:
        raise G2DBenchError(f"fraction must be in (0, 1], got {fraction}")
    ordered = sorted(set(train_groups), key=lambda g: (rank_key(seed, "fraction", g), g))
    return set(ordered[: int(round(fraction * len(ordered)))])


def make_manifest(release: Release, spec: SplitSpec, seed: int = 0):
    """The manifest table (pandas DataFrame) of ``release`` under ``spec``, sorted by sample_id."""
    import pandas as pd

    samples = release.samples()
    split = assign_splits(samples, spec, seed)
    by_id = {s.sample_id: s for s in samples}
    train_groups = [_group_of(by_id[i], spec.group_by) for i, part in split.items() if part == "train"]
    rows = []
    in_fraction = {f: fraction_groups(train_groups, f, seed) for f in FRACTIONS}
    for sample_id in sorted(split):
        part = split[sample_id]
        group = _group_of(by_id[sample_id], spec.group_by)
        row = {"sample_id": sample_id, "split": part}
        for f, column in FRACTION_COLUMNS.items():
            row[column] = part == "train" and group in in_fraction[f]
        rows.append(row)
    table = pd.DataFrame(rows, columns=["sample_id", "split", *FRACTION_COLUMNS.values()])
    has_train = bool((table.split == "train").any())  # test-only manifests (CheXpert 5x200) have no fractions
    for f, column in FRACTION_COLUMNS.items():
        if has_train and not table[column].any():
            raise G2DBenchError(
                f"{release.title}: the {f:g} fraction of split {spec.name!r} leaves zero training samples "
                f"({int((table.split == 'train').sum())} training images); use a larger copy of the data"
            )
    return table


def fraction_subset(manifest, fraction: float, release: Release | None = None, spec: SplitSpec | None = None, seed: int = 0) -> np.ndarray:
    """Boolean mask over manifest rows: training samples inside ``fraction``.

    The manifest's own columns answer 1 %, 10 % and 100 %; any other fraction is drawn with the same
    group ranking (which needs the release and spec for the groups).
    """
    if not 0.0 < fraction <= 1.0:
        raise G2DBenchError(f"fraction must be in (0, 1], got {fraction}")
    for f, column in FRACTION_COLUMNS.items():
        if abs(fraction - f) < 1e-12:
            mask = manifest[column].to_numpy(dtype=bool)
            break
    else:
        if release is None or spec is None:
            raise ValueError("a fraction outside 1/10/100 % needs the release and split spec")
        by_id = {s.sample_id: s for s in release.samples()}
        is_train = (manifest["split"] == "train").to_numpy()
        groups = [_group_of(by_id[i], spec.group_by) for i in manifest["sample_id"]]
        chosen = fraction_groups([g for g, t in zip(groups, is_train) if t], fraction, seed)
        mask = np.array([t and g in chosen for g, t in zip(groups, is_train)])
    if not mask.any():
        raise G2DBenchError(f"fraction {fraction:g} leaves zero training samples; use a larger fraction or dataset")
    return mask
