"""``g2d-bench data prepare`` and ``data check``: write split manifests for a local copy of a
release, and verify a local copy against them.

``<out>/<dataset>/<split>.csv`` (columns ``sample_id,split,in_1pct,in_10pct,in_100pct``) for every
split spec of the release, plus ``<out>/<dataset>/manifest.json`` holding each CSV's SHA-256 and
row counts and the size and SHA-256 of each source label file.
"""
from __future__ import annotations

import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

from g2d_bench.datasets.base import Release
from g2d_bench.datasets.splits import FRACTION_COLUMNS, SPLITS, make_manifest
from g2d_bench.errors import G2DBenchError
from g2d_bench.io import atomic_write, sha256_file, write_json

log = logging.getLogger(__name__)
MANIFEST_SEED = 0  # manifests are fixed; run seeds vary training only


def open_release(dataset: str, root: str | Path) -> Release:
    from g2d_bench.datasets import DATASETS

    return DATASETS.get(dataset)(root)


def manifest_counts(table) -> dict:
    counts = {part: int((table.split == part).sum()) for part in SPLITS}
    counts.update({column: int(table[column].sum()) for column in FRACTION_COLUMNS.values()})
    return counts


def manifest_csv_text(table) -> str:
    buffer = io.StringIO()
    table.to_csv(buffer, index=False, lineterminator="\n")
    return buffer.getvalue()


def source_files(release: Release) -> dict[str, dict]:
    """Size and SHA-256 of each label file the release has (relative path → info)."""
    out = {}
    for relative in release.label_files:
        path = release.root / relative
        if path.exists():
            out[relative] = {"bytes": path.stat().st_size, "sha256": sha256_file(path)}
    return out


def prepare(dataset: str, root: str | Path, out: str | Path) -> Path:
    """Write every manifest of ``dataset`` under ``out/<dataset>/``; returns that folder.

    All CSVs are computed before anything is written, each file is written atomically, and
    manifest.json (which names the CSVs' hashes) is written last.
    """
    release = open_release(dataset, root)
    specs = release.split_specs()
    if not specs:
        raise G2DBenchError(f"{release.title} defines no split manifests")
    folder = Path(out) / dataset
    texts = {name: manifest_csv_text(make_manifest(release, spec, MANIFEST_SEED)) for name, spec in specs.items()}
    import hashlib

    import pandas as pd

    entries = {}
    for name, text in texts.items():
        table = pd.read_csv(io.StringIO(text))
        entries[name] = {
            "file": f"{name}.csv",
            "sha256": hashlib.sha256(text.encode()).hexdigest(),
            "counts": manifest_counts(table),
            "spec": specs[name].describe(),
        }
    for name, text in texts.items():
        with atomic_write(folder / f"{name}.csv") as handle:
            handle.write(text)
    write_json(
        folder / "manifest.json",
        {
            "dataset": dataset,
            "title": release.title,
            "seed": MANIFEST_SEED,
            "default": next(iter(specs)),
            "manifests": entries,
            "source_files": source_files(release),
        },
    )
    return folder


@dataclass
class CheckReport:
    """What ``data check`` found; ``problems`` empty means the local copy matches."""

    dataset: str
    problems: list[str] = field(default_factory=list)
    checked: dict[str, dict] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.problems


def check(dataset: str, root: str | Path, manifests: str | Path, images: bool = True) -> CheckReport:
    """Compare a local copy of ``dataset`` under ``root`` with the manifests in ``manifests/<dataset>``."""
    import pandas as pd

    folder = Path(manifests) / dataset
    meta_path = folder / "manifest.json"
    if not meta_path.exists():
        raise G2DBenchError(f"no manifest at {meta_path}; run `g2d-bench data prepare {dataset} --root DIR --out {manifests}` first")
    meta = json.loads(meta_path.read_text())
    release = open_release(dataset, root)
    report = CheckReport(dataset)
    local = source_files(release)
    for relative, info in meta["source_files"].items():
        if relative not in local:
            report.problems.append(f"missing label file {release.root / relative}")
        elif local[relative]["sha256"] != info["sha256"]:
            report.problems.append(
                f"changed label file {relative}: {local[relative]['bytes']} bytes, manifest has {info['bytes']} bytes (SHA-256 differs)"
            )
    specs = release.split_specs()
    ids = {s.sample_id: s for s in release.samples()}
    for name, entry in meta["manifests"].items():
        csv_path = folder / entry["file"]
        if not csv_path.exists():
            report.problems.append(f"missing manifest {csv_path}")
            continue
        if sha256_file(csv_path) != entry["sha256"]:
            report.problems.append(f"manifest {csv_path} was edited (SHA-256 differs from manifest.json)")
        table = pd.read_csv(csv_path)
        absent = [s for s in table.sample_id.astype(str) if s not in ids]
        if absent:
            report.problems.append(f"{name}: {len(absent)} manifest samples are not in the local copy (e.g. {absent[0]})")
        if images:
            no_file = [s for s in table.sample_id.astype(str) if s in ids and not ids[s].image_path.exists()]
            if no_file:
                report.problems.append(f"{name}: {len(no_file)} image files are missing (e.g. {ids[no_file[0]].image_path})")
        if name in specs:
            fresh = manifest_counts(make_manifest(release, specs[name], meta.get("seed", MANIFEST_SEED)))
            for key, expected in entry["counts"].items():
                if fresh.get(key) != expected:
                    report.problems.append(f"{name}: {key} has {fresh.get(key)} samples locally, manifest says {expected}")
        report.checked[name] = entry["counts"]
    return report
