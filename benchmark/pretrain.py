"""The method-agnostic pretraining engine: image–report pairs → a pretrained checkpoint.

Shared by G2D and the baselines. A method plugs in through a :class:`Recipe` (registered in
``g2d_bench.methods.PRETRAIN_RECIPES``): it builds the model from a config, gives the augmentation
and the optimiser/schedule constants of its profile, and turns a checkpoint into a
``MethodAdapter``. The engine owns the rest: data (MIMIC-CXR or SynthCXR's copy of it, read
through the preprocessed cache), AdamW, warm-up + cosine or cosine warm restarts, gradient
accumulation, AMP on CUDA, channels_last, DDP under ``torchrun``, atomic checkpoints every N steps
with exact resume, NaN/inf guard, progress bars, and a loss log (``log.csv`` beside the checkpoint:
one row per step with the learning rate and every scalar the model's forward returns, written
just before each checkpoint so a resumed run's log equals an uninterrupted one's). A contrastive
loss (the column the recipe names, G2D's ``vla``) that ends at ln(batch), the value of collapsed
towers, is warned about.

Exact resume: the data order of an epoch comes from a generator seeded by (seed, epoch), each
sample's augmentation from the CPU generator seeded by (seed, epoch, index) inside a fork of its
state, and the global torch RNGs (CPU and CUDA: dropout) are saved in the checkpoint, so stopping
and resuming gives the same weights as an uninterrupted run.

BatchNorm under DDP normalises each rank's local batch (as the official G2D code, which has no
SyncBatchNorm), so W ranks on half-batches equal one process on the union batch only for the
parts without BatchNorm (the VLA loss and its gradients are exact: ``tests/test_ddp_loss.py``);
``sync_bn=True`` converts BatchNorm to ``torch.nn.SyncBatchNorm`` (CUDA only: torch has no CPU
kernel for it).
"""
from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from g2d_bench.errors import G2DBenchError
from g2d_bench.io import atomic_path, sha256_json, write_json

log = logging.getLogger(__name__)
CHECKPOINT_FORMAT = 1


class Recipe(Protocol):
    """What a pretrainable method gives the engine (registered as its ``MethodEntry.recipe``).

    Required: ``name``, ``quick`` (a :class:`g2d_bench.quick.QuickBudget`: the runner's quick CPU
    model), ``tiny`` (settings for a seconds-long build in contract tests), ``contrastive_loss``
    (the name of the logged scalar that is an InfoNCE over the batch, for the collapse warning),
    and the methods below. Optional hooks (looked up with ``getattr``): ``optimizer``,
    ``text_transform``, ``on_epoch_start``, ``after_backward``, ``after_step``.
    """

    name: str
    quick: Any
    tiny: dict[str, Any]
    contrastive_loss: str

    def make_config(self, profile: str, scale: str, overrides: dict[str, Any]) -> Any:
        """The method's typed config (a dataclass with ``to_dict``) for a profile and scale, with overrides applied."""

    def build(self, config: Any, corpus: list[str]) -> "Any":
        """The model (nn.Module) with ``tokenize(texts) -> dict[str, Tensor]`` (B×… tensors: ids, mask
        and whatever else the method needs, e.g. word grouping) and ``forward(images, **tokens,
        step, epoch) -> {"loss": scalar with graph, other scalars…}``; ``corpus`` = training reports
        (for a tokenizer trained on SynthCXR)."""

    def augmentations(self, config: Any) -> Any:
        """A transform on ``1×S×S`` uint8 tensors → ``1×s×s`` float in [0, 1]."""

    def optimisation(self, config: Any) -> dict[str, Any]:
        """lr, weight_decay, betas, schedule ("warmup-cosine" | "cosine-restarts" | "constant"),
        warmup_steps or warmup_fraction, min_lr, restart_steps, epochs, batch_size, cache_size,
        find_unused_parameters (DDP) — each with its source."""

    def save_extra(self, model: Any, folder: Path) -> None:
        """Write what reloading needs besides the state dict (tokenizer, text config)."""

    # optional hooks ------------------------------------------------------------------------------
    # optimizer(model, opt: dict, lr: float) -> torch.optim.Optimizer   (default: AdamW over the
    #     trainable parameters with opt's weight_decay and betas; groups may set their own "lr",
    #     which the schedule then scales)
    # text_transform(config) -> callable(report: str) -> str | None   (drawn from torch's global
    #     generator, seeded per sample like the image augmentation: e.g. GLoRIA's sentence sampling)
    # on_epoch_start(model, epoch)                   (before the first step of each epoch)
    # after_backward(model, step, epoch)             (gradients ready, before the optimizer step:
    #     e.g. MGCA drops the prototypes' gradients in its first epoch)
    # after_step(model, step, epoch)                 (after the optimizer step)


@dataclass
class PretrainConfig:
    """Engine settings. ``None`` fields come from the recipe's profile."""

    method: str = "g2d"
    dataset: str = "mimic-cxr"
    data_root: str | None = None  # None → SynthCXR
    out: Path = Path("pretrain")
    profile: str = "paper"
    scale: str = "paper"
    seed: int = 0
    batch_size: int | None = None
    epochs: float | None = None
    max_steps: int | None = None
    grad_accum: int = 1
    lr: float | None = None
    amp: bool | None = None  # None → on with CUDA
    channels_last: bool = True
    checkpoint_every: int = 200
    num_workers: int = 0
    device: str | None = None
    sync_bn: bool = False  # DDP: SyncBatchNorm (CUDA only); off = per-rank BN as the official code
    progress: bool = True
    method_overrides: dict[str, Any] = field(default_factory=dict)


# -- data ---------------------------------------------------------------------------------------
class PairDataset:
    """(image, report) pairs from the preprocessed cache; deterministic per-sample augmentation."""

    def __init__(self, images, reports: list[str], transform, seed: int, text_transform=None) -> None:
        self.images, self.reports, self.transform, self.seed = images, reports, transform, seed
        self.text_transform = text_transform
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.reports)

    def __getitem__(self, index: int):
        import numpy as np
        import torch

        image = torch.from_numpy(np.array(self.images[index])).unsqueeze(0)
        # seed only the CPU generator (torch.manual_seed would reseed CUDA's too, which dropout uses)
        with torch.random.fork_rng(devices=[]):
            torch.default_generator.manual_seed(hash_seed(self.seed, self.epoch, index))
            image = self.transform(image)
            report = self.reports[index] if self.text_transform is None else self.text_transform(self.reports[index])
        return image, report


def _collate(items):
    import torch

    return torch.stack([image for image, _ in items]), [text for _, text in items]


def hash_seed(*parts: int) -> int:
    return int(sha256_json(list(parts))[:8], 16)


def load_pairs(config: PretrainConfig, cache_size: int, home: Path | None = None):
    """Cached training images (uint8 N×S×S) and their reports from the release's training split."""
    from g2d_bench.data import cache_home, data_identity, ensure_synthcxr
    from g2d_bench.datasets import DATASETS
    from g2d_bench.datasets.cache import CacheSpec, build_cache
    from g2d_bench.datasets.manifests import MANIFEST_SEED
    from g2d_bench.datasets.splits import assign_splits

    home = home or cache_home()
    root = ensure_synthcxr(config.dataset, home, config.progress) if config.data_root is None else Path(config.data_root)
    release = DATASETS.get(config.dataset)(root)
    if "report" not in release.provides:
        raise G2DBenchError(f"{release.title} has no reports; pretraining needs image–report pairs (use mimic-cxr)")
    spec = next(iter(release.split_specs().values()))
    split = assign_splits(release.samples(), spec, MANIFEST_SEED)
    train = sorted(sid for sid, part in split.items() if part == "train")
    reports = {s.sample_id: s.report for s in release.samples()}
    data_id = data_identity(config.dataset, config.data_root, home)
    cache = build_cache(release, train, CacheSpec(config.dataset, sha256_json(train), cache_size, source=data_id), home / "cache", config.progress)
    return cache.images, [reports[s] for s in cache.sample_ids], {"id": data_id, "root": str(root), "synthcxr": config.data_root is None, "n_pairs": len(train)}


# -- distributed ----------------------------------------------------------------------------------
def init_distributed(device: str | None) -> tuple[int, int, str]:
    """(rank, world size, device) — initialises torch.distributed when launched by torchrun."""
    import torch
    import torch.distributed as dist

    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world == 1:
        return 0, 1, device or ("cuda" if torch.cuda.is_available() else "cpu")
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    if torch.cuda.is_available() and (device is None or device.startswith("cuda")):
        torch.cuda.set_device(local_rank)
        device = f"cuda:{local_rank}"
        backend = "nccl"
    else:
        device, backend = "cpu", "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size(), device


def _finite_everywhere(loss, world: int) -> bool:
    """Whether the loss is finite on every rank: all ranks stop together (a rank that raised alone
    would leave the others waiting in DDP's gradient all-reduce)."""
    import torch

    finite = torch.isfinite(loss.detach()).float()
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(finite, op=dist.ReduceOp.MIN)
    return bool(finite.item())


# -- schedule -------------------------------------------------------------------------------------
def lr_factor(step: int, total: int, schedule: str, warmup: int, restart: int, floor: float = 0.0) -> float:
    """Multiplier of the base lr at optimizer step ``step``; ``floor`` = min_lr / lr.

    ``warmup-cosine`` (G2D paper): linear warm-up over ``warmup`` steps, then cosine to ``floor`` at ``total``.
    ``cosine-restarts`` (official code): cosine annealing to ``floor`` restarted every ``restart`` steps.
    """
    if schedule == "warmup-cosine":
        if warmup and step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total - warmup)
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))
    if schedule == "cosine-restarts":
        return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * (step % restart) / restart))
    if schedule == "constant":
        return 1.0
    raise G2DBenchError(f"unknown schedule {schedule!r} (warmup-cosine, cosine-restarts, constant)")


# -- checkpoints ----------------------------------------------------------------------------------
def save_checkpoint(folder: Path, model, optimizer, scaler, state: dict, recipe: Recipe, method_config: Any) -> None:
    """``folder/last.pt`` (weights, optimiser, RNG, counters) written atomically; ``weights.safetensors``
    (model only), the recipe's extra files and ``config.json`` beside it for loading as a method
    (:mod:`g2d_bench.checkpoints`)."""
    import torch

    folder.mkdir(parents=True, exist_ok=True)
    bare = model.module if hasattr(model, "module") else model
    weights = {k: v.detach().cpu().contiguous() for k, v in bare.state_dict().items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "model": weights,
        "optimizer": optimizer.state_dict(),
        "scaler": scaler.state_dict() if scaler is not None else {},
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        **{k: v for k, v in state.items()},
    }
    with atomic_path(folder / "last.pt") as tmp:
        torch.save(payload, tmp)
    export_model(bare, recipe, method_config, folder, step=state["step"])


def export_model(model, recipe: Recipe, method_config: Any, folder: Path, step: int = 0) -> Path:
    """Write a model (e.g. freshly built, or trained outside the engine) as a checkpoint folder of
    ``recipe``'s method, the layout ``--checkpoint DIR`` loads."""
    from g2d_bench.checkpoints import write_folder

    settings = method_config.to_dict() if hasattr(method_config, "to_dict") else dataclasses.asdict(method_config)
    return write_folder(folder, model.state_dict(), recipe.name, settings, lambda where: recipe.save_extra(model, where), step=step)


def make_optimizer(recipe: Recipe, model, opt: dict[str, Any], lr: float):
    """The recipe's optimiser (its ``optimizer`` hook), else AdamW over the trainable parameters
    (G2D paper §4.1 and every official code here use AdamW). Each group's own lr is remembered as
    ``initial_lr`` so the schedule scales every group alike."""
    import torch

    hook = getattr(recipe, "optimizer", None)
    if hook is not None:
        optimizer = hook(model, opt, lr)
    else:
        params = [p for p in model.parameters() if p.requires_grad]
        # foreach: the multi-tensor AdamW (CUDA default; ~10 % faster steps on CPU too, same update)
        optimizer = torch.optim.AdamW(params, lr=lr, weight_decay=opt["weight_decay"], betas=tuple(opt.get("betas", (0.9, 0.999))), foreach=True)
    for group in optimizer.param_groups:
        group.setdefault("initial_lr", group["lr"])
    return optimizer


def _hook(recipe: Recipe, name: str):
    """The recipe's optional hook ``name`` or a no-op."""
    return getattr(recipe, name, None) or (lambda *args, **kwargs: None)


def load_checkpoint(path: Path) -> dict:
    import torch

    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise G2DBenchError(f"cannot resume from {path}: {type(exc).__name__}: {str(exc).splitlines()[0]}; delete it to start over") from exc


# -- the loop ---------------------------------------------------------------------------------------
LOG_NAME = "log.csv"  # one row per optimizer step: step, lr and every scalar the model's forward returns


def _read_history(path: Path, upto: int) -> list[dict]:
    """The log rows of steps 1..``upto`` (a resumed run drops the rows after its checkpoint)."""
    import csv

    if not path.exists():
        return []
    with open(path, newline="") as handle:
        # a scalar a model returns only on some steps leaves empty cells in the other rows
        rows = [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(handle)]
    return [row | {"step": int(row["step"])} for row in rows if row["step"] <= upto]


def _write_history(path: Path, rows: list[dict]) -> None:
    import csv

    from g2d_bench.io import atomic_write

    names = list(dict.fromkeys(k for row in rows for k in row))
    with atomic_write(path, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=names)
        writer.writeheader()
        writer.writerows(rows)


def _contrastive_tail(history: list[dict], window: int, loss: str) -> tuple[list[dict], float | None]:
    """The last ``window`` log rows that hold the contrastive loss column ``loss`` and their mean
    (``None`` when there are none)."""
    tail = [row for row in history if loss in row][-window:]
    return tail, (sum(row[loss] for row in tail) / len(tail) if tail else None)


def _at_ln_batch(value: float, batch_size: int, tolerance: float) -> bool:
    """Whether ``value`` lies within ``tolerance`` (relative) of ln(batch): the value of InfoNCE when
    every image embedding is the same vector (or every text one), i.e. collapsed towers."""
    return abs(value - math.log(batch_size)) <= tolerance * math.log(batch_size)


def contrastive_plateau(history: list[dict], batch_size: int, window: int = 50, tolerance: float = 0.01,
                        loss: str = "vla") -> float | None:
    """The mean of the contrastive loss column ``loss`` (a recipe's ``contrastive_loss``: one
    direction's or the mean of both directions' InfoNCE, whose collapsed value is ln(batch)) over the
    last ``window`` logged steps when it sits at ln(batch) (:func:`_at_ln_batch`: nothing is being
    aligned); ``None`` otherwise or without that column."""
    _, mean = _contrastive_tail(history, window, loss)
    if mean is None or batch_size < 2:
        return None
    return mean if _at_ln_batch(mean, batch_size, tolerance) else None


def contrastive_summary(folder: Path, window: int = 50) -> str | None:
    """One line on how far a checkpoint's contrastive loss got: its mean over the last ``window``
    logged steps against ln(batch), from ``log.csv``, ``run.json`` and the method's recipe;
    ``None`` without a log."""
    from g2d_bench.checkpoints import folder_method
    from g2d_bench.methods import METHODS

    folder = Path(folder)
    if not (folder / LOG_NAME).exists() or not (folder / "run.json").exists():
        return None
    method = folder_method(folder)
    loss = METHODS.get(method).get_recipe().contrastive_loss if method in METHODS else "vla"
    history = _read_history(folder / LOG_NAME, 10**12)
    run = json.loads((folder / "run.json").read_text())
    batch = run["engine"].get("batch_size") or run["optimisation"].get("batch_size")
    tail, mean = _contrastive_tail(history, window, loss)
    if mean is None or not batch:
        return None
    if contrastive_plateau(history, batch, window, loss=loss) is not None:
        verdict = "collapsed: nothing aligned"
    else:
        verdict = "below it: aligning" if mean < math.log(batch) else "above it: not aligned"
    return f"contrastive loss ({loss}), mean of steps {tail[0]['step']}-{tail[-1]['step']}: {mean:.3f} (ln(batch {batch}) = {math.log(batch):.3f}; {verdict})"


def pretrain(config: PretrainConfig, home: Path | None = None) -> Path:
    """Pretrain ``config.method``; returns the output folder (resumes from ``out/last.pt`` if present)."""
    import torch
    from torch.utils.data import DataLoader
    from tqdm.auto import tqdm

    from g2d_bench.methods import METHODS

    recipe: Recipe = METHODS.get(config.method).get_recipe()
    method_config = recipe.make_config(config.profile, config.scale, config.method_overrides)
    opt = recipe.optimisation(method_config)
    batch_size = config.batch_size or opt["batch_size"]
    rank, world, device = init_distributed(config.device)
    if batch_size % world:
        raise G2DBenchError(f"--batch-size {batch_size} must be divisible by the {world} processes")
    local_batch = batch_size // world // config.grad_accum
    if local_batch < 1:
        raise G2DBenchError(f"batch {batch_size} is too small for {world} processes × {config.grad_accum} accumulation steps")

    images, reports, source = load_pairs(config, opt["cache_size"], home)
    torch.manual_seed(config.seed)
    model = recipe.build(method_config, reports).to(device)
    if config.channels_last:
        model = model.to(memory_format=torch.channels_last)
    text_transform = getattr(recipe, "text_transform", None)
    dataset = PairDataset(images, reports, recipe.augmentations(method_config), config.seed,
                          text_transform(method_config) if text_transform else None)
    steps_per_epoch = len(dataset) // batch_size
    if steps_per_epoch == 0:
        raise G2DBenchError(f"{len(dataset)} training pairs are fewer than one batch of {batch_size}")
    total = config.max_steps or int(math.ceil((config.epochs or opt["epochs"]) * steps_per_epoch))
    lr = config.lr or opt["lr"]
    optimizer = make_optimizer(recipe, model, opt, lr)
    on_epoch_start, after_backward, after_step = (_hook(recipe, n) for n in ("on_epoch_start", "after_backward", "after_step"))
    # warm-up: a step count, or a fraction of all steps (MGCA code: 40 %)
    warmup = opt.get("warmup_steps", 0) or int(round(opt.get("warmup_fraction", 0.0) * total))
    amp = config.amp if config.amp is not None else device.startswith("cuda")
    scaler = torch.amp.GradScaler("cuda") if amp and device.startswith("cuda") else None

    out = Path(config.out)
    state = {"step": 0, "epoch": 0, "batch_in_epoch": 0}
    if (out / "last.pt").exists():
        saved = load_checkpoint(out / "last.pt")
        model.load_state_dict(saved["model"])
        optimizer.load_state_dict(saved["optimizer"])
        if scaler is not None and saved["scaler"]:
            scaler.load_state_dict(saved["scaler"])
        torch.set_rng_state(saved["torch_rng"])
        if torch.cuda.is_available() and len(saved.get("cuda_rng", [])) == torch.cuda.device_count():
            torch.cuda.set_rng_state_all(saved["cuda_rng"])
        state = {k: int(saved[k]) for k in ("step", "epoch", "batch_in_epoch")}
        log.info("resumed from %s at step %d", out / "last.pt", state["step"])
    if config.sync_bn:
        if world == 1 or not device.startswith("cuda"):
            raise G2DBenchError(f"--sync-bn needs several CUDA processes (torchrun on GPUs); this run has {world} process(es) on {device}")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    if world > 1:
        # a method whose forward skips parameters on some steps (G2D's decoder before its PA warm-up)
        # says so in its optimisation dict
        model = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=bool(opt.get("find_unused_parameters", False)))
    bare = model.module if world > 1 else model
    if rank == 0:
        write_json(out / "run.json", {"engine": dataclasses.asdict(config) | {"out": str(config.out)}, "optimisation": opt, "data": source, "world_size": world, "total_steps": total})

    history = _read_history(out / LOG_NAME, state["step"]) if rank == 0 else []
    bar = tqdm(total=total, initial=state["step"], desc=f"pretrain {config.method}", unit="step", disable=not (config.progress and rank == 0))
    started, seen = time.time(), 0
    while state["step"] < total:
        dataset.epoch = state["epoch"]
        on_epoch_start(bare, state["epoch"])
        order = torch.randperm(len(dataset), generator=torch.Generator().manual_seed(hash_seed(config.seed, state["epoch"])))
        order = order[: steps_per_epoch * batch_size].view(steps_per_epoch, world, config.grad_accum, local_batch)
        todo = range(state["batch_in_epoch"], min(steps_per_epoch, state["batch_in_epoch"] + total - state["step"]))
        # one loader item = this rank's micro-batches of one optimizer step
        micro = [order[b, rank, a].tolist() for b in todo for a in range(config.grad_accum)]
        # its own generator: creating a loader iterator must not draw from the global RNG (dropout's),
        # or a run resumed mid-epoch would draw at a different point than an uninterrupted one
        loader = DataLoader(dataset, batch_sampler=micro, num_workers=config.num_workers, collate_fn=_collate,
                            generator=torch.Generator().manual_seed(hash_seed(config.seed, state["epoch"], 1)))
        batches = iter(loader)
        for batch_index in todo:
            factor = lr_factor(state["step"], total, opt["schedule"], warmup, opt.get("restart_steps", 0), opt.get("min_lr", 0.0) / lr)
            for group in optimizer.param_groups:
                group["lr"] = group["initial_lr"] * factor
            optimizer.zero_grad(set_to_none=True)
            for _ in range(config.grad_accum):
                x, texts = next(batches)
                x = x.to(device)
                if config.channels_last:
                    x = x.contiguous(memory_format=torch.channels_last)
                tokens = {k: v.to(device) for k, v in bare.tokenize(texts).items()}
                with torch.autocast(device_type="cuda", enabled=amp and device.startswith("cuda")):
                    losses = model(x, **tokens, step=state["step"], epoch=state["epoch"])
                loss = losses["loss"] / config.grad_accum
                if not _finite_everywhere(loss, world):
                    raise G2DBenchError(
                        f"loss became non-finite at step {state['step']} (this process: {float(loss.detach())}); the last good checkpoint is {out / 'last.pt'} — lower --lr or check the data"
                    )
                (scaler.scale(loss) if scaler else loss).backward()
            if scaler is not None:
                scaler.unscale_(optimizer)
            after_backward(bare, state["step"], state["epoch"])
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            after_step(bare, state["step"], state["epoch"])
            state["step"] += 1
            state["batch_in_epoch"] = batch_index + 1
            seen += batch_size
            bar.update(1)
            if rank == 0:  # only rank 0 writes the log
                history.append({"step": state["step"], "lr": lr * factor, **{k: float(v.detach()) for k, v in losses.items() if v.numel() == 1}})
            bar.set_postfix(loss=f"{float(losses['loss'].detach()):.3f}", img_s=f"{seen / max(time.time() - started, 1e-6):.0f}")
            if rank == 0 and (state["step"] % config.checkpoint_every == 0 or state["step"] == total):
                # the log first: a run killed between the two resumes from the older checkpoint and
                # drops the log rows after it
                _write_history(out / LOG_NAME, history)
                save_checkpoint(out, model, optimizer, scaler, state, recipe, method_config)
        if state["batch_in_epoch"] >= steps_per_epoch:
            state["epoch"] += 1
            state["batch_in_epoch"] = 0
    bar.close()
    plateau = contrastive_plateau(history, batch_size, loss=recipe.contrastive_loss)  # [] (None) on ranks other than 0
    if plateau is not None:
        log.warning("the contrastive loss ended at %.3f, ln(batch %d) = %.3f: image and text embeddings are not aligned "
                    "(collapsed towers); see %s in log.csv and docs/g2d.md 'CPU-scale pretraining'", plateau, batch_size, math.log(batch_size),
                    recipe.contrastive_loss)
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
    return out
