"""Zero-shot classification: image–prompt similarities, no training data (G2D Table 2a).

For each class the prompt file (``tasks/prompts.yaml``, package data) gives positive and negative
prompts; the adapter scores every test image against every prompt once
(:meth:`~g2d_bench.adapter.MethodAdapter.similarity`, prompts encoded once per run with
:meth:`~g2d_bench.adapter.MethodAdapter.encode_prompts`), and

- binary / multi-label tasks (``rsna-zs``, ``siim-zs``, ``cxr14-zs``, ``chexpert-zs``): a class is
  predicted present iff sim(positive) > sim(negative); its probability is the softmax over the pair,
  ``exp(s⁺/T) / (exp(s⁺/T) + exp(s⁻/T))`` (CheXzero code, T = 1); macro AUC, F1 and accuracy over
  classes (scikit-learn) and per-class values ``auc/<class>`` …;
- multi-class ``chexpert5x200-zs``: each class's score (the pair probability, or the ensembled
  similarity for a set without negatives such as GLoRIA's) is z-normalised over the test images
  (GLoRIA code) and the argmax is the prediction; accuracy and macro F1.

The method is never trained and the training/validation splits are never read; the label fraction
of a run has no effect (the record says so).
"""
from __future__ import annotations

import functools
import hashlib
import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np

from g2d_bench.adapter import Capability
from g2d_bench.errors import G2DBenchError
from g2d_bench.task import Hyper, SplitArrays, TaskContext, TaskResult, TaskSpec

if TYPE_CHECKING:
    from g2d_bench.adapter import MethodAdapter

log = logging.getLogger(__name__)

PROMPT_FILE = "prompts.yaml"
#: the ``version`` tasks/prompts.yaml must carry; bump it (and every zero-shot / grounding task's
#: version) whenever a prompt changes (tests/test_zeroshot.py pins the file's hash)
PROMPTS_VERSION = 1
#: what the fraction means to a task that trains nothing (recorded in every run's info)
NO_TRAINING = "zero-shot: no training or validation data is read; the label fraction has no effect"

_CHEXZERO = "CheXzero code, zero_shot.py run_softmax_eval"
_GLORIA = "GLoRIA code, gloria/gloria.py zero_shot_classification"
COMMON = {
    "image_size": Hyper(224, "G2D A.4 classification preprocessing (MGCA): resize-with-pad 256, centre crop 224"),
    "resize": Hyper(256, "G2D A.4 classification preprocessing (MGCA): resize-with-pad 256, centre crop 224"),
    "prompt_set": Hyper("chexzero", "issue 23: CheXzero-style pairs by default; sets in tasks/prompts.yaml"),
    "temperature": Hyper(1.0, f"{_CHEXZERO}: softmax over the raw cosine pair, no logit scale (T = 1); AUC, F1 and "
                              "accuracy do not depend on T > 0, only the probabilities in the scores file do"),
    "ensemble": Hyper("max", f"{_GLORIA}: a class's score is the max over its prompts' similarities ('mean' = average)"),
    "batch_size": Hyper(64, "g2d-bench: images per adapter call (speed only)"),
}


def _spec(name: str, dataset: str, split: str, targets: str, multiclass: bool, description: str, extra: dict | None = None) -> TaskSpec:
    metrics = ("accuracy", "f1") if multiclass else ("auc", "f1", "accuracy")
    return TaskSpec(
        name=name,
        version=1,
        family="zero-shot-cls",
        dataset=dataset,
        split=split,
        protocol="zero-shot-prompts",
        metrics=metrics,
        primary=metrics[0],
        run="g2d_bench.tasks.zeroshot:run",
        hparams={**COMMON, "targets": Hyper(targets, "the test labels scored"), **(extra or {})},
        requires=frozenset({Capability.TEXT}),
        needs=frozenset({"labels"}),
        description=description,
        uses_fraction=False,  # no training data
    )


_UNCERTAIN = Hyper("mgca", "REFERENCE.md / MGCA: U-ones Atelectasis, Edema, Pleural Effusion; U-zeros Cardiomegaly, "
                           "Consolidation (valid.csv holds no uncertain label)")
RSNA_ZS = _spec("rsna-zs", "rsna", "g2d", "column:Pneumonia", False,
                "RSNA pneumonia zero-shot, test split of the g2d manifest (5,337 = G2D Table 6 / MedKLIP), AUC (G2D Table 2a)")
SIIM_ZS = _spec("siim-zs", "siim", "g2d", "column:Pneumothorax", False,
                "SIIM pneumothorax zero-shot, test split of the g2d manifest (1,807 = G2D Table 6 / MedKLIP), AUC (G2D Table 2a)")
CXR14_ZS = _spec("cxr14-zs", "nih-cxr14", "official", "all", False,
                 "NIH ChestX-ray14 zero-shot, official test_list.txt (25,596), 14 labels, macro AUC (G2D Table 2a)")
CHEXPERT_ZS = _spec("chexpert-zs", "chexpert", "g2d", "chexpert-competition", False,
                    "CheXpert zero-shot, official valid.csv frontal images (202; the 500-study test set is not in the "
                    "v1.0 release), 5 competition labels, macro AUC (G2D Table 2a)",
                    {"uncertain_policy": _UNCERTAIN})
CHEXPERT5X200_ZS = _spec("chexpert5x200-zs", "chexpert", "zeroshot-5x200", "chexpert-competition-argmax", True,
                         "CheXpert 5x200 (GLoRIA/MGCA) zero-shot multi-class accuracy and macro F1",
                         {"uncertain_policy": _UNCERTAIN,
                          "class_norm": Hyper("zscore", "GLoRIA code, gloria/utils/utils.py normalize('norm'): each class's "
                                                        "scores standardised over the test images before the argmax; 'none'")})


# -- prompts ---------------------------------------------------------------------------------------
@functools.lru_cache(maxsize=1)
def _prompt_file() -> tuple[str, str]:
    """(text, SHA-256) of the packaged prompt file."""
    from importlib import resources

    data = resources.files("g2d_bench.tasks").joinpath(PROMPT_FILE).read_bytes()
    return data.decode("utf-8"), hashlib.sha256(data).hexdigest()


def prompt_file_sha256() -> str:
    """SHA-256 of the packaged ``tasks/prompts.yaml`` (part of every zero-shot record)."""
    return _prompt_file()[1]


@functools.lru_cache(maxsize=1)
def load_prompts() -> dict:
    """The parsed prompt file; its ``version`` must equal :data:`PROMPTS_VERSION`."""
    import yaml

    text, _ = _prompt_file()
    data = yaml.safe_load(text)
    if data.get("version") != PROMPTS_VERSION:
        raise G2DBenchError(f"tasks/{PROMPT_FILE} has version {data.get('version')!r} but g2d_bench expects "
                            f"{PROMPTS_VERSION}; reinstall g2d-bench (the prompt file and the code disagree)")
    return data


@dataclass(frozen=True)
class PromptTable:
    """One prompt set for a task's classes, flattened for a single ``encode_prompts`` call.

    ``texts`` holds every prompt once per class side; ``positive[k]`` / ``negative[k]`` are the
    indices (into ``texts``) of class ``k``'s prompts (``negative[k]`` empty for sets without)."""

    set_name: str
    classes: tuple[str, ...]
    texts: tuple[str, ...]
    positive: tuple[tuple[int, ...], ...]
    negative: tuple[tuple[int, ...], ...]
    sources: tuple[str, ...]

    @property
    def has_negatives(self) -> bool:
        return all(self.negative)

    def describe(self) -> dict:
        """JSON-friendly: what the record stores (prompt file version and hash, every prompt)."""
        return {
            "file": f"tasks/{PROMPT_FILE}",
            "version": PROMPTS_VERSION,
            "sha256": prompt_file_sha256(),
            "set": self.set_name,
            "set_source": load_prompts()["sets"][self.set_name]["source"],
            "classes": {c: {"positive": [self.texts[i] for i in p], "negative": [self.texts[i] for i in n], "source": s}
                        for c, p, n, s in zip(self.classes, self.positive, self.negative, self.sources)},
        }


def prompt_table(dataset: str, set_name: str, classes: Sequence[str]) -> PromptTable:
    """The prompts of ``classes`` of ``dataset`` (a release name) in set ``set_name``."""
    data = load_prompts()
    if set_name not in data["sets"]:
        raise G2DBenchError(f"prompt_set {set_name!r} is not in tasks/{PROMPT_FILE} (sets: {', '.join(data['sets'])})")
    entries = data["datasets"].get(dataset, {}).get(set_name)
    if entries is None:
        have = ", ".join(data["datasets"].get(dataset, {})) or "none"
        raise G2DBenchError(f"tasks/{PROMPT_FILE} has no prompt set {set_name!r} for dataset {dataset!r} (sets for it: {have})")
    texts: list[str] = []
    positive, negative, sources = [], [], []
    for name in classes:
        if name not in entries:
            raise G2DBenchError(f"tasks/{PROMPT_FILE}: set {set_name!r} of {dataset!r} has no prompts for class {name!r}")
        entry = entries[name]
        sides = []
        for side in ("positive", "negative"):
            prompts = [str(t) for t in entry.get(side) or []]
            sides.append(tuple(range(len(texts), len(texts) + len(prompts))))
            texts.extend(prompts)
        if not sides[0]:
            raise G2DBenchError(f"tasks/{PROMPT_FILE}: class {name!r} of {dataset!r}/{set_name} has no positive prompt")
        positive.append(sides[0])
        negative.append(sides[1])
        sources.append(str(entry.get("source", "")))
    return PromptTable(set_name, tuple(classes), tuple(texts), tuple(positive), tuple(negative), tuple(sources))


# -- scoring (pure functions) ----------------------------------------------------------------------
def ensemble(similarities: np.ndarray, how: str) -> np.ndarray:
    """``N×k`` similarities of one class's ``k`` prompts → ``N`` class scores (``max`` or ``mean``)."""
    if how == "max":
        return similarities.max(axis=1)
    if how == "mean":
        return similarities.mean(axis=1)
    raise G2DBenchError(f"ensemble must be 'max' or 'mean', got {how!r}")


def pair_probability(positive: np.ndarray, negative: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """Softmax over the (positive, negative) pair: ``exp(s⁺/T) / (exp(s⁺/T) + exp(s⁻/T))``, computed
    stably as ``sigmoid((s⁺ − s⁻)/T)``."""
    if not temperature > 0:
        raise G2DBenchError(f"temperature must be > 0, got {temperature!r}")
    from scipy.special import expit

    return expit((np.asarray(positive, dtype=np.float64) - np.asarray(negative, dtype=np.float64)) / temperature)


def class_scores(sims: np.ndarray, table: PromptTable, how: str, temperature: float) -> tuple[np.ndarray, np.ndarray | None]:
    """``N×T`` image–prompt similarities → (``N×K`` scores, ``N×K`` decisions or ``None``).

    With negatives: score = pair probability, decision = ensembled s⁺ > ensembled s⁻. Without:
    score = ensembled positive similarity, no decision."""
    pos = np.stack([ensemble(sims[:, list(i)], how) for i in table.positive], axis=1)
    if not table.has_negatives:
        return pos, None
    neg = np.stack([ensemble(sims[:, list(i)], how) for i in table.negative], axis=1)
    return pair_probability(pos, neg, temperature), pos > neg


def zscore(scores: np.ndarray) -> np.ndarray:
    """Standardise each column over the rows (GLoRIA ``normalize``: mean, population std); a
    constant column is only centred."""
    std = scores.std(axis=0)
    return (scores - scores.mean(axis=0)) / np.where(std > 0, std, 1.0)


def binary_metrics(y: np.ndarray, probs: np.ndarray, decisions: np.ndarray, names: Sequence[str]) -> tuple[dict, dict]:
    """Per-class AUC (of ``probs``), F1 and accuracy (of ``decisions``) with scikit-learn; macro means
    over the classes whose test labels hold both values (the notes list the others). ``y``,
    ``probs``, ``decisions``: ``N×K``."""
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    per: dict[str, dict[str, float]] = {"auc": {}, "f1": {}, "accuracy": {}}
    skipped = []
    for k, name in enumerate(names):
        truth = y[:, k].astype(int)
        if len(np.unique(truth)) < 2:
            skipped.append(name)
            continue
        per["auc"][name] = float(roc_auc_score(truth, probs[:, k]))
        per["f1"][name] = float(f1_score(truth, decisions[:, k].astype(int), zero_division=0))
        per["accuracy"][name] = float(accuracy_score(truth, decisions[:, k].astype(int)))
    if not per["auc"]:
        raise G2DBenchError("zero-shot: no test label has both classes; the test split is too small to score")
    metrics = {metric: float(np.mean(list(values.values()))) for metric, values in per.items()}
    if len(names) > 1:
        for metric, values in per.items():
            metrics.update({f"{metric}/{n}": v for n, v in values.items()})
    return metrics, ({"labels_without_both_classes": skipped} if skipped else {})


def multiclass_metrics(target: np.ndarray, scores: np.ndarray, names: Sequence[str]) -> dict:
    """Accuracy of ``argmax(scores)`` and macro F1 over all ``K`` classes (scikit-learn;
    a class never predicted nor present scores F1 0). ``target``: ``N`` ints, ``scores``: ``N×K``."""
    from sklearn.metrics import accuracy_score, f1_score

    pred = scores.argmax(axis=1)
    labels = list(range(len(names)))
    metrics = {"accuracy": float(accuracy_score(target, pred)),
               "f1": float(f1_score(target, pred, labels=labels, average="macro", zero_division=0))}
    per_class = f1_score(target, pred, labels=labels, average=None, zero_division=0)
    metrics.update({f"f1/{n}": float(v) for n, v in zip(names, per_class)})
    return metrics


# -- data -----------------------------------------------------------------------------------------
def zero_shot_targets(arrays: SplitArrays, kind: str, policy: str | None) -> tuple[np.ndarray, tuple[str, ...]]:
    """Test labels: ``N×K`` {0, 1} floats, or ``N`` class indices for ``*-argmax`` kinds; class names."""
    from g2d_bench.tasks.linear import targets

    if arrays.labels is None:
        raise G2DBenchError("zero-shot classification needs labels, but the cached data has none")
    if kind == "all":
        raw = np.nan_to_num(np.asarray(arrays.labels, dtype=np.float32), nan=0.0)
        return (raw > 0.5).astype(np.float32), tuple(arrays.label_names)
    if kind.endswith("-argmax"):
        y, names = targets(arrays, kind.removesuffix("-argmax"), policy)
        if not np.all(y.sum(axis=1) == 1):
            raise G2DBenchError(f"zero-shot targets {kind!r}: {int((y.sum(axis=1) != 1).sum())} test images do not have "
                                "exactly one positive class; is the split the 5x200 manifest?")
        return y.argmax(axis=1).astype(np.int64), names
    return targets(arrays, kind, policy)


def image_batches(arrays: SplitArrays, crop: int, batch_size: int, device: str):
    """``(index, images B×1×crop×crop float [0, 1])`` over the split in order (centre-cropped)."""
    import torch

    from g2d_bench.tasks.features import center_crop, to_tensor

    for start in range(0, len(arrays), batch_size):
        index = np.arange(start, min(start + batch_size, len(arrays)))
        batch = center_crop(np.asarray(arrays.images[start : start + len(index)]), crop)
        yield index, to_tensor(batch, device).contiguous(memory_format=torch.channels_last)


def similarities(adapter: "MethodAdapter", arrays: SplitArrays, texts: Sequence[str], crop: int, batch_size: int,
                 device: str, progress: bool = False, desc: str = "zero-shot") -> np.ndarray:
    """``N×T`` similarities of every image of ``arrays`` with every prompt: the prompts are encoded
    once (``encode_prompts``), each image goes through ``similarity`` once, without gradients."""
    import torch
    from tqdm.auto import tqdm

    out = np.empty((len(arrays), len(texts)), dtype=np.float32)
    with torch.no_grad():
        encoded = adapter.encode_prompts(list(texts))
        for index, x in tqdm(image_batches(arrays, crop, batch_size, device), total=-(-len(arrays) // batch_size),
                             desc=desc, disable=not progress, leave=False):
            scores = adapter.similarity(x, encoded)
            if tuple(scores.shape) != (len(index), len(texts)):
                raise G2DBenchError(f"method {adapter.name!r}: similarity returned shape {tuple(scores.shape)}, "
                                    f"expected {(len(index), len(texts))}")
            out[index] = scores.float().cpu().numpy()
    return out


# -- family function ------------------------------------------------------------------------------
def run(ctx: TaskContext) -> TaskResult:
    """Family function of the zero-shot classification tasks (only the test split is read)."""
    import pandas as pd

    multiclass = ctx.hp("targets").endswith("-argmax")
    policy = ctx.hp("uncertain_policy") if "uncertain_policy" in ctx.spec.hparams else None
    test = ctx.data("test")
    y, names = zero_shot_targets(test, ctx.hp("targets"), policy)
    table = prompt_table(ctx.spec.dataset, ctx.hp("prompt_set"), names)
    if not multiclass and not table.has_negatives:
        raise G2DBenchError(f"prompt_set {table.set_name!r} has no negative prompts; {ctx.spec.name} scores positive "
                            "against negative prompts (use prompt_set=chexzero)")
    sims = similarities(ctx.adapter, test, table.texts, int(ctx.hp("image_size")), int(ctx.hp("batch_size")),
                        ctx.device, ctx.progress, ctx.spec.name)
    scores, decisions = class_scores(sims, table, ctx.hp("ensemble"), float(ctx.hp("temperature")))
    per_sample = pd.DataFrame({"sample_id": test.sample_ids})
    info = {"prompts": table.describe(), "n_test": len(test), "note": NO_TRAINING}
    if multiclass:
        norm = ctx.hp("class_norm")
        if norm not in ("zscore", "none"):
            raise G2DBenchError(f"class_norm must be 'zscore' or 'none', got {norm!r}")
        scores = zscore(scores) if norm == "zscore" else scores
        metrics = multiclass_metrics(y, scores, names)
        per_sample["target"] = [names[i] for i in y]
        per_sample["pred"] = [names[i] for i in scores.argmax(axis=1)]
        for k, name in enumerate(names):
            per_sample[f"score/{name}"] = scores[:, k]
        info["class_counts"] = {n: int((y == k).sum()) for k, n in enumerate(names)}
    else:
        metrics, notes = binary_metrics(y, scores, decisions, names)
        info.update(notes)
        for k, name in enumerate(names):
            per_sample[f"y/{name}"] = y[:, k]
            per_sample[f"p/{name}"] = scores[:, k]
            per_sample[f"d/{name}"] = decisions[:, k].astype(int)  # sim(positive) > sim(negative): F1, accuracy
        info["positives"] = {n: int(y[:, k].sum()) for k, n in enumerate(names)}
    return TaskResult(metrics=metrics, per_sample=per_sample, info=info)
