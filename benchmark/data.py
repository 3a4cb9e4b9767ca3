"""Where a task's data comes from: a release on disk (``--data-root``) or SynthCXR (generated on
first use), its split manifest, and the preprocessed cache the task reads.
"""
from __future__ import annotations

import functools
import hashlib
import io
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from g2d_bench.errors import G2DBenchError
from g2d_bench.io import atomic_write, file_lock
from g2d_bench.task import SplitArrays, TaskSpec

log = logging.getLogger(__name__)


def cache_home() -> Path:
    """Root of everything g2d-bench caches: ``$G2D_BENCH_CACHE`` or ``~/.cache/g2d-bench``."""
    return Path(os.environ.get("G2D_BENCH_CACHE", Path.home() / ".cache" / "g2d-bench")).expanduser()


#: SynthCXR world used when no --data-root is given (seed and image size of the files on disk).
SYNTH_SEED = 0
SYNTH_SIZE = 256


def synth_count() -> int | None:
    """Images per SynthCXR dataset: ``$G2D_BENCH_SYNTH_N`` (quick runs, tests) or SynthCXR's defaults."""
    text = os.environ.get("G2D_BENCH_SYNTH_N")
    if not text:
        return None
    if not text.isdigit():
        raise G2DBenchError(f"G2D_BENCH_SYNTH_N must be a positive integer, got {text!r}")
    return int(text)


def synth_root(home: Path | None = None) -> Path:
    from g2d_bench.datasets.synthcxr import SYNTH_VERSION

    n = synth_count()
    name = f"v{SYNTH_VERSION}-seed{SYNTH_SEED}-{SYNTH_SIZE}px" + (f"-n{n}" if n else "")
    return (home or cache_home()) / "synthcxr" / name


def data_identity(dataset: str, data_root: str | Path | None, home: Path | None = None) -> str:
    """What a number was measured on, cheaply (no data is generated or decoded): SynthCXR's world
    (version, seed, size, image count: ``synthcxr-v1-seed0-256px``) or a real release's name and
    a fingerprint of its label files (sizes and SHA-256: ``rsna-3f2a9c01b7d4``). Part of every run
    key, leaderboard column and cache key, so runs on different data never share them."""
    if data_root is None:
        return f"synthcxr-{synth_root(home).name}"
    return f"{dataset}-{_label_files_hash(dataset, str(Path(data_root).expanduser().resolve()))[:12]}"


def _fingerprint(release) -> str:
    """SHA-256 over the sizes and SHA-256 of the release's label files (hashed once per process)."""
    return _label_files_hash(release.name, str(Path(release.root).expanduser().resolve()))


@functools.lru_cache(maxsize=64)
def _label_files_hash(dataset: str, root: str) -> str:
    """Opens the release (a missing root is the release's one-line error) and hashes its label files."""
    from g2d_bench.datasets import DATASETS
    from g2d_bench.datasets.manifests import source_files

    release = DATASETS.get(dataset)(Path(root))
    return hashlib.sha256(repr(sorted(source_files(release).items())).encode()).hexdigest()


def ensure_synthcxr(dataset: str, home: Path | None = None, progress: bool = False) -> Path:
    """The SynthCXR copy of ``dataset`` in the release's own format, generated on first use."""
    from g2d_bench.datasets.synthcxr import generate

    root = synth_root(home)
    folder = root / dataset
    if folder.is_dir():
        return folder
    # one process generates; a concurrent sweep on the same cache waits and then finds it (generating
    # it again would replace the folder under the first one's readers)
    with file_lock(root / f".{dataset}.lock"):
        if not folder.is_dir():
            log.info("generating SynthCXR %s under %s (once)", dataset, root)
            n = synth_count()
            # two drawing processes when there are two cores and enough images to pay for starting them
            # (same files either way; 2,000 images: 43.5 s -> 27.4 s for SIIM, 30.7 s -> 22.4 s for MIMIC)
            workers = 2 if (os.cpu_count() or 1) >= 2 and (n is None or n >= 1000) else 1
            generate(root, datasets=[dataset], n=n, size=SYNTH_SIZE, seed=SYNTH_SEED, progress=progress, workers=workers)
    return folder


@dataclass
class TaskData:
    """A task's data: release, manifest table, and cache, with the label fraction applied on demand."""

    spec: TaskSpec
    release: object
    manifest: object  # pandas DataFrame
    manifest_sha256: str
    cache: object  # PreprocessedCache
    fraction: float
    synthetic: bool
    source: dict = field(default_factory=dict)

    def split(self, name: str) -> SplitArrays:
        from g2d_bench.datasets.splits import fraction_subset

        table = self.manifest
        mask = (table["split"] == name).to_numpy()
        if name == "train":
            spec = self.release.split_specs()[self.spec.split]
            mask = fraction_subset(table, self.fraction, self.release, spec)
        ids = table["sample_id"].astype(str)[mask].tolist()
        if not ids:
            raise G2DBenchError(f"{self.spec.name}: the {name} split of manifest {self.spec.split!r} is empty")
        rows = self.cache.rows(ids)
        # sorted rows keep memory-map reads sequential; ids follow the same order
        order = np.argsort(rows, kind="stable")
        rows, ids = rows[order], [ids[i] for i in order]
        return SplitArrays(
            sample_ids=ids,
            images=self.cache.images[rows] if len(rows) < 4096 else _LazyRows(self.cache.images, rows),
            labels=None if self.cache.labels is None else self.cache.labels[rows],
            masks=None if self.cache.masks is None else self.cache.masks[rows],
            boxes=self.cache.boxes(rows),
            label_names=self.cache.label_names,
        )

    def counts(self) -> dict[str, int]:
        table = self.manifest
        out = {part: int((table["split"] == part).sum()) for part in ("train", "valid", "test")}
        from g2d_bench.datasets.splits import fraction_subset

        spec = self.release.split_specs()[self.spec.split]
        # a test-only manifest (CheXpert 5x200 zero-shot) has no training rows to take a fraction of
        out["train_fraction"] = int(fraction_subset(table, self.fraction, self.release, spec).sum()) if out["train"] else 0
        return out


class _LazyRows:
    """Row view of a memory map that reads only the rows indexed (big real-data splits)."""

    def __init__(self, array: np.ndarray, rows: np.ndarray) -> None:
        self.array, self.rows = array, rows
        self.shape = (len(rows), *array.shape[1:])
        self.dtype = array.dtype

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index):
        return self.array[self.rows[index]]


def _manifest_for(release, spec_name: str, home: Path):
    """The manifest table of ``spec_name``, computed once per release contents and cached."""
    import pandas as pd

    from g2d_bench.datasets.manifests import MANIFEST_SEED, manifest_csv_text
    from g2d_bench.datasets.splits import make_manifest

    specs = release.split_specs()
    if spec_name not in specs:
        raise G2DBenchError(f"{release.title} has no split {spec_name!r} (has: {', '.join(specs)})")
    fingerprint = _fingerprint(release)[:16]
    path = home / "manifests" / release.name / fingerprint / f"{spec_name}.csv"
    if not path.exists():
        text = manifest_csv_text(make_manifest(release, specs[spec_name], MANIFEST_SEED))
        with atomic_write(path) as handle:
            handle.write(text)
    text = path.read_text()
    return pd.read_csv(io.StringIO(text), dtype={"sample_id": str}), hashlib.sha256(text.encode()).hexdigest()


def cache_size_for(spec: TaskSpec, image_size: int) -> int:
    """Cache resolution: the task's resize before cropping (cls: 256 for a 224 crop), scaled with
    the input size when a run overrides it."""
    resize = spec.hparams["resize"].value if "resize" in spec.hparams else spec.hparams["image_size"].value
    return int(round(image_size * resize / spec.hparams["image_size"].value))


def load_task_data(
    spec: TaskSpec, fraction: float, image_size: int, data_root: str | Path | None = None, progress: bool = False, home: Path | None = None
) -> TaskData:
    """Resolve, split and cache the data of ``spec`` (SynthCXR when ``data_root`` is None)."""
    from g2d_bench.datasets import DATASETS
    from g2d_bench.datasets.cache import CacheSpec, build_cache

    home = home or cache_home()
    synthetic = data_root is None
    root = ensure_synthcxr(spec.dataset, home, progress) if synthetic else Path(data_root)
    release = DATASETS.get(spec.dataset)(root)
    manifest, manifest_sha = _manifest_for(release, spec.split, home)
    data_id = data_identity(spec.dataset, data_root, home)
    cache_spec = CacheSpec(
        dataset=spec.dataset,
        manifest_sha256=manifest_sha,
        source=data_id,
        size=cache_size_for(spec, image_size),
        masks="masks" in spec.needs,
        boxes="boxes" in spec.needs,
    )
    cache = build_cache(release, manifest["sample_id"].astype(str).tolist(), cache_spec, home / "cache", progress)
    source = {"id": data_id, "root": str(root), "synthcxr": synthetic, "cache": cache_spec.key(), "cache_size": cache_spec.size}
    if synthetic:
        source["synthcxr_n"] = synth_count() or "default"
    return TaskData(spec, release, manifest, manifest_sha, cache, fraction, synthetic, source)
