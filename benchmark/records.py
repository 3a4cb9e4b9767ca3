"""Run records: one JSON per (method, checkpoint hash, task, task version, fraction, seed, input
size, overrides, data, scale), with its per-sample scores CSV beside it.

The scores file is written first and the JSON last, each atomically, and the JSON holds the
scores file's SHA-256: a record counts as complete only when its scores file is the one it names
(a run killed between the two writes of a rerun leaves a mismatch, which reads as incomplete).
Re-running the same key replaces both files, never adds a second record.
"""
from __future__ import annotations

import json
import logging
import platform
import re
import subprocess
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterator

from g2d_bench.io import atomic_write, sha256_file, sha256_json, write_json

log = logging.getLogger(__name__)
SCHEMA = 1
PACKAGES = (
    "g2d-bench", "torch", "torchvision", "numpy", "pandas", "scikit-learn", "transformers",
    "segmentation-models-pytorch", "pycocotools", "pydicom", "opencv-python-headless", "ultralytics",
)


@dataclass(frozen=True)
class RunKey:
    """Identity of a run; two runs with the same key are the same run."""

    method: str
    checkpoint_hash: str
    task: str
    task_version: int
    fraction: float
    seed: int
    image_size: int
    overrides: tuple[tuple[str, str], ...] = ()
    data: str = "synthcxr"  # g2d_bench.data.data_identity: SynthCXR world or release fingerprint
    scale: str = "paper"  # g2d_bench.runner.SCALES: size presets and the task settings they imply
    #: options of the method's adapter factory (``--method-option text_model=DIR``), sorted pairs
    method_options: tuple[tuple[str, str], ...] = ()

    def variant(self) -> str:
        """Short label of the overrides (``transfer=encoder-decoder``), empty if none."""
        return ",".join(f"{k}={v}" for k, v in self.overrides)

    def relative_path(self) -> Path:
        method = f"{self.method}-{self.checkpoint_hash[:10]}"
        if self.overrides:
            method += "-" + sha256_json(self.overrides)[:8]
        if self.method_options:
            method += "-m" + sha256_json(self.method_options)[:8]
        name = f"f{self.fraction:g}-s{self.seed}-{self.image_size}px-{self.scale}-{self.data}.json"
        return Path(self.task) / f"v{self.task_version}" / _safe(method) / name

    def as_dict(self) -> dict:
        out = {**self.__dict__, "overrides": dict(self.overrides), "method_options": dict(self.method_options)}
        if not self.method_options:
            del out["method_options"]  # records without options keep their earlier form
        return out


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text)


def record_path(out: Path, key: RunKey) -> Path:
    return Path(out) / key.relative_path()


def scores_path(record: Path) -> Path:
    return record.with_suffix(".scores.csv")


def is_complete(path: Path) -> bool:
    """True if a record exists at ``path``, parses, and (when it has scores) its scores file is
    the one the record names by SHA-256."""
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return False
    if record.get("status") == "ok":
        scores = scores_path(path)
        return scores.exists() and sha256_file(scores) == record.get("scores_sha256")
    return record.get("status") == "skipped"


def write_record(out: Path, key: RunKey, body: dict[str, Any], per_sample=None) -> Path:
    """Write scores (if any) then the record JSON, each atomically; returns the JSON path."""
    path = record_path(out, key)
    if per_sample is not None:
        with atomic_write(scores_path(path)) as handle:
            per_sample.to_csv(handle, index=False, lineterminator="\n")
        body = {**body, "scores_file": scores_path(path).name, "scores_sha256": sha256_file(scores_path(path))}
    write_json(path, {"schema": SCHEMA, "key": key.as_dict(), **body})
    return path


def iter_records(out: Path) -> Iterator[dict]:
    """Every complete record under ``out`` (temporary files of killed runs are ignored)."""
    for path in sorted(Path(out).rglob("*.json")):
        if path.name.startswith(".") or not is_complete(path):
            continue
        record = json.loads(path.read_text())
        if record.get("schema") == SCHEMA:
            record["_path"] = str(path)
            yield record


@lru_cache(maxsize=1)
def provenance() -> dict:
    """Git commit, package versions, Python and platform (computed once per process)."""
    from importlib import metadata

    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return {
        "git_commit": _git_commit(),
        "packages": versions,
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def _git_commit() -> str | None:
    here = Path(__file__).resolve().parent
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True, timeout=5)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=here, capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    if out.returncode != 0:
        return None
    return out.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
