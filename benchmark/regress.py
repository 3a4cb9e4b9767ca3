"""CI regression of metric numbers: a grid's metrics on SynthCXR, committed under
``results/reference/`` with what made them, re-run (or read) and compared cell by cell.

Reference = ``NAME.csv`` (one row per record and metric: method, task, task version, metric,
fraction, seed, input size, scale, data, value, tolerance) + ``NAME.json`` (the grid, the command,
git commit, package versions, platform, and the tolerance of each metric with its justification).
A cell *moved* when ``|measured − reference| > tolerance``; a reference cell with no measured twin
is *missing*; either fails the check. Tolerances are per metric and absolute (metrics in [0, 1]).
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
import platform
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

from g2d_bench.errors import G2DBenchError

log = logging.getLogger(__name__)
COLUMNS = ("method", "task", "task_version", "metric", "fraction", "seed", "image_size", "scale", "data", "value", "tolerance")
KEY = COLUMNS[:9]


def cells(records: Iterable[dict]) -> dict[tuple, float]:
    """``{key: value}`` for every metric of every ok record (key = :data:`KEY` as strings)."""
    out = {}
    for record in records:
        if record.get("status") != "ok":
            continue
        k = record["key"]
        for metric, value in record["metrics"].items():
            key = (k["method"], k["task"], str(k["task_version"]), metric, f"{float(k['fraction']):g}", str(k["seed"]),
                   str(k["image_size"]), k.get("scale", ""), k.get("data", ""))
            out[key] = float(value)
    return out


def tolerance_for(task: str, metric: str, tolerances: dict[str, float | None]) -> float | None:
    """The tolerance of ``metric`` on ``task``, the most specific entry first: ``task:metric``,
    ``task:family/*`` (per-class metrics such as ``auc/Edema``), ``metric``, ``family/*``,
    ``family``, ``default``."""
    family = metric.split("/", 1)[0]
    per_class = f"{family}/*" if "/" in metric else None
    for name in (f"{task}:{metric}", per_class and f"{task}:{per_class}", metric, per_class, family, "default"):
        if name and name in tolerances:
            return tolerances[name]
    raise G2DBenchError(f"no tolerance for {task} {metric!r} (and no 'default'); add it to the reference's tolerances")


def write_reference(records: Iterable[dict], path: Path, tolerances: dict[str, dict[str, Any]], provenance: dict[str, Any]) -> Path:
    """Write ``path`` (.csv) and its ``.json`` sidecar from records. ``tolerances``: a name
    (:func:`tolerance_for`) → {"value": float or None, "why": text}; cells whose tolerance is
    None are left out of the reference. The sidecar also lists the skipped runs (a method without a
    capability the task needs) with their reason, so every cell of the grid is accounted for."""
    from g2d_bench.io import atomic_write, write_json

    values = {m: (None if t["value"] is None else float(t["value"])) for m, t in tolerances.items()}
    records = list(records)
    skipped = sorted([r["key"]["method"], r["key"]["task"], float(r["key"]["fraction"]), int(r["key"]["seed"]), r.get("reason", "")]
                     for r in records if r.get("status") == "skipped")
    rows = sorted(cells(records).items())
    if not rows:
        raise G2DBenchError("no complete records to make a reference from")
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(COLUMNS)
    for key, value in rows:
        tolerance = tolerance_for(key[1], key[3], values)
        if tolerance is not None:  # a null tolerance: cells too noisy to guard (the sidecar says why)
            writer.writerow([*key, repr(value), tolerance])
    path = Path(path)
    with atomic_write(path) as handle:
        handle.write(buffer.getvalue())
    write_json(path.with_suffix(".json"), {**provenance, "tolerances": tolerances, "cells": len(rows), "skipped": skipped})
    return path


def read_reference(path: Path) -> tuple[dict[tuple, tuple[float, float]], dict[str, Any]]:
    """(``{key: (value, tolerance)}``, sidecar) of a reference CSV."""
    path = Path(path)
    if not path.is_file():
        raise G2DBenchError(f"reference {path} does not exist; make one with `g2d-bench regress --write-reference`")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise G2DBenchError(f"{path}: columns {reader.fieldnames} are not {list(COLUMNS)}; is it a g2d-bench reference?")
        table = {tuple(row[c] for c in KEY): (float(row["value"]), float(row["tolerance"])) for row in reader}
    sidecar = path.with_suffix(".json")
    meta = json.loads(sidecar.read_text()) if sidecar.is_file() else {}
    return table, meta


@dataclass
class Outcome:
    """What :func:`compare` found."""

    moved: list[tuple[tuple, float, float, float]]  # (key, reference, measured, tolerance)
    missing: list[tuple]
    checked: int
    extra: int  # measured cells with no reference twin (not a failure: a new metric or task)

    @property
    def ok(self) -> bool:
        return not self.moved and not self.missing

    def table(self) -> str:
        """A markdown table of the cells that moved or are missing."""
        lines = ["| method | task | metric | fraction | seed | reference | measured | Δ | tolerance |", "|---|---|---|---|---|---|---|---|---|"]
        for key, ref, got, tol in self.moved:
            lines.append(f"| {key[0]} | {key[1]} v{key[2]} | {key[3]} | {key[4]} | {key[5]} | {ref:.4f} | {got:.4f} | {got - ref:+.4f} | {tol:.4f} |")
        for key in self.missing:
            lines.append(f"| {key[0]} | {key[1]} v{key[2]} | {key[3]} | {key[4]} | {key[5]} | (reference) | missing | | |")
        return "\n".join(lines) + "\n"


def compare(reference: dict[tuple, tuple[float, float]], measured: dict[tuple, float], only: dict[str, set] | None = None) -> Outcome:
    """Every reference cell (restricted to ``only``: {"method"|"task": names}) against its measured twin."""
    index = {name: i for i, name in enumerate(KEY)}
    moved, missing, checked = [], [], 0
    for key, (ref, tol) in sorted(reference.items()):
        if only and any(key[index[field]] not in names for field, names in only.items()):
            continue
        checked += 1
        if key not in measured:
            missing.append(key)
        elif not abs(measured[key] - ref) <= tol:  # NaN counts as moved
            moved.append((key, ref, measured[key], tol))
    extra = len(set(measured) - set(reference))
    return Outcome(moved, missing, checked, extra)


def rerun(meta: dict[str, Any], out: Path, only: dict[str, set] | None = None, progress: bool = False) -> None:
    """Run the reference's grid (as recorded in its sidecar) into ``out``, restricted to ``only``."""
    from dataclasses import replace

    from g2d_bench.sweep import Grid, iter_runs

    if "grid" not in meta:
        raise G2DBenchError("the reference's .json sidecar names no grid; pass --runs with records to compare instead")
    grid = Grid.from_dict(meta["grid"])
    if only:
        grid = replace(grid, methods=tuple(m for m in grid.methods if m in only.get("method", grid.methods)),
                       tasks=tuple(t for t in grid.tasks if t in only.get("task", grid.tasks)))
    for _ in iter_runs(grid, out, skip_existing=True, progress=progress):
        pass


def regress(reference: Path, runs: Path | None = None, only: dict[str, set] | None = None, progress: bool = False) -> Outcome:
    """Compare ``runs`` (or a fresh run of the reference's grid in a temporary folder) with ``reference``."""
    from g2d_bench.records import iter_records

    table, meta = read_reference(reference)
    if runs is not None:
        return compare(table, cells(iter_records(runs)), only)
    with tempfile.TemporaryDirectory(prefix="g2d-regress-") as tmp:
        rerun(meta, Path(tmp), only, progress)
        return compare(table, cells(iter_records(Path(tmp))), only)


def provenance(grid: dict[str, Any], command: str) -> dict[str, Any]:
    """What made a reference: the grid, the command, commit, package versions, platform, threads."""
    from g2d_bench.records import provenance as run_provenance

    return {"grid": grid, "command": command, **run_provenance(), "machine": platform.machine(),
            "cpu_count": os.cpu_count(), "torch_threads": _threads()}


def _threads() -> int:
    import torch

    return torch.get_num_threads()
