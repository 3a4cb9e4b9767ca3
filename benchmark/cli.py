"""``g2d-bench``: the command line. The CLI decides what the user sees; library code only logs.

Errors a user can fix (:class:`~g2d_bench.errors.G2DBenchError`) become one line on stderr and
exit status 2. Heavy libraries are imported only by the subcommands that need them, so
``g2d-bench --help`` and ``g2d-bench list`` stay fast.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from g2d_bench.errors import G2DBenchError

DEFAULT_OUT = Path("runs")


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"fraction must be a number in (0, 1], got {text!r}") from None
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"fraction must be in (0, 1], got {text}")
    return value


def _csv(kind):
    def parse(text: str):
        return [kind(part) for part in text.split(",") if part]

    return parse


def _setting(text: str) -> tuple[str, object]:
    import yaml

    if "=" not in text:
        raise argparse.ArgumentTypeError(f"--set takes KEY=VALUE, got {text!r}")
    key, value = text.split("=", 1)
    return key, yaml.safe_load(value)


def _add_run_options(p: argparse.ArgumentParser, data_root_help: str = "", repeat_data_root: bool = False) -> None:
    text = data_root_help or "the unpacked release of the task's dataset (default: SynthCXR, generated on first use)"
    if repeat_data_root:
        p.add_argument("--data-root", action="append", default=[], help=text)
    else:
        p.add_argument("--data-root", help=text)
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder of run records (default: ./runs)")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--scale", choices=["paper", "cpu"], help="model/input size preset (default: cpu on SynthCXR, paper on real data)")
    p.add_argument("--arch", help="backbone for methods built from scratch (resnet18, resnet50, …)")
    p.add_argument("--image-size", type=int, help="task input size (default: the scale's, else the protocol's 224)")
    p.add_argument("--set", dest="settings", type=_setting, action="append", default=[], metavar="KEY=VALUE", help="override a task setting (see `g2d-bench list tasks -v`)")
    p.add_argument("--method-option", dest="method_options", type=_setting, action="append", default=[], metavar="KEY=VALUE",
                   help="an option of the method's loader, e.g. text_model=DIR (the local text-encoder folder of a published checkpoint)")
    p.add_argument("--skip-existing", action="store_true", help="do not rerun a key whose record is complete")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")


class _Parser(argparse.ArgumentParser):
    """argparse with one-line errors (no usage dump), like every other g2d-bench error."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from g2d_bench.methods import METHODS

    parser = _Parser(prog="g2d-bench", description="Benchmark for medical vision-language pretraining on chest X-rays.")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="log more (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    p = sub.add_parser("list", help="list registered methods, tasks or datasets")
    p.add_argument("what", choices=["methods", "tasks", "datasets"])

    p = sub.add_parser("run", help="run one method on one task at one label fraction")
    p.add_argument("--method", help="registered method (default: the one a --checkpoint folder from g2d-bench pretrain names)")
    p.add_argument("--task", required=True)
    p.add_argument("--fraction", type=_fraction, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--checkpoint", help="weights of the method: a folder written by g2d-bench pretrain, or a file the method loads")
    _add_run_options(p)

    p = sub.add_parser("sweep", help="run a grid of methods × tasks × fractions × seeds (resumable, shardable, on SLURM)")
    p.add_argument("--grid", help="a named grid (smoke, reference, paper) or a grid YAML file; flags below override it")
    p.add_argument("--methods", type=_csv(str), help="methods (required without --grid)")
    p.add_argument("--tasks", type=_csv(str), help="tasks (required without --grid)")
    p.add_argument("--fractions", type=_csv(_fraction), help="label fractions (default: the grid's, else 0.01,0.1,1)")
    p.add_argument("--seeds", type=_csv(int), help="seeds (default: the grid's, else 0,1)")
    p.add_argument("--checkpoint", action="append", default=[], metavar="METHOD=PATH", help="weights of a method (repeatable)")
    p.add_argument("--shard", help="i/n: run only every n-th combination starting at i (0 <= i < n), for other schedulers' arrays")
    p.add_argument("--executor", choices=["inline", "local", "slurm"], default="inline",
                   help="inline: this process; local: submitit worker processes; slurm: a submitit job array")
    p.add_argument("--shards", type=int, default=8, help="local/slurm: jobs the grid is split into (default 8)")
    p.add_argument("--partition", help="slurm: partition")
    p.add_argument("--gpus", type=int, default=0, help="slurm: GPUs per job")
    p.add_argument("--cpus", type=int, default=2, help="slurm: CPUs per job")
    p.add_argument("--mem-gb", type=float, default=24, help="slurm: memory per job")
    p.add_argument("--time", type=int, default=240, help="local/slurm: minutes per job")
    p.add_argument("--array-parallelism", type=int, default=32, help="slurm: jobs of the array running at once")
    p.add_argument("--submitit-folder", type=Path, default=Path("submitit"), help="local/slurm: job logs and pickles")
    _add_run_options(p, data_root_help="release folder, or DATASET=FOLDER (repeatable) for a grid over several datasets",
                     repeat_data_root=True)

    from g2d_bench.leaderboard import add_leaderboard_arguments
    from g2d_bench.reported import add_compare_reported_arguments

    add_leaderboard_arguments(sub.add_parser("leaderboard", help="tables from run records (one column per task x fraction, or G2D's paper tables)"))
    add_compare_reported_arguments(sub.add_parser("compare-reported", help="measured cells beside the G2D paper's reported numbers"))

    p = sub.add_parser("regress", help="re-run (or read) a reference grid and fail on metric cells that moved beyond their tolerance")
    p.add_argument("--reference", type=Path, default=Path("results/reference/smoke.csv"), help="reference CSV (default: results/reference/smoke.csv)")
    p.add_argument("--runs", type=Path, help="compare these records instead of re-running the reference's grid")
    p.add_argument("--methods", type=_csv(str), help="check only these methods")
    p.add_argument("--tasks", type=_csv(str), help="check only these tasks")
    p.add_argument("--write-reference", action="store_true", help="write --reference from --runs (with --grid and --tolerances) instead of checking")
    p.add_argument("--grid", help="with --write-reference: the grid the runs came from")
    p.add_argument("--tolerances", type=Path, default=Path("results/reference/tolerances.yaml"), help="with --write-reference: metric tolerances and their justification")
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("plot", help="plots from run records (matplotlib PNG/SVG)")
    p.add_argument("kind", choices=["data-efficiency", "per-class"])
    p.add_argument("--runs", type=Path, default=DEFAULT_OUT, help="folder of run records (default: ./runs)")
    p.add_argument("--out", type=Path, default=Path("results/plots"), help="output folder (default: results/plots)")
    p.add_argument("--task", help="per-class: the task (e.g. cxr14-ft)")
    p.add_argument("--tasks", type=_csv(str), help="data-efficiency: only these tasks")
    p.add_argument("--metric", help="data-efficiency: this metric instead of each task's primary")
    p.add_argument("--svg", action="store_true", help="SVG beside each PNG")

    p = sub.add_parser("figure", help="figures of a method's outputs on a task's test images")
    figures = p.add_subparsers(dest="figure_command", required=True, parser_class=_Parser)
    p = figures.add_parser("grounding", help="zero-shot grounding maps: image, heat map, ground-truth outline, prompt (one PNG per image)")
    p.add_argument("--method", required=True)
    p.add_argument("--task", default="rsna-ground", help="a grounding task: rsna-ground (default) or siim-ground")
    p.add_argument("--checkpoint", help="weights of the method (default on SynthCXR: its quick model)")
    p.add_argument("--out", type=Path, default=Path("figures"), help="output folder (default: ./figures)")
    p.add_argument("-n", type=int, default=4, help="positive test images to draw, in the manifest's order (default: 4)")
    p.add_argument("--data-root", help="the unpacked release of the task's dataset (default: SynthCXR)")
    p.add_argument("--scale", choices=["paper", "cpu"], help="model/input size preset (default: cpu on SynthCXR, paper on real data)")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--image-size", type=int, help="input size (default: the scale's, else the task's 224)")
    p.add_argument("--set", dest="settings", type=_setting, action="append", default=[], metavar="KEY=VALUE",
                   help="override a task setting (threshold=90, upsample=nearest, …)")
    p.add_argument("--no-progress", action="store_true")

    p = sub.add_parser("report", help="one self-contained HTML page: tables, plots, provenance of every cell")
    p.add_argument("--runs", type=Path, default=DEFAULT_OUT, help="folder of run records (default: ./runs)")
    p.add_argument("--out", type=Path, required=True, help="output folder (index.html)")
    p.add_argument("--tasks", type=_csv(str), help="only these tasks")
    p.add_argument("--metric", help="this metric instead of each task's primary")
    p.add_argument("--title", default="g2d-bench report")
    p.add_argument("--no-embed", action="store_true", help="write the plots beside the page instead of embedding them")

    p = sub.add_parser("pretrain", help="pretrain a VLP method (single process, or multi-GPU under torchrun)")
    p.add_argument("--method", default="g2d")
    p.add_argument("--data", default="mimic-cxr", help="dataset of image–report pairs (default: mimic-cxr)")
    p.add_argument("--data-root", help="the unpacked MIMIC-CXR-JPG + reports (default: SynthCXR's MIMIC-format copy)")
    p.add_argument("--profile", default="paper", help="consistent hyperparameter set: paper (default) or official code; a method may name others")
    p.add_argument("--scale", choices=["paper", "cpu"], help="model size (default: cpu on SynthCXR, paper on real data)")
    p.add_argument("--out", type=Path, help="checkpoint folder (default: pretrain/<method>-<profile>-<scale>)")
    p.add_argument("--batch-size", type=int, help="global batch (default: the profile's)")
    p.add_argument("--epochs", type=float)
    p.add_argument("--max-steps", type=int)
    p.add_argument("--lr", type=float)
    p.add_argument("--grad-accum", type=int, default=1)
    p.add_argument("--checkpoint-every", type=int, default=200)
    p.add_argument("--workers", type=int, default=0, help="data-loader worker processes")
    p.add_argument("--sync-bn", action="store_true", help="multi-GPU: SyncBatchNorm (default: per-GPU BatchNorm, as the official G2D code)")
    p.add_argument("--device")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--amp", action=argparse.BooleanOptionalAction, default=None, help="mixed precision (default: on with CUDA)")
    p.add_argument("--set", dest="settings", type=_setting, action="append", default=[], metavar="KEY=VALUE", help="override a method setting")
    p.add_argument("--no-progress", action="store_true")

    for name in METHODS.names():  # subcommands a method contributes through its registry entry
        entry = METHODS.get(name)
        if entry.commands is not None:
            commands = entry.get_commands()
            commands.add_arguments(sub.add_parser(name, help=commands.help))

    data = sub.add_parser("data", help="SynthCXR generation, split manifests, checks").add_subparsers(dest="data_command", required=True, parser_class=_Parser)
    p = data.add_parser("synth", help="write SynthCXR in the seven release formats")
    p.add_argument("--out", type=Path, required=True)
    p.add_argument("--n", type=int, help="images per dataset (default: SynthCXR's default counts)")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--datasets", type=_csv(str), help="only these datasets (default: all seven)")
    p.add_argument("--no-progress", action="store_true")
    p = data.add_parser("prepare", help="write deterministic split manifests for a local copy of a release")
    p.add_argument("dataset")
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--out", type=Path, default=Path("manifests"))
    p = data.add_parser("check", help="verify a local copy against its manifests")
    p.add_argument("dataset")
    p.add_argument("--root", type=Path, required=True)
    p.add_argument("--manifests", type=Path, default=Path("manifests"))
    p.add_argument("--no-images", action="store_true", help="skip the image-file existence check")
    return parser


def cmd_list(args) -> int:
    from g2d_bench.datasets import DATASETS
    from g2d_bench.methods import METHODS
    from g2d_bench.tasks import TASKS

    registry = {"methods": METHODS, "tasks": TASKS, "datasets": DATASETS}[args.what]
    width = max(len(n) for n in registry.names())
    for name in registry.names():
        print(f"{name:<{width}}  {registry.help(name)}")
        if args.verbose and args.what == "tasks":
            spec = registry.get(name)
            print(f"{'':<{width}}  dataset={spec.dataset} split={spec.split} protocol={spec.protocol} v{spec.version}")
            for key, hyper in spec.hparams.items():
                print(f"{'':<{width}}    {key} = {hyper.value!r}  ({hyper.source})")
    return 0


def _config(args, method: str, task: str, fraction: float, seed: int, checkpoint: str | None):
    """The RunConfig of ``run`` from its flags."""
    from g2d_bench.runner import RunConfig

    return RunConfig(
        method=method, task=task, fraction=fraction, seed=seed, checkpoint=checkpoint,
        data_root=args.data_root, out=args.out, device=args.device, scale=args.scale, arch=args.arch,
        image_size=args.image_size, overrides=dict(args.settings), skip_existing=args.skip_existing,
        progress=not args.no_progress, method_options=dict(args.method_options),
    )


def _summary(path: Path) -> str:
    import json

    record = json.loads(path.read_text())
    if record["status"] != "ok":
        return f"{path}: skipped ({record.get('reason')})"
    primary = record["primary"]
    return f"{record['key']['method']} {record['key']['task']} {record['key']['fraction']:g} seed {record['key']['seed']}: {primary} = {record['metrics'][primary]:.4f}  ({path})"


def cmd_run(args) -> int:
    from g2d_bench.methods import METHODS
    from g2d_bench.runner import run
    from g2d_bench.tasks import TASKS

    from g2d_bench.method import check_checkpoint_method, method_for_checkpoint

    if args.checkpoint and not Path(args.checkpoint).expanduser().exists():
        raise G2DBenchError(f"--checkpoint {args.checkpoint} does not exist")
    method = args.method or method_for_checkpoint(args.checkpoint)
    if method is None:
        raise G2DBenchError("--method is required (only a --checkpoint folder written by g2d-bench pretrain names its method)")
    METHODS.get(method)  # unknown names fail before any work
    TASKS.get(args.task)
    check_checkpoint_method(method, args.checkpoint)
    path = run(_config(args, method, args.task, args.fraction, args.seed, args.checkpoint))
    print(_summary(path))
    _print_next_steps(path, args)
    return 0


def _print_next_steps(path: Path, args) -> None:
    """After a single run: where the record is, its metric, and the command that runs random init on
    the same task, fraction, seed, data and task settings and tabulates both."""
    import json
    import shlex

    record = json.loads(path.read_text())
    if record["status"] != "ok":
        return
    key = record["key"]
    print(f"record: {path}")
    if key["method"] == "random":
        return
    same = [f"--task {key['task']}", f"--fraction {key['fraction']:g}", f"--seed {key['seed']}",
            f"--image-size {key['image_size']}"]
    if args.data_root:
        same.append(f"--data-root {shlex.quote(str(args.data_root))}")
    if args.scale:
        same.append(f"--scale {args.scale}")
    same += [f"--set {shlex.quote(f'{k}={v}')}" for k, v in args.settings]
    where = "" if Path(args.out) == DEFAULT_OUT else f" --out {shlex.quote(str(args.out))}"
    print(f"compare with random init: g2d-bench run --method random {' '.join(same)}{where} && "
          f"g2d-bench leaderboard --tasks {key['task']}{where}")


def _sweep_grid(args):
    """The grid of a ``sweep`` command: ``--grid`` and/or the flags."""
    from dataclasses import replace

    from g2d_bench.sweep import Grid, load_grid, validate

    if args.grid:
        grid = load_grid(args.grid)
    elif args.methods and args.tasks:
        grid = Grid(name="cli", methods=tuple(args.methods), tasks=tuple(args.tasks), seeds=(0, 1))
    else:
        raise G2DBenchError("sweep needs --grid NAME, or --methods and --tasks")
    changes = {key: tuple(getattr(args, key)) for key in ("methods", "tasks", "fractions", "seeds") if getattr(args, key)}
    checkpoints = dict(grid.checkpoints)
    for item in args.checkpoint:
        if "=" not in item:
            raise G2DBenchError(f"--checkpoint in a sweep takes METHOD=PATH, got {item!r}")
        method, path = item.split("=", 1)
        if not Path(path).expanduser().exists():
            raise G2DBenchError(f"--checkpoint {path} (for {method}) does not exist")
        checkpoints[method] = path
    roots = dict(grid.data_roots)
    for item in args.data_root:
        if "=" in item:
            dataset, path = item.split("=", 1)
            roots[dataset] = path
        else:  # one folder for every dataset of the grid (a grid over one dataset)
            from g2d_bench.tasks import TASKS

            roots.update({TASKS.get(t).dataset: item for t in changes.get("tasks", grid.tasks)})
    if args.method_options:
        raise G2DBenchError("a sweep takes method options from its grid file (method_options: {METHOD: {KEY: VALUE}}), not --method-option")
    overrides = {**grid.overrides, **dict(args.settings)}
    grid = replace(grid, **changes, checkpoints=checkpoints, data_roots=roots, overrides=overrides,
                   scale=args.scale or grid.scale, image_size=args.image_size or grid.image_size)
    validate(grid)
    return grid


def cmd_sweep(args) -> int:
    from tqdm.auto import tqdm

    from g2d_bench.runner import parse_shard
    from g2d_bench.sweep import ClusterOptions, iter_runs, shard_of, submit, wait

    grid = _sweep_grid(args)
    if args.executor == "inline":
        shard = parse_shard(args.shard)
        total = len(shard_of(grid.combinations(), shard))
        bar = tqdm(total=total, desc=f"sweep {grid.name}", unit="run", disable=args.no_progress)
        for path in iter_runs(grid, args.out, shard, device=args.device, skip_existing=args.skip_existing):
            bar.update(1)
            bar.write(_summary(path))
        bar.close()
        return 0
    if args.shard:
        raise G2DBenchError("--shard is for the inline executor; local/slurm split the grid into --shards jobs themselves")
    options = ClusterOptions(folder=args.submitit_folder, partition=args.partition, gpus_per_node=args.gpus, cpus_per_task=args.cpus,
                             mem_gb=args.mem_gb, timeout_min=args.time, array_parallelism=args.array_parallelism, shards=args.shards)
    jobs = submit(grid, args.out, args.executor, options, device=args.device, skip_existing=args.skip_existing)
    print(f"submitted {len(jobs)} {args.executor} job(s) for {len(grid.combinations())} runs; logs under {args.submitit_folder}", flush=True)
    for path in wait(jobs, len(grid.combinations()), progress=not args.no_progress):
        print(_summary(Path(path)))
    return 0


def _emit(text: str, save: Path | None) -> None:
    """Print ``text``, or write it to ``save`` atomically."""
    if save:
        from g2d_bench.io import atomic_write

        with atomic_write(save) as handle:
            handle.write(text)
    else:
        print(text, end="")


def cmd_leaderboard(args) -> int:
    from g2d_bench.leaderboard import leaderboard_command

    _emit(leaderboard_command(args), args.save)
    return 0


def cmd_compare_reported(args) -> int:
    from g2d_bench.reported import compare_reported_command

    _emit(compare_reported_command(args), args.save)
    return 0


def cmd_data(args) -> int:
    if args.data_command == "synth":
        from g2d_bench.datasets.synthcxr import DATASET_NAMES, generate

        written = generate(args.out, datasets=args.datasets or DATASET_NAMES, n=args.n, size=args.size, seed=args.seed, progress=not args.no_progress)
        for name, folder in written.items():
            print(f"{name}: {folder}")
        return 0
    if args.data_command == "prepare":
        from g2d_bench.datasets.manifests import prepare

        folder = prepare(args.dataset, args.root, args.out)
        print(f"wrote manifests for {args.dataset} to {folder}")
        return 0
    from g2d_bench.datasets.manifests import check

    report = check(args.dataset, args.root, args.manifests, images=not args.no_images)
    for name, counts in report.checked.items():
        print(f"{name}: train {counts['train']}, valid {counts['valid']}, test {counts['test']}")
    if report.ok:
        print(f"{args.dataset}: local copy matches the manifests")
        return 0
    for problem in report.problems:
        print(f"DIFFERS: {problem}")
    return 1


def cmd_pretrain(args) -> int:
    from g2d_bench.pretrain import PretrainConfig, pretrain

    scale = args.scale or ("cpu" if args.data_root is None else "paper")
    out = args.out or Path("pretrain") / f"{args.method}-{args.profile}-{scale}"
    config = PretrainConfig(
        method=args.method, dataset=args.data, data_root=args.data_root, out=out, profile=args.profile, scale=scale,
        seed=args.seed, batch_size=args.batch_size, epochs=args.epochs, max_steps=args.max_steps, grad_accum=args.grad_accum,
        lr=args.lr, amp=args.amp, checkpoint_every=args.checkpoint_every, num_workers=args.workers, device=args.device, sync_bn=args.sync_bn,
        progress=not args.no_progress, method_overrides=dict(args.settings),
    )
    folder = pretrain(config)
    print(f"checkpoint: {folder}  (use: g2d-bench run --method {args.method} --checkpoint {folder} ...)")
    return 0


def _only(args) -> dict[str, set] | None:
    only = {}
    if args.methods:
        only["method"] = set(args.methods)
    if args.tasks:
        only["task"] = set(args.tasks)
    return only or None


def cmd_regress(args) -> int:
    import shlex

    from g2d_bench.regress import provenance, regress, write_reference

    if args.write_reference:
        import yaml

        from g2d_bench.records import iter_records
        from g2d_bench.sweep import load_grid

        if not (args.runs and args.grid):
            raise G2DBenchError("--write-reference needs --runs (the records) and --grid (the grid that made them)")
        if not args.tolerances.is_file():
            raise G2DBenchError(f"tolerances file {args.tolerances} does not exist")
        tolerances = yaml.safe_load(args.tolerances.read_text())["tolerances"]
        command = "g2d-bench " + " ".join(shlex.quote(a) for a in sys.argv[1:])
        path = write_reference(iter_records(args.runs), args.reference, tolerances, provenance(load_grid(args.grid).to_dict(), command))
        print(f"wrote {path} and {path.with_suffix('.json')}")
        return 0
    outcome = regress(args.reference, args.runs, _only(args), progress=not args.no_progress)
    if outcome.ok:
        print(f"regress: {outcome.checked} cells of {args.reference} within tolerance"
              + (f" ({outcome.extra} measured cells have no reference)" if outcome.extra else ""))
        return 0
    print(f"regress: {len(outcome.moved)} of {outcome.checked} cells moved beyond tolerance, {len(outcome.missing)} missing")
    print(outcome.table(), end="")
    return 1


def cmd_plot(args) -> int:
    from g2d_bench import plots
    from g2d_bench.records import iter_records

    records = list(iter_records(args.runs))
    if not records:
        raise G2DBenchError(f"no complete run records under {args.runs}")
    formats = ("png", "svg") if args.svg else ("png",)
    if args.kind == "per-class":
        if not args.task:
            raise G2DBenchError("plot per-class needs --task (e.g. cxr14-ft)")
        paths = plots.per_class_bars(records, args.task, args.out, formats=formats)
    else:
        from g2d_bench.stats import cell_interval_or_none

        # bands: the test-set bootstrap 95 % CI of each cell (benchmark/stats.py)
        paths = plots.data_efficiency(records, args.out, metric=args.metric, tasks=args.tasks, formats=formats, cell_ci=cell_interval_or_none)
    for path in paths:
        print(path)
    return 0


def cmd_report(args) -> int:
    from g2d_bench.report import write_report
    from g2d_bench.stats import cell_interval_or_none

    print(write_report(args.runs, args.out, metric=args.metric, tasks=args.tasks, embed=not args.no_embed, title=args.title,
                       cell_ci=cell_interval_or_none))
    return 0


def cmd_figure(args) -> int:
    from g2d_bench.tasks.grounding import figure_grounding

    paths = figure_grounding(args.method, args.task, checkpoint=args.checkpoint, out=args.out, n=args.n, data_root=args.data_root,
                             scale=args.scale, device=args.device, image_size=args.image_size, overrides=dict(args.settings),
                             progress=not args.no_progress)
    for path in paths:
        print(path)
    return 0


def cmd_method(args) -> int:
    """A method's own subcommand (``g2d-bench g2d masks``): dispatched to its registry entry."""
    from g2d_bench.methods import METHODS

    return METHODS.get(args.command).get_commands().run(args)


COMMANDS = {"list": cmd_list, "run": cmd_run, "sweep": cmd_sweep, "leaderboard": cmd_leaderboard, "data": cmd_data, "pretrain": cmd_pretrain,
            "regress": cmd_regress, "plot": cmd_plot, "report": cmd_report, "compare-reported": cmd_compare_reported,
            "figure": cmd_figure}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    # Offline by default: a hub name then fails at once instead of retrying for a minute (ENVIRONMENT.md).
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    level = [logging.WARNING, logging.INFO, logging.DEBUG][min(args.verbose, 2)]
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    try:
        return COMMANDS.get(args.command, cmd_method)(args)
    except G2DBenchError as exc:
        print(f"g2d-bench: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("g2d-bench: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
