"""Linear classification on a frozen encoder (MGCA protocol, followed by G2D: paper A.4).

The encoder stays frozen with BatchNorm in eval mode; its global-average-pooled last stage is the
input of one Linear layer trained with AdamW, early-stopped on validation loss, and the best
head is tested. Because the encoder is frozen and the protocol's evaluation crop is fixed, each
image is encoded once (``encode="once"``); ``encode="every-epoch"`` re-encodes every batch of every
epoch like MGCA's loop does and exists for the speed benchmark (benchmarks/bench_linear.py).
"""
from __future__ import annotations

import logging

import numpy as np

from g2d_bench.errors import G2DBenchError
from g2d_bench.task import Hyper, SplitArrays, TaskContext, TaskResult, TaskSpec
from g2d_bench.tasks.heads import batches, fit_head
from g2d_bench.tasks.targets import ArgmaxClass, BinaryColumn, CheXpertCompetition, parse_rule

log = logging.getLogger(__name__)

_MGCA = "MGCA code, mgca/models/ssl_finetuner.py + mgca_finetuner.py"
COMMON = {
    "image_size": Hyper(224, "G2D A.4 / MGCA: resize-with-pad 256, crop 224"),
    "resize": Hyper(256, "G2D A.4 / MGCA: resize-with-pad 256, crop 224"),
    "lr": Hyper(5e-4, f"{_MGCA}: AdamW lr 5e-4"),
    "weight_decay": Hyper(1e-6, f"{_MGCA}: weight_decay 1e-6"),
    "betas": Hyper((0.9, 0.999), f"{_MGCA}: betas (0.9, 0.999)"),
    "batch_size": Hyper(8, "G2D A.4: batch 8 (MGCA: 48)"),
    "max_epochs": Hyper(50, f"{_MGCA}: max_epochs 50"),
    "patience": Hyper(10, f"{_MGCA}: EarlyStopping(monitor='val_loss', patience=10)"),
    "dropout": Hyper(0.0, f"{_MGCA}: SSLEvaluator dropout 0.0, no hidden layer"),
    "encode": Hyper("once", "g2d-bench: frozen encoder + fixed eval crop => encode each image once"),
}


def _spec(name: str, dataset: str, metrics: tuple[str, ...], primary: str, extra: dict, description: str) -> TaskSpec:
    return TaskSpec(
        name=name,
        version=1,
        family="linear-cls",
        dataset=dataset,
        split="g2d",
        protocol="mgca-linear",
        metrics=metrics,
        primary=primary,
        run="g2d_bench.tasks.linear:run",
        hparams={**COMMON, **extra},
        needs=frozenset({"labels"}),
        description=description,
    )


CHEXPERT_CLS = _spec(
    "chexpert-cls", "chexpert", ("auc",), "auc",
    {
        "targets": Hyper(CheXpertCompetition(), "REFERENCE.md: 5 competition labels"),
        "uncertain_policy": Hyper("mgca", "REFERENCE.md / MGCA: U-ones Atelectasis, Edema, Pleural Effusion; U-zeros Cardiomegaly, Consolidation"),
        "head": Hyper("multilabel", f"{_MGCA}: BCE, multilabel=True, num_classes 5"),
    },
    "CheXpert 5-label macro AUC (G2D Table 2)",
)
RSNA_CLS = _spec(
    "rsna-cls", "rsna", ("auc",), "auc",
    {
        "targets": Hyper(BinaryColumn("Pneumonia"), "RSNA Target"),
        "head": Hyper("multilabel", f"{_MGCA}: RSNA num_classes 1, multilabel=True (BCE)"),
    },
    "RSNA pneumonia AUC (G2D Table 2)",
)
COVIDX_CLS = _spec(
    "covidx-cls", "covidx", ("accuracy", "auc"), "accuracy",
    {
        "targets": Hyper(ArgmaxClass(), "COVIDx: 3 classes"),
        "head": Hyper("multiclass", f"{_MGCA}: COVIDx num_classes 3, multilabel=False (cross-entropy)"),
    },
    "COVIDx 3-class accuracy (G2D Table 2)",
)


def targets(arrays: SplitArrays, rule, uncertain_policy: str | None = None) -> tuple[np.ndarray, tuple[str, ...]]:
    """Training targets from the cached raw release labels by the task's target rule
    (:mod:`g2d_bench.tasks.targets`, or its name): (N×K float or N int, names)."""
    return parse_rule(rule)(arrays, {"uncertain_policy": uncertain_policy})


def train_head(ctx: TaskContext, features, y: dict, multiclass: bool):
    """Train the Linear head; returns (best head, info).

    ``features(split, index) -> B×D`` gives the features of rows ``index`` (LongTensor) of a split:
    a lookup in precomputed features, or the encoder run on the fly (MGCA's loop).
    """
    import torch
    import torch.nn.functional as F

    torch.manual_seed(ctx.seed)
    generator = torch.Generator().manual_seed(ctx.seed)
    dim = features("train", torch.arange(1)).shape[1]
    classes = int(max(y["train"].max(), y["valid"].max()).item()) + 1 if multiclass else y["train"].shape[1]
    head = torch.nn.Sequential(torch.nn.Dropout(ctx.hp("dropout")), torch.nn.Linear(dim, classes)).to(ctx.device)
    optimizer = torch.optim.AdamW(head.parameters(), lr=ctx.hp("lr"), betas=tuple(ctx.hp("betas")), weight_decay=ctx.hp("weight_decay"))
    loss_fn = F.cross_entropy if multiclass else F.binary_cross_entropy_with_logits
    n_valid = len(y["valid"])

    def valid_loss() -> float:
        head.eval()
        total = 0.0
        with torch.no_grad():
            for start in range(0, n_valid, 512):
                index = torch.arange(start, min(start + 512, n_valid))
                total += float(loss_fn(head(features("valid", index)), y["valid"][index], reduction="sum"))
        return total / (n_valid * (1 if multiclass else y["valid"].shape[1]))

    def train_epoch(epoch: int) -> float:
        head.train()
        total, seen = 0.0, 0
        for index in batches(len(y["train"]), ctx.hp("batch_size"), generator):
            index = torch.as_tensor(index)
            loss = loss_fn(head(features("train", index)), y["train"][index])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, seen = total + float(loss.detach()) * len(index), seen + len(index)
        return total / max(seen, 1)

    # MGCA: EarlyStopping(monitor='val_loss', patience=10), the best epoch's head is tested
    info = fit_head(ctx, head, train_epoch, lambda: {"val_loss": valid_loss()}, "val_loss", higher_is_better=False)
    head.eval()
    return head, {"best_epoch": info["best_epoch"], "epochs_run": info["epochs_run"], "best_val_loss": info["best_val_loss"]}


def score(y_true: np.ndarray, probs: np.ndarray, names: tuple[str, ...], multiclass: bool) -> tuple[dict, dict]:
    """Metrics (scikit-learn) and notes. Multilabel: macro AUC over labels whose test set has both
    classes (a constant label has no AUC; the notes list it). Multiclass: accuracy and macro
    one-vs-rest AUC."""
    from sklearn.metrics import accuracy_score, roc_auc_score

    notes: dict = {}
    if multiclass:
        metrics = {"accuracy": float(accuracy_score(y_true, probs.argmax(axis=1)))}
        present = np.unique(y_true)
        if len(present) == probs.shape[1]:
            metrics["auc"] = float(roc_auc_score(y_true, probs, multi_class="ovr", average="macro"))
        else:
            notes["auc_skipped"] = f"test set has classes {present.tolist()} of {probs.shape[1]}"
        return metrics, notes
    per_label = {}
    for k, name in enumerate(names):
        if len(np.unique(y_true[:, k])) == 2:
            per_label[name] = float(roc_auc_score(y_true[:, k], probs[:, k]))
    skipped = [n for n in names if n not in per_label]
    if skipped:
        notes["labels_without_auc"] = skipped
    if not per_label:
        raise G2DBenchError("no test label has both classes; the test split is too small to compute AUC")
    metrics = {"auc": float(np.mean(list(per_label.values())))}
    if len(names) > 1:
        metrics.update({f"auc/{n}": v for n, v in per_label.items()})
    return metrics, notes


def run(ctx: TaskContext) -> TaskResult:
    import pandas as pd
    import torch

    from g2d_bench.tasks.features import center_crop, encode, to_tensor

    multiclass = ctx.hp("head") == "multiclass"
    rule = parse_rule(ctx.hp("targets"))
    if rule.multiclass != multiclass:
        raise G2DBenchError(f"task {ctx.spec.name}: targets {rule} and head {ctx.hp('head')!r} disagree (multiclass or not)")
    settings = {"uncertain_policy": ctx.hp("uncertain_policy") if "uncertain_policy" in ctx.spec.hparams else None}
    crop = int(ctx.hp("image_size"))
    splits = {name: ctx.data(name) for name in ("train", "valid", "test")}
    y, names = {}, ()
    for name, arrays in splits.items():
        target, names = rule(arrays, settings)
        y[name] = torch.as_tensor(target, device=ctx.device)

    mode = ctx.hp("encode")
    if mode == "once":
        xs = {name: torch.as_tensor(encode(ctx, arrays, crop), device=ctx.device) for name, arrays in splits.items()}

        def features(split, index):
            return xs[split][index]

    elif mode == "every-epoch":

        def features(split, index):
            batch = center_crop(np.asarray(splits[split].images[np.asarray(index)]), crop)
            with torch.no_grad():
                return ctx.adapter.pooled_features(to_tensor(batch, ctx.device).contiguous(memory_format=torch.channels_last))

    else:
        raise G2DBenchError(f"encode must be 'once' or 'every-epoch', got {mode!r}")

    head, info = train_head(ctx, features, y, multiclass)
    with torch.no_grad():
        n_test = len(splits["test"])
        logits = torch.cat([head(features("test", torch.arange(i, min(i + 512, n_test)))) for i in range(0, n_test, 512)])
    probs = (torch.softmax(logits, 1) if multiclass else torch.sigmoid(logits)).cpu().numpy()
    y_test = y["test"].cpu().numpy()
    metrics, notes = score(y_test, probs, names, multiclass)
    per_sample = pd.DataFrame({"sample_id": splits["test"].sample_ids})
    if multiclass:
        per_sample["target"] = y_test
    for k, name in enumerate(names):
        if not multiclass:
            per_sample[f"y/{name}"] = y_test[:, k]
        per_sample[f"p/{name}"] = probs[:, k]
    info.update(notes, n_train=len(splits["train"]), n_valid=len(splits["valid"]), n_test=n_test)
    return TaskResult(metrics=metrics, per_sample=per_sample, info=info)
