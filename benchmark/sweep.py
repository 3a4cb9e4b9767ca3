"""Named grids and sweeps: method × task × fraction × seed, run in this process, as local worker
processes, or as a SLURM job array — all through the same code path (:func:`run_shard`).

A grid is a data file (``benchmark/grids/NAME.yaml``, or any YAML path): methods, tasks,
fractions, seeds and the run settings they share (scale, input size, SynthCXR size, task setting
overrides, the budget of the quick models it pretrains, checkpoints, data roots per dataset).
Executors:

- ``inline``: this process, a progress bar with ETA over the runs;
- ``local``: submitit's ``LocalExecutor`` — the SLURM code path (pickled job function, one job per
  shard, logs in the submitit folder) as processes on this machine; the tests use it;
- ``slurm``: submitit's ``AutoExecutor(cluster="slurm")``, a job array of ``shards`` jobs
  (partition, GPUs, time, array parallelism as options).

Records land in one run-record folder whatever the executor; ``skip_existing`` makes any of them
resumable. Two sweeps may share a cache and a results folder at the same time: first-use work
(SynthCXR generation, quick pretraining) is serialised by file locks, records are written
atomically (benchmark/records.py).
"""
from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator, Sequence

from g2d_bench.errors import G2DBenchError

log = logging.getLogger(__name__)
GRID_DIR = Path(__file__).parent / "grids"
EXECUTORS = ("inline", "local", "slurm")


@dataclass(frozen=True)
class Grid:
    """A named grid of runs and the settings they share (see the module docstring)."""

    name: str
    methods: tuple[str, ...]
    tasks: tuple[str, ...]
    fractions: tuple[float, ...] = (0.01, 0.1, 1.0)
    seeds: tuple[int, ...] = (0,)
    #: task → its own fractions, replacing ``fractions`` for that task (a grid sized to a budget)
    task_fractions: dict[str, tuple[float, ...]] = field(default_factory=dict)
    description: str = ""
    scale: str | None = None
    image_size: int | None = None
    #: images per SynthCXR dataset (``G2D_BENCH_SYNTH_N``); None = SynthCXR's defaults
    synth_n: int | None = None
    #: task settings for every task that has them (``--set``), then per task
    overrides: dict[str, Any] = field(default_factory=dict)
    task_overrides: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: QuickBudget fields replacing the recipes' own for this grid's quick models
    quick: dict[str, Any] = field(default_factory=dict)
    checkpoints: dict[str, str] = field(default_factory=dict)
    #: dataset → release folder (real data); empty = SynthCXR
    data_roots: dict[str, str] = field(default_factory=dict)
    #: method → options of its adapter factory (e.g. {gloria: {text_model: DIR}})
    method_options: dict[str, dict[str, Any]] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], name: str | None = None) -> "Grid":
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise G2DBenchError(f"grid {name or data.get('name')!r}: unknown field(s) {unknown}; known: {', '.join(sorted(known))}")
        data = {**data, "name": data.get("name", name)}
        for key in ("methods", "tasks", "fractions", "seeds"):
            if key in data:
                data[key] = tuple(data[key])
        if "task_fractions" in data:
            data["task_fractions"] = {task: tuple(fractions) for task, fractions in data["task_fractions"].items()}
        return cls(**data)

    def combinations(self) -> list[tuple[str, str, float, int]]:
        """(method, task, fraction, seed) in a fixed order: by method, task, fraction, then seed. A task
        that uses no training data (``TaskSpec.uses_fraction`` false: zero-shot) runs at fraction 1 only;
        a task in ``task_fractions`` runs at its own fractions."""
        from g2d_bench.runner import check_fraction
        from g2d_bench.tasks import TASKS

        out = []
        for method in self.methods:
            for task in self.tasks:
                spec = TASKS.get(task) if task in TASKS else None
                fractions = [check_fraction(f) for f in self.task_fractions.get(task, self.fractions)]
                for fraction in (fractions if spec is None or spec.uses_fraction else [1.0]):
                    out.extend((method, task, fraction, seed) for seed in self.seeds)
        return out


def load_grid(name_or_path: str | os.PathLike) -> Grid:
    """A grid by name (``benchmark/grids/NAME.yaml``) or from a YAML file; ``methods: all`` means
    every registered method."""
    import yaml

    path = Path(name_or_path)
    if not path.suffix:
        path = GRID_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in GRID_DIR.glob("*.yaml")))
        raise G2DBenchError(f"no grid {str(name_or_path)!r} (named grids: {known}; or pass the path of a YAML file)")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise G2DBenchError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from exc
    if data.get("methods") == "all":
        from g2d_bench.methods import METHODS

        data["methods"] = METHODS.names()
    grid = Grid.from_dict(data, name=path.stem)
    validate(grid)
    return grid


def validate(grid: Grid) -> None:
    """Unknown methods or tasks fail before any work."""
    from g2d_bench.methods import METHODS
    from g2d_bench.tasks import TASKS

    for name in grid.methods:
        METHODS.get(name)
    for name in grid.tasks:
        TASKS.get(name)
    for name in (*grid.task_overrides, *grid.task_fractions):
        TASKS.get(name)


def run_config(grid: Grid, combo: tuple[str, str, float, int], out: Path, home: Path | None = None, device: str | None = None,
               skip_existing: bool = False, progress: bool = False):
    """The :class:`~g2d_bench.runner.RunConfig` of one grid cell: grid-wide overrides only where the
    task has the setting, then the task's own."""
    from g2d_bench.runner import RunConfig
    from g2d_bench.tasks import TASKS

    method, task, fraction, seed = combo
    spec = TASKS.get(task)
    overrides = {k: v for k, v in grid.overrides.items() if k in spec.hparams}
    overrides.update(grid.task_overrides.get(task, {}))
    return RunConfig(
        method=method, task=task, fraction=fraction, seed=seed, checkpoint=grid.checkpoints.get(method),
        data_root=grid.data_roots.get(spec.dataset), out=Path(out), device=device, scale=grid.scale,
        image_size=grid.image_size, overrides=overrides, skip_existing=skip_existing, progress=progress, home=home,
        quick=dict(grid.quick) or None, method_options=dict(grid.method_options.get(method, {})),
    )


def shard_of(items: Sequence, shard: tuple[int, int]) -> list:
    i, n = shard
    return [item for index, item in enumerate(items) if index % n == i]


def _synth_n(grid: Grid) -> None:
    if grid.synth_n is not None:
        os.environ["G2D_BENCH_SYNTH_N"] = str(grid.synth_n)


def iter_runs(grid: Grid, out: Path, shard: tuple[int, int] = (0, 1), home: Path | None = None, device: str | None = None,
              skip_existing: bool = False, progress: bool = False) -> Iterator[Path]:
    """Run shard ``i`` of ``n`` of the grid in this process; yields record paths as they are written."""
    from g2d_bench.runner import run

    _synth_n(grid)
    for combo in shard_of(grid.combinations(), shard):
        yield run(run_config(grid, combo, out, home, device, skip_existing, progress))


def run_shard(grid: dict, out: str, shard: tuple[int, int], home: str | None = None, device: str | None = None,
              skip_existing: bool = True) -> list[str]:
    """A job of the ``local`` and ``slurm`` executors (picklable by reference): run one shard of the
    grid, return its record paths."""
    return [str(p) for p in iter_runs(Grid.from_dict(grid), Path(out), shard, Path(home) if home else None, device, skip_existing)]


@dataclass
class ClusterOptions:
    """submitit settings of the ``slurm`` (and ``local``) executors."""

    folder: Path = Path("submitit")
    partition: str | None = None
    gpus_per_node: int = 0
    cpus_per_task: int = 2
    mem_gb: float = 24
    timeout_min: int = 240
    array_parallelism: int = 32
    shards: int = 8  # jobs in the array; each runs every shards-th cell


def submit(grid: Grid, out: Path, executor: str, options: ClusterOptions, home: Path | None = None, device: str | None = None,
           skip_existing: bool = True):
    """Submit the grid as ``options.shards`` jobs (a job array on SLURM); returns the submitit jobs."""
    import submitit

    if executor == "local":
        pool = submitit.LocalExecutor(folder=str(options.folder))
        pool.update_parameters(timeout_min=options.timeout_min)
    elif executor == "slurm":
        pool = submitit.AutoExecutor(folder=str(options.folder), cluster="slurm")
        params = dict(timeout_min=options.timeout_min, gpus_per_node=options.gpus_per_node, cpus_per_task=options.cpus_per_task,
                      mem_gb=options.mem_gb, slurm_array_parallelism=options.array_parallelism, name=f"g2d-bench-{grid.name}")
        if options.partition:
            params["slurm_partition"] = options.partition
        pool.update_parameters(**params)
    else:
        raise G2DBenchError(f"unknown executor {executor!r}; choose one of {', '.join(EXECUTORS)}")
    shards = max(1, min(options.shards, len(grid.combinations())))
    args = [(grid.to_dict(), str(Path(out).resolve()), (i, shards), str(home) if home else None, device, skip_existing) for i in range(shards)]
    return pool.map_array(run_shard, *zip(*args))


def wait(jobs, total_runs: int, progress: bool = True, poll_s: float = 2.0) -> list[str]:
    """Block until every job ends, with a progress bar over jobs; a failed job raises with its
    submitit log folder named."""
    from tqdm.auto import tqdm

    bar = tqdm(total=len(jobs), desc=f"jobs ({total_runs} runs)", unit="job", disable=not progress)
    pending = list(jobs)
    while pending:
        done = [job for job in pending if job.done()]
        for job in done:
            pending.remove(job)
            bar.update(1)
        if pending:
            time.sleep(poll_s)
    bar.close()
    paths: list[str] = []
    for job in jobs:
        try:
            paths.extend(job.result())
        except Exception as exc:  # submitit re-raises the job's error with its traceback
            raise G2DBenchError(f"sweep job {job.job_id} failed ({type(exc).__name__}); its logs: {job.paths.stdout.parent}") from exc
    return paths
