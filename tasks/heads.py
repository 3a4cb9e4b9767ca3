"""One head-training loop for every task family that trains on top of an encoder (linear
classification, U-Net segmentation, detection, fine-tuning): index batches, epochs with a minimum
number of steps, early stopping with the best state restored, and the in-memory cache of a frozen
encoder's outputs.

Hand-written rather than a trainer library because the protocols fix exactly these semantics
(Lightning's EarlyStopping with min_delta 0 and patience, best-checkpoint testing, as the MGCA code
the G2D paper follows) and the feature cache must reproduce the uncached numbers bit for bit.
"""
from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Callable

import numpy as np

from g2d_bench.errors import G2DBenchError
from g2d_bench.task import SplitArrays, TaskContext

if TYPE_CHECKING:
    import torch
    from torch import nn

MIN_STEPS_SOURCE = ("g2d-bench: an epoch passes over the (reshuffled) training fraction as many times as it takes to make "
                    "at least this many optimizer steps; 0 = one pass (the protocol). The CPU scale sets it so that "
                    "SynthCXR's small training fractions get the steps per epoch of the real 1 % sets (docs/dense_tasks.md)")
FEATURE_CACHE_SOURCE = ("g2d-bench: memory (MB) for frozen-encoder outputs of un-augmented splits, computed once per "
                        "run instead of every epoch (speed only, same numbers; 0 = off; unused with encoder_bn='train')")


def batches(n: int, batch_size: int, generator=None, drop_last: bool = False) -> list[np.ndarray]:
    """Index batches over ``n`` rows: shuffled with ``generator`` (a torch Generator) or in order.
    ``drop_last`` drops a short last batch unless that would leave no batch at all."""
    import torch

    order = torch.randperm(n, generator=generator).numpy() if generator is not None else np.arange(n)
    out = [order[i : i + batch_size] for i in range(0, n, batch_size)]
    if drop_last and len(out) > 1 and len(out[-1]) < batch_size:
        out.pop()
    return out


def epoch_batches(n: int, batch_size: int, generator, drop_last: bool, min_steps: int = 0) -> list[np.ndarray]:
    """The training batches of one epoch: one shuffled pass over ``n`` rows (:func:`batches`), or as
    many passes, each shuffled anew, as make at least ``min_steps`` batches."""
    out = batches(n, batch_size, generator, drop_last)
    while len(out) < min_steps:
        out += batches(n, batch_size, generator, drop_last)
    return out


class FeatureCache:
    """Frozen-encoder outputs of whole splits, computed once per run and kept in memory.

    A frozen encoder whose BatchNorm stays in eval mode maps an image to the same features in every
    epoch, so the un-augmented splits (validation; detection's training split too) need it once:
    ``encode(x)`` (normalised ``B×3×S×S`` → list of ``B×C×h×w``) runs in eval mode under
    ``torch.no_grad()``, and the outputs are stored in float32 with the strides the encoder gave
    them, so the heads compute exactly what they would on fresh outputs. Rows are encoded in the
    batches the task itself uses (in order for evaluation; groups of the training batch size for
    training rows), because CPU kernels may round differently at other batch sizes. Splits are
    stored while their total stays within ``feature_cache_mb``; a split that does not fit, and
    every split under ``encoder_bn="train"``, is encoded afresh each time (:meth:`rows` → ``None``).
    """

    def __init__(self, ctx: TaskContext, encode: Callable[["torch.Tensor"], list["torch.Tensor"]],
                 load: Callable[[SplitArrays, np.ndarray], "torch.Tensor"]):
        self.ctx, self.encode, self.load = ctx, encode, load
        mb = ctx.hp("feature_cache_mb")
        if isinstance(mb, bool) or not isinstance(mb, (int, float)) or mb < 0:
            raise G2DBenchError(f"feature_cache_mb must be a number of megabytes >= 0 (0 = no cache), got {mb!r}")
        self.off = ("encoder_bn='train' updates the encoder during training" if ctx.hp("encoder_bn") != "eval"
                    else "feature_cache_mb=0" if mb == 0 else None)
        self.budget = 0 if self.off else int(mb * 2**20)
        self.stored: dict[str, list["torch.Tensor"]] = {}
        self.notes: dict[str, str] = {}  # split -> what happened, for the run record

    def add(self, split: str, arrays: SplitArrays, batch_size: int, training_rows: bool = False) -> bool:
        """Encode every row of ``arrays`` once, if the budget allows. ``training_rows``: encode in
        groups of ``batch_size`` rows (the last group overlaps the one before), the size every
        training batch has with ``drop_last``; else in the evaluation batches (in order, last one short)."""
        import torch

        if self.off:
            self.notes[split] = f"encoded every epoch ({self.off})"
            return False
        n, size = len(arrays), min(batch_size, len(arrays))
        if n == 0:
            return False
        if training_rows:
            starts = sorted({min(start, n - size) for start in range(0, n, size)})
            chunks = [np.arange(start, start + size) for start in starts]
        else:
            chunks = batches(n, batch_size)
        stages, done = None, 0
        with torch.no_grad():
            for chunk in chunks:
                outputs = self.encode(self.load(arrays, chunk))
                if stages is None:
                    need = sum(o[0].numel() * o.element_size() for o in outputs) * n
                    if need > self.budget:
                        self._note_over(split, need)
                        return False
                    stages = [_empty_rows(o, n) for o in outputs]
                keep = slice(done - int(chunk[0]), None)  # rows an overlapping last group already had
                for stage, out in zip(stages, outputs):
                    stage[done : int(chunk[-1]) + 1].copy_(out[keep])
                done = int(chunk[-1]) + 1
        self.budget -= need
        self.stored[split] = stages
        self.notes[split] = f"encoded once, {need / 2**20:.1f} MB"
        self.ctx.log.debug("feature cache: %s split encoded once (%d rows, %.1f MB)", split, n, need / 2**20)
        return True

    def _note_over(self, split: str, need: int) -> None:
        mb = self.ctx.hp("feature_cache_mb")
        self.notes[split] = f"encoded every epoch (needs {need / 2**20:.1f} MB, feature_cache_mb={mb:g})"
        self.ctx.log.info("feature cache: the %s split's encoder outputs need %.0f MB, more than the %.0f MB left of "
                          "feature_cache_mb=%g; encoding it every epoch instead (raise feature_cache_mb to cache it)",
                          split, need / 2**20, self.budget / 2**20, mb)

    def rows(self, split: str, index: np.ndarray) -> list["torch.Tensor"] | None:
        """The stored outputs of rows ``index`` (ascending) of ``split``, laid out as the encoder
        lays them out; ``None`` when the split is not stored."""
        import torch

        stages = self.stored.get(split)
        if stages is None:
            return None
        index = np.asarray(index)
        if len(index) and np.array_equal(index, np.arange(index[0], index[0] + len(index))):
            return [stage[int(index[0]) : int(index[0]) + len(index)] for stage in stages]  # views, no copy
        rows = torch.as_tensor(index, device=stages[0].device)
        return [_empty_rows(stage, len(index)).copy_(stage.index_select(0, rows)) for stage in stages]

    def clear(self) -> None:
        self.stored.clear()


def _empty_rows(like: "torch.Tensor", n: int) -> "torch.Tensor":
    """An uninitialised ``n×C×h×w`` tensor whose rows have ``like``'s strides (NCHW or channels_last)."""
    import torch

    row = like.shape[1:]
    if like.stride(0) != int(np.prod(row)):  # not batch-outermost dense: fall back to the default layout
        return like.new_empty((n, *row))
    return torch.empty_strided((n, *row), (int(np.prod(row)), *like.stride()[1:]), dtype=like.dtype, device=like.device)


def fit_head(ctx: TaskContext, model: "nn.Module", train_epoch: Callable[[int], float],
             validate: Callable[[], dict], monitor: str, higher_is_better: bool) -> dict:
    """Train for up to ``max_epochs``, early-stop after ``patience`` epochs without strict
    improvement of ``validate()[monitor]`` (Lightning EarlyStopping, min_delta 0, as MGCA), and load
    the best epoch's state (kept in memory) back into ``model``; NaN scores never count as improvements.
    Returns run notes."""
    from tqdm.auto import tqdm

    best, best_epoch, best_state, stale, history = None, -1, None, 0, []
    epochs = tqdm(range(int(ctx.hp("max_epochs"))), desc=ctx.spec.name, disable=not ctx.progress, leave=False)
    epoch = -1
    for epoch in epochs:
        train_loss = train_epoch(epoch)
        scores = validate()
        value = float(scores[monitor])
        history.append({"epoch": epoch, "train_loss": train_loss, **{k: float(v) for k, v in scores.items()}})
        ctx.log.debug("epoch %d train_loss %.4f %s %.4f", epoch, train_loss, monitor, value)
        improved = not np.isnan(value) and (best is None or (value > best if higher_is_better else value < best))
        if improved:
            best, best_epoch, best_state, stale = value, epoch, copy.deepcopy(model.state_dict()), 0
        else:
            stale += 1
            if stale >= int(ctx.hp("patience")):
                break
    if best_state is not None:  # else validation never gave a number (e.g. no object): keep the last state
        model.load_state_dict(best_state)
    return {"epochs_run": epoch + 1, "best_epoch": best_epoch, f"best_{monitor}": best, "history": history}
