"""method × task × fraction × seed → one run record.

The runner resolves the task spec and the method adapter, loads the task's data (SynthCXR when no
``--data-root``), runs the task family, and writes the record. Everything a number depends on goes
into the record's key or body.
"""
from __future__ import annotations

import logging
import random
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from g2d_bench.errors import G2DBenchError
from g2d_bench.records import RunKey, is_complete, provenance, record_path, write_record

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Scale:
    """Model and input size presets. ``paper``: the protocols' own sizes (224 px) and ResNet-50;
    ``cpu``: what 2 CPU cores can sweep on SynthCXR (96 px as in SYNTHCXR.md's prototype, ResNet-18;
    a U-Net epoch at 128 px was ~1.8x slower). Part of every run key.

    ``task_settings``: task hyperparameters the scale sets (for tasks that have them, unless the run
    sets them itself). The CPU scale gives the dense tasks at least 10 optimizer steps per epoch:
    SynthCXR's 1 % training sets are 14 images (one batch, 50 steps in 50 epochs, too few for a
    decoder or detection head to learn anything), where the real 1 % sets of SIIM (84 images,
    batch 8), RSNA (160, batch 16) take 10 steps per epoch (G2D Table 6 sizes)."""

    name: str
    image_size: int | None  # None: the task's own image_size
    arch: str
    task_settings: tuple[tuple[str, Any], ...] = ()


SCALES = {
    "paper": Scale("paper", None, "resnet50"),
    # fine-tuning trains the whole encoder: at CPU scale a run is capped at batch 16, 10 epochs,
    # patience 3 (tasks/finetune.py, docs/zero_shot.md)
    "cpu": Scale("cpu", 96, "resnet18", (("min_steps_per_epoch", 10),
                                         ("finetune_budget", (("batch_size", 16), ("max_epochs", 10), ("patience", 3))))),
}


@dataclass
class RunConfig:
    method: str
    task: str
    fraction: float
    seed: int = 0
    checkpoint: str | None = None
    data_root: str | None = None
    out: Path = Path("runs")
    device: str | None = None
    scale: str | None = None  # default: "cpu" on SynthCXR, "paper" on real data
    arch: str | None = None
    image_size: int | None = None
    overrides: dict[str, Any] = field(default_factory=dict)
    skip_existing: bool = False
    progress: bool = False
    home: Path | None = None  # cache root (default $G2D_BENCH_CACHE or ~/.cache/g2d-bench)
    #: QuickBudget fields replacing the recipe's own for the quick model (a grid's tiny budgets)
    quick: dict[str, Any] | None = None
    #: keyword options of the method's adapter factory (e.g. GLoRIA/MGCA/G2D ``text_model`` for a
    #: published checkpoint's text side); part of the record key
    method_options: dict[str, Any] = field(default_factory=dict)

    def resolved_scale(self) -> Scale:
        name = self.scale or ("cpu" if self.data_root is None else "paper")
        if name not in SCALES:
            raise G2DBenchError(f"unknown --scale {name!r}; choose one of {', '.join(SCALES)}")
        return SCALES[name]


def check_fraction(fraction: float) -> float:
    if not 0.0 < fraction <= 1.0:
        raise G2DBenchError(f"--fraction must be in (0, 1], got {fraction}")
    return float(fraction)


def default_device() -> str:
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def seed_everything(seed: int) -> None:
    import numpy as np
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


_ADAPTERS: dict[tuple, object] = {}


def resolve_checkpoint(config: RunConfig) -> str | None:
    """The checkpoint a run evaluates: ``--checkpoint`` (a folder written by ``g2d-bench pretrain``
    must name this method), else — for a pretrainable method on SynthCXR at CPU scale — its quick
    model, pretrained once and cached (:func:`g2d_bench.quick.quick_checkpoint`), else ``None``."""
    from g2d_bench.method import check_checkpoint_method
    from g2d_bench.methods import METHODS
    from g2d_bench.quick import quick_checkpoint

    entry = METHODS.get(config.method)
    if config.checkpoint:
        check_checkpoint_method(config.method, config.checkpoint)
        return config.checkpoint
    if entry.pretrainable and config.resolved_scale().name == "cpu" and config.data_root is None:
        return str(quick_checkpoint(config.method, config.home, config.progress, config.quick))
    return None


def build_adapter(config: RunConfig, device: str | None = None):
    """The method adapter for ``config``, prepared for frozen use on ``device``
    (:meth:`~g2d_bench.adapter.MethodAdapter.prepare`) and kept for the process: a sweep builds each
    method once, and tasks never change it."""
    from g2d_bench.methods import METHODS

    scale = config.resolved_scale()
    device = device or config.device or default_device()
    checkpoint = resolve_checkpoint(config)
    options = dict(config.method_options)
    cache_key = (config.method, checkpoint, config.arch or scale.arch, scale.name, device, tuple(sorted(options.items())))
    if cache_key not in _ADAPTERS:
        try:
            adapter = METHODS.get(config.method).build_adapter(
                checkpoint, arch=config.arch or (None if checkpoint else scale.arch), scale=scale.name,
                progress=config.progress, home=config.home, **options,
            )
        except TypeError as exc:
            if options and "unexpected keyword" in str(exc):
                raise G2DBenchError(f"method {config.method!r} takes no option {str(exc).split('argument')[-1].strip()} "
                                    f"(--method-option {', '.join(options)})") from None
            raise
        _ADAPTERS[cache_key] = adapter.prepare(device)
    return _ADAPTERS[cache_key]


def _check_overrides(spec, overrides: dict[str, Any]) -> None:
    unknown = sorted(set(overrides) - set(spec.hparams))
    if unknown:
        raise G2DBenchError(f"task {spec.name} has no setting {unknown[0]!r} (settings: {', '.join(sorted(spec.hparams))})")


def run(config: RunConfig) -> Path:
    """Run one (method, task, fraction, seed); returns the record path."""
    from g2d_bench.data import cache_home, data_identity, load_task_data
    from g2d_bench.task import TaskContext
    from g2d_bench.tasks import TASKS

    spec = TASKS.get(config.task)
    fraction = check_fraction(config.fraction)
    _check_overrides(spec, config.overrides)
    scale = config.resolved_scale()
    image_size = int(config.image_size or config.overrides.get("image_size") or scale.image_size or spec.hparams["image_size"].value)
    device = config.device or default_device()
    adapter = build_adapter(config, device)
    overrides = {k: v for k, v in config.overrides.items() if k != "image_size"}
    # the scale's own task settings are part of the scale (in the key), not overrides (in the row label)
    scale_settings = {k: v for k, v in scale.task_settings if k in spec.hparams and k not in overrides}
    key = RunKey(
        method=config.method,
        checkpoint_hash=adapter.checkpoint_hash,
        task=spec.name,
        task_version=spec.version,
        fraction=fraction,
        seed=config.seed,
        image_size=image_size,
        overrides=tuple(sorted((k, str(v)) for k, v in overrides.items())),
        data=data_identity(spec.dataset, config.data_root, config.home),
        scale=scale.name,
        method_options=tuple(sorted((k, str(v)) for k, v in config.method_options.items())),
    )
    path = record_path(config.out, key)
    if config.skip_existing and is_complete(path):
        log.info("skip existing %s", path)
        return path
    body: dict[str, Any] = {
        "method": {"name": config.method, "arch": adapter.arch, "checkpoint": config.checkpoint, "checkpoint_hash": adapter.checkpoint_hash,
                   "description": adapter.description, "info": adapter.info},
        "task": spec.describe(),
        "scale": scale.name,
        "provenance": provenance(),
    }
    missing = sorted(c.value for c in spec.required(overrides) if not adapter.has(c))
    if missing:
        reason = f"method {config.method!r} lacks capability {', '.join(missing)} required by task {spec.name!r}"
        log.warning("skipped: %s", reason)
        return write_record(config.out, key, {**body, "status": "skipped", "reason": reason})

    started = time.time()
    data = load_task_data(spec, fraction, image_size, config.data_root, config.progress, config.home)
    seed_everything(config.seed)
    home = config.home or cache_home()
    with tempfile.TemporaryDirectory(prefix="g2d-run-") as workdir:
        ctx = TaskContext(
            spec=spec,
            adapter=adapter,
            data=data.split,
            fraction=fraction,
            seed=config.seed,
            device=device,
            workdir=Path(workdir),
            overrides={**scale_settings, **overrides, "image_size": image_size},
            progress=config.progress,
            cache_dir=home / "features" / key.data,  # features of other data never collide
        )
        family = _family(spec)
        result = family(ctx)
    body.update(
        status="ok",
        metrics=result.metrics,
        primary=spec.primary,
        config=ctx.resolved_hparams(),
        data={
            "dataset": spec.dataset,
            "split": spec.split,
            "manifest_sha256": data.manifest_sha256,
            "counts": data.counts(),
            **data.source,
        },
        info=result.info,
        device=device,
        wall_time_s=round(time.time() - started, 3),
    )
    return write_record(config.out, key, body, result.per_sample)


def _family(spec):
    from g2d_bench.registry import resolve_reference

    return resolve_reference(spec.run)


def parse_shard(text: str | None) -> tuple[int, int]:
    """``"i/n"`` (0 ≤ i < n) → (i, n); ``None`` → (0, 1)."""
    if not text:
        return 0, 1
    try:
        i, n = (int(part) for part in text.split("/"))
    except ValueError:
        raise G2DBenchError(f"--shard must look like i/n (e.g. 0/4), got {text!r}") from None
    if not 0 <= i < n:
        raise G2DBenchError(f"--shard {text}: need 0 <= i < n")
    return i, n
