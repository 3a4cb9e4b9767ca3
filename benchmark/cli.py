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


def _add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--data-root", help="the unpacked release of the task's dataset (default: SynthCXR, generated on first use)")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder of run records (default: ./runs)")
    p.add_argument("--device", help="torch device (default: cuda if available, else cpu)")
    p.add_argument("--scale", choices=["paper", "cpu"], help="model/input size preset (default: cpu on SynthCXR, paper on real data)")
    p.add_argument("--arch", help="backbone for methods built from scratch (resnet18, resnet50, …)")
    p.add_argument("--image-size", type=int, help="task input size (default: the scale's, else the protocol's 224)")
    p.add_argument("--set", dest="settings", type=_setting, action="append", default=[], metavar="KEY=VALUE", help="override a task setting (see `g2d-bench list tasks -v`)")
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

    p = sub.add_parser("sweep", help="run a grid of methods × tasks × fractions × seeds (resumable, shardable)")
    p.add_argument("--methods", type=_csv(str), required=True)
    p.add_argument("--tasks", type=_csv(str), required=True)
    p.add_argument("--fractions", type=_csv(_fraction), default=[0.01, 0.1, 1.0])
    p.add_argument("--seeds", type=_csv(int), default=[0, 1])
    p.add_argument("--checkpoint", action="append", default=[], metavar="METHOD=PATH", help="weights of a method (repeatable)")
    p.add_argument("--shard", help="i/n: run only every n-th combination starting at i (0 <= i < n), for job arrays")
    _add_run_options(p)

    p = sub.add_parser("leaderboard", help="tables from run records")
    p.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder of run records (default: ./runs)")
    p.add_argument("--format", choices=["md", "latex", "csv"], default="md")
    p.add_argument("--metric", help="report this metric instead of each task's primary metric")
    p.add_argument("--tasks", type=_csv(str), help="only these tasks")
    p.add_argument("--save", type=Path, help="write the table to this file (atomically) instead of stdout")

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
    from g2d_bench.runner import RunConfig

    return RunConfig(
        method=method, task=task, fraction=fraction, seed=seed, checkpoint=checkpoint,
        data_root=args.data_root, out=args.out, device=args.device, scale=args.scale, arch=args.arch,
        image_size=args.image_size, overrides=dict(args.settings), skip_existing=args.skip_existing,
        progress=not args.no_progress,
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
    _print_next_steps(path)
    return 0


def _print_next_steps(path: Path) -> None:
    """After a single run: where the record is, its metric, and how to compare it with random init."""
    import json

    record = json.loads(path.read_text())
    if record["status"] != "ok":
        return
    key = record["key"]
    print(f"record: {path}")
    if key["method"] != "random":
        print(f"compare with random init: g2d-bench run --method random --task {key['task']} --fraction {key['fraction']:g} "
              f"--seed {key['seed']} && g2d-bench leaderboard --tasks {key['task']}")


def cmd_sweep(args) -> int:
    from g2d_bench.methods import METHODS
    from g2d_bench.runner import parse_shard, sweep
    from g2d_bench.tasks import TASKS

    for name in args.methods:
        METHODS.get(name)
    for name in args.tasks:
        TASKS.get(name)
    checkpoints = {}
    for item in args.checkpoint:
        if "=" not in item:
            raise G2DBenchError(f"--checkpoint in a sweep takes METHOD=PATH, got {item!r}")
        method, path = item.split("=", 1)
        if not Path(path).expanduser().exists():
            raise G2DBenchError(f"--checkpoint {path} (for {method}) does not exist")
        checkpoints[method] = path
    base = _config(args, args.methods[0], args.tasks[0], args.fractions[0], args.seeds[0], None)
    for path in sweep(base, args.methods, args.tasks, args.fractions, args.seeds, parse_shard(args.shard), checkpoints):
        print(_summary(path), flush=True)
    return 0


def cmd_leaderboard(args) -> int:
    from g2d_bench.io import atomic_write
    from g2d_bench.leaderboard import FORMATS, build_table
    from g2d_bench.records import iter_records

    if not args.out.is_dir():
        raise G2DBenchError(f"no run records under {args.out}; run `g2d-bench run ...` first or pass --out")
    records = list(iter_records(args.out))
    if not records:
        raise G2DBenchError(f"no complete run records under {args.out}")
    text = FORMATS[args.format](build_table(records, args.metric, args.tasks))
    if args.save:
        with atomic_write(args.save) as handle:
            handle.write(text)
    else:
        print(text, end="")
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


def cmd_method(args) -> int:
    """A method's own subcommand (``g2d-bench g2d masks``): dispatched to its registry entry."""
    from g2d_bench.methods import METHODS

    return METHODS.get(args.command).get_commands().run(args)


COMMANDS = {"list": cmd_list, "run": cmd_run, "sweep": cmd_sweep, "leaderboard": cmd_leaderboard, "data": cmd_data, "pretrain": cmd_pretrain}


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
