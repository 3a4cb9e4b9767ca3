"""Recompute a run's metrics from its per-sample scores file: one pure function per task family.

Every family writes a per-sample scores CSV beside its run record (:func:`g2d_bench.records.write_record`).
The functions here turn such a table back into the record's metric, exactly (the tests compare
``metric(scores, spec, m) == record["metrics"][m]`` on real runs), so that the statistics
(:mod:`g2d_bench.stats`) can recompute a metric on bootstrap resamples of the test images.

A family function has the signature ``metric(per_sample, spec, metric_name) -> float``:

- ``per_sample``: the scores table, one row per test image (``sample_id`` first), in any row order
  for the order-free metrics (a resample is a table with repeated rows);
- ``spec``: a :class:`ScoreSpec` — the task's family, metric names and its *resolved* settings
  (spec defaults overlaid with the run's overrides, e.g. ``dice_reduction``, ``map_mode``);
- ``metric_name``: one of the task's metric names (``"auc"``, ``"auc/Edema"``, ``"dice"`` …).

Beside it a family may give ``strata`` (per-row labels whose counts a bootstrap keeps, e.g. the
class where an AUC needs both), ``pin`` (the spec to use on resamples, with data-dependent choices
made on the full test set) and ``proxies`` (a metric to resample where the scores cannot reproduce
the real one).

Registration (the extension point for families added later — ``zero-shot-cls``, ``grounding``,
``finetune-cls``): either call ``register("zero-shot-cls", my_metric, strata=my_strata)`` from the
family's module, or define ``RESCORER = FamilyScorer(my_metric, ...)`` in the module that holds the
family's ``run`` function (the ``run`` reference of its :class:`~g2d_bench.task.TaskSpec`):
:func:`scorer` imports that module and registers it on first use, so no import order matters.

What each built-in family's scores file holds and what can be recomputed from it:

- ``linear-cls`` (:mod:`g2d_bench.tasks.linear`): ``y/<label>`` and ``p/<label>`` per label
  (multilabel heads) or ``target`` and ``p/<class>`` (multiclass) → ``auc``, ``auc/<label>``,
  ``accuracy``: exact.
- ``segmentation``: per-image ``dice``, ``gt_pixels``, ``pred_pixels`` → ``dice`` (either
  reduction), ``dice_pos``: exact.
- ``detection`` / ``detection-ultralytics``: per-image ``n_pred``, ``n_gt``, ``best_iou``,
  ``max_score``. COCO mAP needs every predicted box with its score and every ground-truth box, which
  this file lacks; ``map`` / ``ap50`` are recomputed exactly only when the file also has the columns
  of :func:`detection_box_columns` (``pred_boxes``, ``pred_scores``, ``gt_boxes``), otherwise
  :class:`RescoreUnavailable` is raised. The per-image proxies ``loc_hit`` / ``loc_hit50`` (see
  :func:`detection_metric`) are always available and are what the statistics fall back to
  (``FamilyScorer.proxies``), labelled as approximations.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

import numpy as np

from g2d_bench.errors import G2DBenchError

if TYPE_CHECKING:
    import pandas as pd

    from g2d_bench.task import TaskSpec


class RescoreUnavailable(G2DBenchError):
    """The scores file lacks what a metric needs (the message names the missing columns)."""


@dataclass(frozen=True)
class ScoreSpec:
    """What a family function needs to know about a run to recompute its metrics.

    ``settings``: the task's hyperparameters as the run resolved them (spec defaults overlaid with
    overrides; a run record's ``config``)."""

    task: str
    family: str
    metrics: tuple[str, ...]
    primary: str
    settings: Mapping[str, Any] = field(default_factory=dict)
    higher_is_better: bool = True
    run: str = ""  # the family function's lazy reference, where known (extension look-up)

    def __post_init__(self) -> None:
        object.__setattr__(self, "settings", MappingProxyType(dict(self.settings)))

    def setting(self, name: str, default: Any = None) -> Any:
        return self.settings.get(name, default)

    @classmethod
    def from_task(cls, spec: "TaskSpec", overrides: Mapping[str, Any] | None = None) -> "ScoreSpec":
        settings = {name: h.value for name, h in spec.hparams.items()} | dict(overrides or {})
        return cls(spec.name, spec.family, tuple(spec.metrics), spec.primary, settings,
                   bool(getattr(spec, "higher_is_better", True)), spec.run)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> "ScoreSpec":
        """From a run record: its ``task`` description and resolved ``config``. Where the task is
        registered, its spec supplies ``higher_is_better`` and the family's ``run`` reference."""
        task = record.get("task") or {}
        name = task.get("name") or record["key"]["task"]
        settings = {k: h["value"] for k, h in (task.get("hparams") or {}).items()} | dict(record.get("config") or {})
        higher, run = task.get("higher_is_better", True), ""
        registered = _registered_task(name)
        if registered is not None:
            higher, run = bool(getattr(registered, "higher_is_better", True)), registered.run
            family = task.get("family") or registered.family
        else:
            family = task.get("family", "")
        if not family:
            raise G2DBenchError(f"run record {record.get('_path', name)}: the task description names no family; "
                                "rerun it with this version of g2d-bench")
        return cls(name, family, tuple(task.get("metrics", ())), task.get("primary", record.get("primary", "")),
                   settings, bool(higher), run)


def _registered_task(name: str):
    from g2d_bench.tasks import TASKS

    try:
        return TASKS.get(name)
    except G2DBenchError:
        return None


def coerce_spec(spec: "ScoreSpec | TaskSpec | Mapping[str, Any]") -> ScoreSpec:
    """A :class:`ScoreSpec` from a ScoreSpec, a TaskSpec (its default settings) or a run record."""
    if isinstance(spec, ScoreSpec):
        return spec
    if isinstance(spec, Mapping):
        return ScoreSpec.from_record(spec)
    return ScoreSpec.from_task(spec)


MetricFn = Callable[["pd.DataFrame", ScoreSpec, str], float]
#: per-row stratum labels (``N`` hashable values) a bootstrap keeps the counts of, or ``None``
StrataFn = Callable[["pd.DataFrame", ScoreSpec, str], "np.ndarray | None"]


#: the spec to use on bootstrap resamples of a table: data-dependent choices of the metric made
#: on the full test set and pinned in its settings (e.g. which labels a macro AUC averages)
PinFn = Callable[["pd.DataFrame", ScoreSpec, str], ScoreSpec]

#: optional: the metric of a table as a function of row indices (repeats allowed), with the work that
#: does not depend on the rows done once — for bootstraps whose metric is costly to recompute
#: (detection mAP); ``None`` when the family has no such shortcut for this metric
PrepareFn = Callable[["pd.DataFrame", ScoreSpec, str], "Callable[[np.ndarray], float] | None"]


def no_strata(per_sample: "pd.DataFrame", spec: ScoreSpec, metric_name: str) -> None:
    return None


def no_pin(per_sample: "pd.DataFrame", spec: ScoreSpec, metric_name: str) -> ScoreSpec:
    return spec


@dataclass(frozen=True)
class FamilyScorer:
    """A family's metric function, its bootstrap strata, and proxies for metrics its scores file
    cannot reproduce (``{"map": "loc_hit"}``: bootstrap ``loc_hit`` when ``map`` is unavailable)."""

    metric: MetricFn
    strata: StrataFn = no_strata
    pin: PinFn = no_pin
    proxies: Mapping[str, str] = field(default_factory=dict)
    #: one line per proxy, saying what it is and how it differs from the metric it stands for
    notes: Mapping[str, str] = field(default_factory=dict)
    prepare: "PrepareFn | None" = None


RESCORERS: dict[str, FamilyScorer] = {}


def register(family: str, metric_fn: MetricFn, strata: StrataFn | None = None, pin: PinFn | None = None,
             proxies: Mapping[str, str] | None = None, notes: Mapping[str, str] | None = None, *,
             prepare: PrepareFn | None = None, replace: bool = False) -> FamilyScorer:
    """Register the rescoring function of a task family (``TaskSpec.family``); returns the entry.
    Registering a family twice is an error unless ``replace``."""
    if family in RESCORERS and not replace:
        raise G2DBenchError(f"rescore: family {family!r} already has a metric function; pass replace=True to swap it")
    entry = FamilyScorer(metric_fn, strata or no_strata, pin or no_pin, dict(proxies or {}), dict(notes or {}), prepare)
    RESCORERS[family] = entry
    return entry


def scorer(spec: "ScoreSpec | TaskSpec | Mapping[str, Any]") -> FamilyScorer:
    """The registered :class:`FamilyScorer` of a spec's family; a family module that defines
    ``RESCORER`` is registered on first use."""
    spec = coerce_spec(spec)
    if spec.family not in RESCORERS and spec.run:
        import importlib

        module = importlib.import_module(spec.run.partition(":")[0])
        entry = getattr(module, "RESCORER", None)
        if isinstance(entry, FamilyScorer) and spec.family not in RESCORERS:
            RESCORERS[spec.family] = entry
    if spec.family not in RESCORERS:
        raise RescoreUnavailable(f"rescore: no metric function for task family {spec.family!r} (task {spec.task}); "
                                 f"register one with g2d_bench.tasks.rescore.register({spec.family!r}, fn) "
                                 f"(registered: {', '.join(sorted(RESCORERS))})")
    return RESCORERS[spec.family]


def metric(per_sample: "pd.DataFrame", spec: "ScoreSpec | TaskSpec | Mapping[str, Any]", metric_name: str) -> float:
    """Recompute ``metric_name`` of a run from its scores table (dispatch on the spec's family)."""
    spec = coerce_spec(spec)
    return float(scorer(spec).metric(per_sample, spec, metric_name))


def on_rows(per_sample: "pd.DataFrame", spec: "ScoreSpec | TaskSpec | Mapping[str, Any]", metric_name: str) -> Callable[[np.ndarray], float]:
    """``rows -> metric(per_sample.iloc[rows], spec, metric_name)``, through the family's
    ``prepare`` shortcut where it has one for this metric."""
    spec = coerce_spec(spec)
    entry = scorer(spec)
    fast = entry.prepare(per_sample, spec, metric_name) if entry.prepare is not None else None
    if fast is not None:
        return fast
    return lambda rows: float(entry.metric(per_sample.iloc[rows], spec, metric_name))


def strata(per_sample: "pd.DataFrame", spec: "ScoreSpec | TaskSpec | Mapping[str, Any]", metric_name: str) -> "np.ndarray | None":
    """Per-row strata a bootstrap of ``metric_name`` must keep the counts of (``None``: none)."""
    spec = coerce_spec(spec)
    return scorer(spec).strata(per_sample, spec, metric_name)


def pinned(per_sample: "pd.DataFrame", spec: "ScoreSpec | TaskSpec | Mapping[str, Any]", metric_name: str) -> ScoreSpec:
    """The spec to recompute ``metric_name`` with on resamples of ``per_sample`` (the full test
    set): the family's data-dependent choices fixed, so every resample computes the same metric."""
    spec = coerce_spec(spec)
    return scorer(spec).pin(per_sample, spec, metric_name)


def _with_settings(spec: ScoreSpec, **settings: Any) -> ScoreSpec:
    from dataclasses import replace

    return replace(spec, settings={**spec.settings, **settings})


def _require(per_sample: "pd.DataFrame", columns: Sequence[str], what: str) -> None:
    missing = [c for c in columns if c not in per_sample.columns]
    if missing:
        raise RescoreUnavailable(f"rescore {what}: the scores file has no column(s) {', '.join(missing)} "
                                 f"(found: {', '.join(map(str, per_sample.columns))})")


def _unknown(spec: ScoreSpec, metric_name: str, known: Sequence[str]) -> G2DBenchError:
    return G2DBenchError(f"rescore: task {spec.task} ({spec.family}) has no metric {metric_name!r} "
                         f"recomputable from its scores (known: {', '.join(known)})")


# -- linear classification ------------------------------------------------------------------------
def _linear_layout(per_sample: "pd.DataFrame") -> tuple[bool, list[str]]:
    """(multiclass, label/class names in file order) from the ``p/<name>`` columns."""
    names = [c[2:] for c in per_sample.columns if c.startswith("p/")]
    if not names:
        raise RescoreUnavailable(f"rescore linear-cls: the scores file has no p/<label> columns (found: {', '.join(per_sample.columns)})")
    return "target" in per_sample.columns, names


def binary_auc(y: np.ndarray, scores: np.ndarray) -> float:
    """ROC AUC of binary ``y`` (N, {0, 1}) against ``scores`` (N) by the Mann–Whitney rank sum
    (ties count one half): the area scikit-learn's ``roc_auc_score`` computes (equal to ~1e-15),
    ~7× faster, which matters on 1,000 bootstrap resamples. NaN unless both classes occur."""
    from scipy.stats import rankdata

    positive = np.asarray(y) > 0.5
    n_pos = int(positive.sum())
    n_neg = len(positive) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(np.asarray(scores, dtype=np.float64))
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def linear_metric(per_sample: "pd.DataFrame", spec: ScoreSpec, metric_name: str) -> float:
    """``linear-cls`` metrics, as :func:`g2d_bench.tasks.linear.score` computes them.

    Multilabel (``y/<label>``, ``p/<label>``): ``auc`` = mean ROC AUC over the labels whose rows
    hold both classes (NaN if none does) — or, when the spec pins ``auc_labels`` (bootstrap
    resamples, :func:`linear_pin`), over exactly those labels (NaN if one of them lost a class);
    ``auc/<label>`` = that label's AUC (NaN with one class). Multiclass (``target``, ``p/<class>``):
    ``accuracy`` of the argmax; ``auc`` = macro one-vs-rest AUC when every class is present (else
    NaN, as the record then omits it).
    """
    multiclass, names = _linear_layout(per_sample)
    probs = per_sample[[f"p/{n}" for n in names]].to_numpy(dtype=np.float64)
    if multiclass:
        y = per_sample["target"].to_numpy(dtype=np.int64)
        if metric_name == "accuracy":
            return float(np.mean(probs.argmax(axis=1) == y))
        if metric_name == "auc":
            if len(np.unique(y)) != probs.shape[1]:
                return float("nan")
            # scikit-learn multi_class="ovr", average="macro": unweighted mean of one-vs-rest AUCs
            return float(np.mean([binary_auc(y == k, probs[:, k]) for k in range(probs.shape[1])]))
        raise _unknown(spec, metric_name, ("accuracy", "auc"))
    _require(per_sample, [f"y/{n}" for n in names], "linear-cls (multilabel)")
    y = per_sample[[f"y/{n}" for n in names]].to_numpy(dtype=np.float64)
    on_rows = _multilabel_auc(y, probs, names, spec, metric_name)
    if on_rows is None:
        raise _unknown(spec, metric_name, ["auc", *(f"auc/{n}" for n in names)])
    return on_rows(np.arange(len(y)))


def _multilabel_auc(y: np.ndarray, probs: np.ndarray, names: Sequence[str], spec: ScoreSpec,
                    metric_name: str) -> "Callable[[np.ndarray], float] | None":
    """``rows -> auc`` (the mean over the labels whose rows hold both classes, NaN if none does; over
    exactly the pinned ``auc_labels`` when the spec has them, a lost class giving NaN) or ``rows ->
    auc/<label>`` of ``N×K`` label and probability arrays; ``None`` for any other metric."""
    if metric_name.startswith("auc/") and metric_name[4:] in names:
        k = names.index(metric_name[4:])
        return lambda rows: binary_auc(y[rows, k], probs[rows, k])
    if metric_name != "auc":
        return None
    pinned_labels = spec.setting("auc_labels")
    if pinned_labels is not None:
        ks = [names.index(n) for n in pinned_labels]  # a NaN (lost class) propagates
        return lambda rows: float(np.mean([binary_auc(y[rows, k], probs[rows, k]) for k in ks])) if ks else float("nan")

    def unpinned(rows: np.ndarray) -> float:  # linear.score: np.mean over labels with an AUC
        kept = [v for v in (binary_auc(y[rows, k], probs[rows, k]) for k in range(len(names))) if not np.isnan(v)]
        return float(np.mean(kept)) if kept else float("nan")

    return unpinned


def linear_prepare(per_sample: "pd.DataFrame", spec: ScoreSpec, metric_name: str) -> "Callable[[np.ndarray], float] | None":
    """Multilabel ``auc`` / ``auc/<label>`` on row subsets from arrays read once (the bootstrap's
    1,000 resamples would otherwise rebuild pandas frames 1,000 times per cell); the numbers of
    :func:`linear_metric` on ``per_sample.iloc[rows]`` (tests/test_stats.py)."""
    multiclass, names = _linear_layout(per_sample)
    if multiclass or any(f"y/{n}" not in per_sample.columns for n in names):
        return None
    y = per_sample[[f"y/{n}" for n in names]].to_numpy(dtype=np.float64)
    probs = per_sample[[f"p/{n}" for n in names]].to_numpy(dtype=np.float64)
    return _multilabel_auc(y, probs, names, spec, metric_name)


def _minority(y: np.ndarray) -> int:
    positives = int((y > 0.5).sum())
    return min(positives, len(y) - positives)


def _labels_with_both_classes(per_sample: "pd.DataFrame", names: Sequence[str]) -> tuple[str, ...]:
    """The labels whose ``y/<label>`` column holds both classes: those a macro metric averages."""
    return tuple(n for n in names if f"y/{n}" in per_sample.columns and _minority(per_sample[f"y/{n}"].to_numpy(dtype=np.float64)) > 0)


def linear_strata(per_sample: "pd.DataFrame", spec: ScoreSpec, metric_name: str) -> "np.ndarray | None":
    """AUCs need both classes in every resample: stratify by the class — multiclass ``auc``: the
    target; ``auc/<label>``: that label; macro ``auc``: the label with the smallest minority class
    (the one most likely to lose a class). The other labels resample freely: stratifying by the
    pattern of all labels would keep every count but leave many strata of one image, which cannot
    vary, and shrink the interval. Accuracy needs no strata."""
    multiclass, names = _linear_layout(per_sample)
    if multiclass:
        return per_sample["target"].to_numpy() if metric_name == "auc" else None
    if metric_name.startswith("auc/"):
        return per_sample[f"y/{metric_name[4:]}"].to_numpy()
    if metric_name != "auc":
        return None
    scored = [n for n in names if _minority(per_sample[f"y/{n}"].to_numpy(dtype=np.float64)) > 0]
    if not scored:
        return None
    rarest = min(scored, key=lambda n: _minority(per_sample[f"y/{n}"].to_numpy(dtype=np.float64)))
    return per_sample[f"y/{rarest}"].to_numpy()


def linear_pin(per_sample: "pd.DataFrame", spec: ScoreSpec, metric_name: str) -> ScoreSpec:
    """Macro ``auc`` on resamples averages the labels scored on the full test set (``auc_labels``),
    so a resample where one of them loses a class is undefined (dropped), never a different mean."""
    multiclass, names = _linear_layout(per_sample)
    if multiclass or metric_name != "auc" or spec.setting("auc_labels") is not None:
        return spec
    return _with_settings(spec, auc_labels=_labels_with_both_classes(per_sample, names))


# -- segmentation ---------------------------------------------------------------------------------
def segmentation_metric(per_sample: "pd.DataFrame", spec: ScoreSpec, metric_name: str) -> float:
    """``segmentation`` metrics from per-image Dice: ``dice`` reduced as the run's
    ``dice_reduction`` (``mgca-batch`` uses the row order and the run's ``batch_size``);
    ``dice_pos`` = mean Dice over images with a non-empty ground truth (NaN if none)."""
    from g2d_bench.tasks.dense_metrics import mean_dice

    _require(per_sample, ["dice"], "segmentation")
    dice = per_sample["dice"].to_numpy(dtype=np.float64)
    if metric_name == "dice":
        return mean_dice(dice, spec.setting("dice_reduction", "per-image"), int(spec.setting("batch_size", 1) or 1))
    if metric_name == "dice_pos":
        _require(per_sample, ["gt_pixels"], "segmentation dice_pos")
        positive = per_sample["gt_pixels"].to_numpy() > 0
        return float(dice[positive].mean()) if positive.any() else float("nan")
    raise _unknown(spec, metric_name, ("dice", "dice_pos"))


def segmentation_strata(per_sample: "pd.DataFrame", spec: ScoreSpec, metric_name: str) -> "np.ndarray | None":
    """``dice``: plain image resampling; ``dice_pos`` keeps the number of positive images."""
    return (per_sample["gt_pixels"].to_numpy() > 0) if metric_name == "dice_pos" else None


# -- detection ------------------------------------------------------------------------------------
BOX_COLUMNS = ("pred_boxes", "pred_scores", "gt_boxes")


def detection_box_columns(predictions: Sequence[tuple[np.ndarray, np.ndarray]], gt_boxes: Sequence[np.ndarray]) -> dict[str, list[str]]:
    """The per-image columns that make detection mAP recomputable, for a family's scores table:
    ``pred_boxes`` (JSON ``[[x1, y1, x2, y2], …]`` pixels), ``pred_scores`` (JSON list), ``gt_boxes``
    (JSON, the boxes the metric counted). ``predictions[i]``: (``k×4`` boxes, ``k`` scores).
    Values are written as Python floats of the float32 numbers, so they read back exactly."""
    def dump(array: np.ndarray, shape: tuple[int, ...]) -> str:
        return json.dumps(np.asarray(array, dtype=np.float32).reshape(shape).astype(np.float64).tolist())

    return {
        "pred_boxes": [dump(boxes, (-1, 4)) for boxes, _ in predictions],
        "pred_scores": [dump(scores, (-1,)) for _, scores in predictions],
        "gt_boxes": [dump(gt, (-1, 4)) for gt in gt_boxes],
    }


def _boxes(cells, shape: tuple[int, ...]) -> list[np.ndarray]:
    return [np.asarray(json.loads(c) if isinstance(c, str) else [], dtype=np.float64).reshape(shape) for c in cells]


def _loc_hit(per_sample: "pd.DataFrame", thresholds: np.ndarray) -> float:
    _require(per_sample, ["n_gt", "best_iou"], "detection proxy")
    with_gt = per_sample["n_gt"].to_numpy() > 0
    if not with_gt.any():
        return float("nan")
    iou = per_sample["best_iou"].to_numpy(dtype=np.float64)[with_gt]
    return float((iou[:, None] >= thresholds[None, :]).mean())


def detection_metric(per_sample: "pd.DataFrame", spec: ScoreSpec, metric_name: str) -> float:
    """``detection`` metrics.

    ``map`` / ``ap50``: COCO mAP over IoU 0.40:0.05:0.75 / AP at 0.5
    (:func:`~g2d_bench.tasks.dense_metrics.detection_map` with the run's ``map_mode`` and
    ``image_size``) — exact, but only from a scores table holding :data:`BOX_COLUMNS`.

    Proxies from the per-image columns every detection scores file holds (approximations, not mAP):
    ``loc_hit`` = over images with ground truth, the share of IoU thresholds 0.40:0.05:0.75 that the
    image's ``best_iou`` (mean over its objects of the best IoU with any prediction) reaches;
    ``loc_hit50`` = the share of those images with ``best_iou >= 0.5``. They ignore prediction scores
    and false positives on images without objects, which mAP penalises.
    """
    from g2d_bench.tasks.dense_metrics import IOU_THRESHOLDS, detection_map

    if metric_name in ("map", "ap50"):
        missing = [c for c in BOX_COLUMNS if c not in per_sample.columns]
        if missing:
            raise RescoreUnavailable(
                f"rescore {spec.task} {metric_name}: COCO mAP needs every predicted box with its score and every "
                f"ground-truth box per test image; the scores file has only {', '.join(map(str, per_sample.columns))} "
                f"(missing {', '.join(missing)}: add g2d_bench.tasks.rescore.detection_box_columns(...) to the family's per-image table)")
        pred = _boxes(per_sample["pred_boxes"], (-1, 4))
        scores = _boxes(per_sample["pred_scores"], (-1,))
        gt = _boxes(per_sample["gt_boxes"], (-1, 4))
        size = int(spec.setting("image_size", 224))
        return float(detection_map(pred, scores, gt, size, spec.setting("map_mode", "all"))[metric_name])
    if metric_name == "loc_hit":
        return _loc_hit(per_sample, np.asarray(IOU_THRESHOLDS, dtype=np.float64))
    if metric_name == "loc_hit50":
        return _loc_hit(per_sample, np.array([0.5]))
    raise _unknown(spec, metric_name, ("map", "ap50", "loc_hit", "loc_hit50"))


def detection_prepare(per_sample: "pd.DataFrame", spec: ScoreSpec, metric_name: str) -> "Callable[[np.ndarray], float] | None":
    """``map`` / ``ap50`` on row subsets with the boxes parsed and matched once
    (:func:`~g2d_bench.tasks.dense_metrics.detection_map_on_rows`)."""
    from g2d_bench.tasks.dense_metrics import detection_map_on_rows

    if metric_name not in ("map", "ap50") or any(c not in per_sample.columns for c in BOX_COLUMNS):
        return None
    fn = detection_map_on_rows(_boxes(per_sample["pred_boxes"], (-1, 4)), _boxes(per_sample["pred_scores"], (-1,)),
                               _boxes(per_sample["gt_boxes"], (-1, 4)), int(spec.setting("image_size", 224)),
                               spec.setting("map_mode", "all"))
    return lambda rows: float(fn(np.asarray(rows))[metric_name])


_DETECTION_NOTES = {
    "loc_hit": "no boxes in the scores file: share of IoU thresholds .40:.05:.75 reached by each image's mean best IoU, over images with objects (ignores scores and false positives)",
    "loc_hit50": "no boxes in the scores file: share of images with objects whose mean best IoU >= 0.5 (ignores scores and false positives)",
}

# -- zero-shot classification, zero-shot grounding -------------------------------------------------
def _f1_accuracy(truth: np.ndarray, decision: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-column F1 (0 where a column has no positive and no positive decision: scikit-learn's
    ``zero_division=0``) and accuracy of ``N×K`` {0, 1} arrays. Written out (2·TP / (2·TP + FP +
    FN)) because 1,000 bootstrap resamples × K classes of scikit-learn calls take minutes; equal to
    ``f1_score`` / ``accuracy_score`` (tests/test_stats.py)."""
    truth, decision = truth > 0.5, decision > 0.5
    tp = (truth & decision).sum(axis=0)
    denominator = 2 * tp + (~truth & decision).sum(axis=0) + (truth & ~decision).sum(axis=0)
    f1 = np.where(denominator > 0, 2.0 * tp / np.maximum(denominator, 1), 0.0)
    return f1, (truth == decision).mean(axis=0)


def zeroshot_metric(per_sample: "pd.DataFrame", spec: ScoreSpec, metric_name: str) -> float:
    """``zero-shot-cls`` metrics, as :func:`g2d_bench.tasks.zeroshot.binary_metrics` and
    ``multiclass_metrics`` compute them.

    Binary (``y/``, ``p/``, ``d/<class>``): ``auc`` as ``linear-cls``; ``f1`` / ``accuracy`` of the
    decisions ``d/`` (sim(positive) > sim(negative); files without them: ``p > 0.5``, the same
    rule) averaged over the classes whose labels hold both values — on resamples over the classes
    pinned on the full test set (``score_labels``); ``<metric>/<class>`` per class. Multiclass
    (``target``, ``pred``, ``score/<class>``): ``accuracy`` and macro ``f1`` over every class,
    ``f1/<class>``."""
    if "target" in per_sample.columns:
        names = [c[len("score/"):] for c in per_sample.columns if c.startswith("score/")]
        target, pred = per_sample["target"].astype(str).to_numpy(), per_sample["pred"].astype(str).to_numpy()
        if metric_name == "accuracy":
            return float(np.mean(target == pred))
        f1, _ = _f1_accuracy(np.stack([target == n for n in names], 1), np.stack([pred == n for n in names], 1))
        if metric_name == "f1":
            return float(f1.mean())
        if metric_name.startswith("f1/") and metric_name[3:] in names:
            return float(f1[names.index(metric_name[3:])])
        raise _unknown(spec, metric_name, ["accuracy", "f1", *(f"f1/{n}" for n in names)])
    _, names = _linear_layout(per_sample)
    base, _, one = metric_name.partition("/")
    if base == "auc":
        return linear_metric(per_sample, spec, metric_name)
    if base not in ("f1", "accuracy") or (one and one not in names):
        raise _unknown(spec, metric_name, ["auc", "f1", "accuracy", *(f"{m}/{n}" for m in ("auc", "f1", "accuracy") for n in names)])
    _require(per_sample, [f"y/{n}" for n in names], "zero-shot-cls (binary)")
    y = per_sample[[f"y/{n}" for n in names]].to_numpy(dtype=np.float64)
    if all(f"d/{n}" in per_sample.columns for n in names):
        decision = per_sample[[f"d/{n}" for n in names]].to_numpy(dtype=np.float64)
    else:
        decision = (per_sample[[f"p/{n}" for n in names]].to_numpy(dtype=np.float64) > 0.5).astype(np.float64)
    values = dict(zip(("f1", "accuracy"), _f1_accuracy(y, decision)))[base]
    if one:
        return float(values[names.index(one)])
    labels = spec.setting("score_labels")
    if labels is None:
        labels = _labels_with_both_classes(per_sample, names)
    return float(np.mean([values[names.index(n)] for n in labels])) if len(labels) else float("nan")


def zeroshot_strata(per_sample: "pd.DataFrame", spec: ScoreSpec, metric_name: str) -> "np.ndarray | None":
    """AUCs as ``linear-cls``; a per-class F1 / accuracy keeps that class's count; the rest: none."""
    if "target" in per_sample.columns:
        return None
    base, _, one = metric_name.partition("/")
    if base == "auc":
        return linear_strata(per_sample, spec, metric_name)
    return per_sample[f"y/{one}"].to_numpy() if one else None


def zeroshot_pin(per_sample: "pd.DataFrame", spec: ScoreSpec, metric_name: str) -> ScoreSpec:
    """Macro metrics on resamples average the classes scored on the full test set."""
    if "target" in per_sample.columns:
        return spec
    if metric_name == "auc":
        return linear_pin(per_sample, spec, metric_name)
    if metric_name in ("f1", "accuracy") and spec.setting("score_labels") is None:
        _, names = _linear_layout(per_sample)
        return _with_settings(spec, score_labels=_labels_with_both_classes(per_sample, names))
    return spec


def per_image_mean_metric(per_sample: "pd.DataFrame", spec: ScoreSpec, metric_name: str) -> float:
    """``zero-shot-grounding``: the mean over the scored (positive) images of the metric's own
    per-image column (NaN entries skipped), as :func:`g2d_bench.tasks.grounding.run` computes it."""
    if metric_name not in spec.metrics or metric_name not in per_sample.columns:
        raise _unknown(spec, metric_name, [m for m in spec.metrics if m in per_sample.columns])
    values = per_sample[metric_name].to_numpy(dtype=np.float64)
    return float(np.nanmean(values)) if np.isfinite(values).any() else float("nan")


register("linear-cls", linear_metric, linear_strata, linear_pin, prepare=linear_prepare)
# cxr14-ft writes the multilabel y/ p/ table of linear classification and scores it the same way
register("finetune-cls", linear_metric, linear_strata, linear_pin, prepare=linear_prepare)
register("zero-shot-cls", zeroshot_metric, zeroshot_strata, zeroshot_pin,
         prepare=lambda table, spec, name: None if "target" in table.columns else linear_prepare(table, spec, name))
register("zero-shot-grounding", per_image_mean_metric)
register("segmentation", segmentation_metric, segmentation_strata)
for _family in ("detection", "detection-ultralytics"):
    register(_family, detection_metric, proxies={"map": "loc_hit", "ap50": "loc_hit50"}, notes=_DETECTION_NOTES,
             prepare=detection_prepare)
# Families added by other modules register the same way, e.g. in their own module:
#   from g2d_bench.tasks.rescore import register
#   register("my-family", my_metric, my_strata)
# or define RESCORER = FamilyScorer(my_metric, my_strata) beside the family's run().
