"""Fine-tuned classification: every encoder weight trained with a linear head (G2D Table 3, KAD protocol).

``cxr14-ft``: NIH ChestX-ray14 with the official lists (test = ``test_list.txt``; validation = 10 %
of the ``train_val_list.txt`` patients, the ``official`` manifest), 14 labels. The model is the
method's image encoder — a private, trainable copy (:meth:`~g2d_bench.adapter.MethodAdapter.trainable_encoder`,
BatchNorm in train mode) — whose last stage is global-average-pooled into one ``Linear(C, 14)``;
BCE-with-logits, AdamW, early stopping on validation loss (:func:`g2d_bench.tasks.heads.fit_head`),
the best epoch tested: macro and per-class AUC (the Table 3 layout), at 1 / 10 / 100 % of the
training split. The method's adapter is never changed (the encoder is a copy).

CPU scale: ``finetune_budget`` (set by the ``cpu`` scale, see docs/zero_shot.md) caps the batch
size, epochs and patience of a run; the run's own ``--set`` values win over it, and the record's
``info.effective`` says what was used.
"""
from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Mapping

import numpy as np

from g2d_bench.errors import G2DBenchError
from g2d_bench.task import Hyper, SplitArrays, TaskContext, TaskResult, TaskSpec
from g2d_bench.tasks.heads import MIN_STEPS_SOURCE, batches, epoch_batches, fit_head

if TYPE_CHECKING:
    from torch import nn

log = logging.getLogger(__name__)

_KAD = "G2D A.4 / Table 3 (KAD protocol; REFERENCE.md 'Fine-tuned cls')"
#: the settings ``finetune_budget`` may cap
BUDGET_KEYS = ("batch_size", "max_epochs", "patience")
CXR14_FT = TaskSpec(
    name="cxr14-ft",
    version=1,
    family="finetune-cls",
    dataset="nih-cxr14",
    split="official",
    protocol="kad-finetune",
    metrics=("auc",),
    primary="auc",
    run="g2d_bench.tasks.finetune:run",
    hparams={
        "image_size": Hyper(256, f"{_KAD}: 256 px (resize-with-pad, no crop)"),
        "lr": Hyper(1e-4, f"{_KAD}: AdamW lr 1e-4"),
        "weight_decay": Hyper(0.01, "not stated by G2D/KAD: torch.optim.AdamW's default 0.01"),
        "betas": Hyper((0.9, 0.999), "torch.optim.AdamW default betas"),
        "batch_size": Hyper(64, f"{_KAD}: batch 64"),
        "max_epochs": Hyper(50, f"{_KAD}: 50 epochs"),
        "patience": Hyper(10, "G2D A.4 early stopping on validation loss; patience as MGCA's EarlyStopping(patience=10)"),
        "drop_last": Hyper(True, "MGCA code, mgca/datasets/data_module.py train_dataloader(drop_last=True)"),
        "augment": Hyper("none", "not stated by G2D/KAD for CXR14 fine-tuning: no augmentation"),
        "min_steps_per_epoch": Hyper(0, MIN_STEPS_SOURCE),
        "finetune_budget": Hyper(None, "g2d-bench: caps {batch_size, max_epochs, patience} of a run (None = the protocol's); "
                                       "the cpu scale sets it (docs/zero_shot.md)"),
        "eval_batch_size": Hyper(128, "g2d-bench: validation/test batch (speed only)"),
    },
    needs=frozenset({"labels"}),
    description="NIH ChestX-ray14, whole encoder fine-tuned + linear head, official split, macro AUC (G2D Table 3)",
)


def effective_settings(hp, overrides: Mapping[str, Any]) -> dict[str, int]:
    """``batch_size``, ``max_epochs``, ``patience`` of a run: the protocol's, capped by
    ``finetune_budget`` (a mapping or (key, value) pairs), except those the run sets itself.
    ``hp(name)`` reads a setting; ``overrides`` are the run's own ``--set`` values."""
    budget = hp("finetune_budget") or {}
    budget = dict(budget.items() if isinstance(budget, Mapping) else budget)
    unknown = sorted(set(budget) - set(BUDGET_KEYS))
    if unknown:
        raise G2DBenchError(f"finetune_budget may cap {', '.join(BUDGET_KEYS)}, not {unknown[0]!r}")
    out = {}
    for key in BUDGET_KEYS:
        value = int(hp(key))
        if key in budget and key not in overrides:
            value = min(value, int(budget[key]))
        if value < 1:
            raise G2DBenchError(f"{key} must be at least 1, got {value}")
        out[key] = value
    return out


def build_classifier(encoder: "nn.Module", classes: int) -> "nn.Module":
    """``encoder`` (smp encoder interface: ``forward(x)`` → stages, ``out_channels``) + global average
    pooling of its last stage + ``Linear(out_channels[-1], classes)``. Input: normalised
    ``B×C×S×S``; output: logits ``B×classes``."""
    from torch import nn

    class Classifier(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder
            self.head = nn.Linear(int(encoder.out_channels[-1]), classes)

        def forward(self, x):
            return self.head(self.encoder(x)[-1].mean(dim=(2, 3)))

    return Classifier()


def load_batch(arrays: SplitArrays, index: np.ndarray, y: np.ndarray, device: str):
    """Rows ``index`` → (images ``B×1×S×S`` float [0, 1], targets ``B×K`` float), rows read in order."""
    import torch

    order = np.sort(index)
    images = torch.from_numpy(np.asarray(arrays.images[order])).unsqueeze(1).float().div_(255.0)
    return images.to(device), torch.as_tensor(y[order], device=device)


def predict(ctx: TaskContext, model: "nn.Module", arrays: SplitArrays, y: np.ndarray, batch_size: int) -> tuple[np.ndarray, float]:
    """(sigmoid probabilities ``N×K`` in row order, mean BCE per label) in eval mode, no gradients."""
    import torch
    import torch.nn.functional as F

    model.eval()
    probs, total = [], 0.0
    with torch.no_grad():
        for index in batches(len(arrays), batch_size):
            x, target = load_batch(arrays, index, y, ctx.device)
            logits = model(ctx.adapter.normalize(x).contiguous(memory_format=torch.channels_last))
            total += float(F.binary_cross_entropy_with_logits(logits, target, reduction="sum"))
            probs.append(torch.sigmoid(logits).float().cpu().numpy())
    return np.concatenate(probs), total / y.size


def run(ctx: TaskContext) -> TaskResult:
    """Family function of ``cxr14-ft``."""
    import pandas as pd
    import torch
    import torch.nn.functional as F

    from g2d_bench.tasks.linear import score
    from g2d_bench.tasks.zeroshot import zero_shot_targets

    if ctx.hp("augment") != "none":
        raise G2DBenchError(f"augment must be 'none' (the only setting so far), got {ctx.hp('augment')!r}")
    settings = effective_settings(ctx.hp, ctx.overrides)
    splits = {name: ctx.data(name) for name in ("train", "valid", "test")}
    y, names = {}, ()
    for name, arrays in splits.items():
        y[name], names = zero_shot_targets(arrays, "all", None)
    torch.manual_seed(ctx.seed)  # head initialisation
    model = build_classifier(ctx.adapter.trainable_encoder(), len(names))
    model = model.to(ctx.device).to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=ctx.hp("lr"), betas=tuple(ctx.hp("betas")), weight_decay=ctx.hp("weight_decay"))
    generator = torch.Generator().manual_seed(ctx.seed)
    train, batch_size, eval_batch = splits["train"], settings["batch_size"], int(ctx.hp("eval_batch_size"))

    def train_epoch(epoch: int) -> float:
        model.train()
        total, seen = 0.0, 0
        for index in epoch_batches(len(train), batch_size, generator, bool(ctx.hp("drop_last")), int(ctx.hp("min_steps_per_epoch"))):
            x, target = load_batch(train, index, y["train"], ctx.device)
            loss = F.binary_cross_entropy_with_logits(model(ctx.adapter.normalize(x).contiguous(memory_format=torch.channels_last)), target)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, seen = total + float(loss.detach()) * len(index), seen + len(index)
        return total / max(seen, 1)

    def validate() -> dict:
        _, loss = predict(ctx, model, splits["valid"], y["valid"], eval_batch)
        return {"val_loss": loss}

    # fit_head reads max_epochs / patience through ctx.hp: hand it the effective values
    info = fit_head(replace(ctx, overrides={**ctx.overrides, **settings}), model, train_epoch, validate, "val_loss",
                    higher_is_better=False)
    probs, test_loss = predict(ctx, model, splits["test"], y["test"], eval_batch)
    metrics, notes = score(y["test"], probs, names, multiclass=False)
    per_sample = pd.DataFrame({"sample_id": splits["test"].sample_ids})
    for k, name in enumerate(names):
        per_sample[f"y/{name}"] = y["test"][:, k]
        per_sample[f"p/{name}"] = probs[:, k]
    info.update(notes, effective=settings, test_loss=test_loss, image_size=int(train.images.shape[-1]),
                n_train=len(train), n_valid=len(splits["valid"]), n_test=len(splits["test"]))
    return TaskResult(metrics=metrics, per_sample=per_sample, info=info)
