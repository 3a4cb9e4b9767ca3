"""SynthCXR: an embedded procedural chest-X-ray world written in the seven release formats.

:func:`generate` writes ``<out>/<dataset>/`` for each dataset in its official layout
(docs/formats.md), so the real-data loaders read it unchanged, plus ``synthcxr.json`` (version,
seed, counts, prevalences, noise rates) and the ground-truth sidecar ``_truth/`` (per-finding rows
and lesion masks). The world, its findings, noise rates and difficulty gates: docs/synthcxr.md.

Importing this package is light (numpy only); OpenCV, pydicom and tqdm are imported when drawing.
"""
from __future__ import annotations

import contextlib
import hashlib
import logging
import math
import os
import shutil
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Sequence

import numpy as np

from g2d_bench.errors import G2DBenchError

log = logging.getLogger(__name__)

#: Bump whenever the world, the populations or the formats change (part of cache keys).
SYNTH_VERSION = 2
DATASET_NAMES: tuple[str, ...] = ("mimic-cxr", "chexpert", "rsna", "siim", "nih-cxr14", "covidx", "object-cxr")
#: Images per dataset of the default world. Downstream sets: 2,000 (a 20 % test split of 400 images
#: keeps AUC standard errors near 0.02–0.03). Pretraining: 2,000 images ≈ 1,350 frontal train pairs;
#: SYNTHCXR.md measured that passes over the data matter more than N at a CPU budget (at equal time
#: N = 2,000 beat N = 4,000 on every probe), and generating half as many keeps the main command's
#: first run near its 10-minute goal.
DEFAULT_COUNTS: dict[str, int] = {
    "mimic-cxr": 2000, "chexpert": 2000, "rsna": 2000, "siim": 2000, "nih-cxr14": 2000, "covidx": 2000,
    "object-cxr": 2000,
}
MIN_IMAGES = 10
MIN_SIZE = 32


def subseed(seed: int, dataset: str) -> int:
    """The dataset's own seed, derived from (seed, name): datasets never share images."""
    digest = hashlib.sha256(f"synthcxr\x1f{seed}\x1f{dataset}".encode()).digest()
    return int.from_bytes(digest[:8], "big")


def _check(datasets: Sequence[str], n: int | None, size: int, seed: int) -> None:
    unknown = [d for d in datasets if d not in DATASET_NAMES]
    if unknown or not datasets:
        raise G2DBenchError(f"SynthCXR: unknown dataset {', '.join(map(repr, unknown)) or '(none given)'}; "
                            f"choose from {', '.join(DATASET_NAMES)}")
    if n is not None and (not isinstance(n, (int, np.integer)) or isinstance(n, bool) or n < MIN_IMAGES):
        raise G2DBenchError(f"SynthCXR: n={n!r} images is too few; pass n >= {MIN_IMAGES} (or None for the defaults)")
    if not isinstance(size, (int, np.integer)) or isinstance(size, bool) or size < MIN_SIZE:
        raise G2DBenchError(f"SynthCXR: size={size!r} px is too small; pass size >= {MIN_SIZE}")
    if not isinstance(seed, (int, np.integer)) or isinstance(seed, bool) or seed < 0:
        raise G2DBenchError(f"SynthCXR: seed={seed!r} must be a non-negative integer")


def generate(out: Path, datasets: Sequence[str] = DATASET_NAMES, n: int | None = None, size: int = 256,
             seed: int = 0, progress: bool = False, workers: int | None = 1) -> dict[str, Path]:
    """Write the SynthCXR copies of ``datasets`` under ``out``; returns ``{name: <out>/<name>}``.

    ``n`` images per dataset (``None``: :data:`DEFAULT_COUNTS`), ``size×size`` pixels, deterministic
    for ``seed`` (byte-identical files). Each dataset is built in a temporary sibling folder and
    renamed into place, so a killed run never leaves a half-written dataset; an existing one is
    replaced. ``progress`` shows a tqdm bar. ``workers > 1`` draws in that many spawned processes
    (the files are identical; the calling script needs an ``if __name__ == "__main__":`` guard, as
    for any spawned pool). Bad arguments raise :class:`G2DBenchError`.
    """
    if isinstance(datasets, str):
        datasets = (datasets,)
    datasets = tuple(datasets)
    _check(datasets, n, size, seed)
    workers = 1 if workers is None else workers
    if not isinstance(workers, (int, np.integer)) or isinstance(workers, bool) or workers < 1:
        raise G2DBenchError(f"SynthCXR: workers={workers!r} must be a positive integer")
    out = Path(out).expanduser()
    out.mkdir(parents=True, exist_ok=True)
    result = {}
    for name in datasets:
        count = DEFAULT_COUNTS[name] if n is None else int(n)
        result[name] = _generate_one(out, name, count, int(size), int(seed), progress, int(workers))
    return result


def _generate_one(out: Path, name: str, n: int, size: int, seed: int, progress: bool, workers: int) -> Path:
    staging = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".partial", dir=out))
    try:
        start = time.perf_counter()
        summary = _write_dataset(staging, name, n, size, seed, progress, workers)
        from g2d_bench.io import write_json

        write_json(staging / "synthcxr.json", summary)
        target = out / name
        old = None
        if target.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{name}.", suffix=".old", dir=out))
            os.replace(target, old / name)
        os.replace(staging, target)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
        log.info("SynthCXR %s: %d images at %d px in %.1f s -> %s", name, n, size, time.perf_counter() - start, target)
        return target
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def _write_dataset(root: Path, name: str, n: int, size: int, seed: int, progress: bool, workers: int) -> dict:
    """Plan, draw and write one dataset into ``root``; returns the synthcxr.json summary."""
    from tqdm.auto import tqdm

    from g2d_bench.datasets.synthcxr.cases import Job, TruthWriter
    from g2d_bench.datasets.synthcxr.writers import WRITERS

    writer = WRITERS[name]()
    sub = subseed(seed, name)
    cases = writer.plan(np.random.default_rng(sub), n)
    truth = TruthWriter(root, writer.text_labels, writer.label_space)
    job = Job(root, size, sub, writer, truth)
    with _map(job, cases, workers) as results:
        for case, result in zip(cases, tqdm(results, total=len(cases), desc=f"SynthCXR {name}", unit="img",
                                            disable=not progress, leave=False)):
            result.apply(case)
            truth.extend(result.image_row, result.finding_rows)
    writer.tables(root, cases, size)
    truth.close()
    return _summary(name, n, size, seed, sub, writer, cases, truth)


def _single_thread_cv2() -> None:
    import cv2

    cv2.setNumThreads(1)  # small images: OpenCV's thread pool costs more than it saves


@contextlib.contextmanager
def _map(job, cases: list, workers: int):
    """``job`` over ``cases`` in order: inline, or in ``workers`` spawned processes (images depend
    only on (seed, case index), so the output is the same either way)."""
    import cv2

    if workers <= 1 or not _can_spawn():
        before = cv2.getNumThreads()
        _single_thread_cv2()
        try:
            yield map(job, cases)
        finally:
            cv2.setNumThreads(before)
        return
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context("spawn")  # safe beside torch/OpenMP threads, unlike fork
    with ProcessPoolExecutor(workers, mp_context=context, initializer=_single_thread_cv2) as pool:
        yield pool.map(job, cases, chunksize=16)


def _can_spawn() -> bool:
    """Spawned workers re-import ``__main__``: impossible when it was read from stdin."""
    import sys

    path = getattr(sys.modules.get("__main__"), "__file__", None)
    return path is None or os.path.exists(path)


def _summary(name: str, n: int, size: int, seed: int, sub: int, writer, cases, truth) -> dict:
    """synthcxr.json: what was generated, measured prevalences and noise rates (deterministic)."""
    from g2d_bench.datasets.synthcxr.findings import CTR_THRESHOLD, MEDIASTINUM_THRESHOLD, NODULE_MIN_RADIUS
    from g2d_bench.datasets.synthcxr.reports import Noise

    frontal = [c for c in cases if c.view != "LATERAL"]
    names = sorted({f.name for c in frontal for f in c.findings})
    prevalences = {f: round(sum(any(x.name == f for x in c.findings) for c in frontal) / max(len(frontal), 1), 4)
                   for f in names}
    return {
        "version": SYNTH_VERSION, "dataset": name, "seed": seed, "subseed": sub, "n": n, "size": size,
        "counts": writer.counts(cases), "prevalences": prevalences, "noise": _noise(writer, cases, truth, n),
        "planned_noise": asdict(Noise()) if writer.text_labels else None,
        "thresholds": {"cardiothoracic_ratio": CTR_THRESHOLD, "mediastinum_half_width": MEDIASTINUM_THRESHOLD,
                       "nodule_min_radius_fraction": round(NODULE_MIN_RADIUS, 5)},
    }


def _noise(writer, cases, truth, n: int) -> dict:
    """Measured label noise: ``label_noise_rate`` = share of drawn findings whose label says otherwise
    (omitted or negated by the report); ``uncertain_label_rate`` = share of -1 among non-blank labels.
    Curated releases (labels from the drawing) have neither."""
    if not writer.text_labels:
        return {"text_labels": False, "label_noise_rate": 0.0, "uncertain_label_rate": 0.0}
    drawn = [r for r in truth.findings if r[5] == "1" and r[1] != "foreign_object"]
    out = {
        "text_labels": True,
        "label_noise_rate": round(sum(r[8] == "1" for r in drawn) / max(len(drawn), 1), 4),
        "hedged_drawn_findings": round(sum(r[7] == "1" for r in drawn) / max(len(drawn), 1), 4),
        "false_mentions_per_image": round(sum(r[5] == "0" and r[8] == "1" for r in truth.findings) / n, 4),
    }
    out.update(_uncertain_rates(cases))
    return out


def _uncertain_rates(cases) -> dict:
    """Share of uncertain (-1) among the non-blank label values, and of images with any -1."""
    values, any_uncertain, rows = 0, 0, 0
    uncertain = 0
    for c in cases:
        vals = [v for v in c.labels.values() if isinstance(v, float) and not math.isnan(v)]
        if not vals:
            continue
        rows += 1
        values += len(vals)
        uncertain += sum(v == -1.0 for v in vals)
        any_uncertain += any(v == -1.0 for v in vals)
    return {"uncertain_label_rate": round(uncertain / max(values, 1), 4),
            "images_with_uncertain_label": round(any_uncertain / max(rows, 1), 4)}


__all__ = ["SYNTH_VERSION", "DATASET_NAMES", "DEFAULT_COUNTS", "generate", "subseed"]
