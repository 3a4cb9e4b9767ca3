"""Zero-shot grounding: where does the image–prompt similarity peak? (G2D Table 2b, A.5)

The BioViL pipeline as G2D A.5 describes it: the adapter's dense map
(:meth:`~g2d_bench.adapter.MethodAdapter.grounding_maps`: by default the cosine of every position
of the projected dense embedding with the projected prompt), resized to the image (bilinear), is
scored on the **positive** test images only against the ground truth (RSNA: filled boxes; SIIM:
the decoded RLE masks):

- ``pointing_game``: the map's maximum lies inside the ground truth (a tie among several maximal
  pixels counts the share of them inside, the expected hit of a random tie-break);
- ``iou`` / ``dice``: after thresholding the map — ``threshold_rule="percentile"`` (default: the
  pixels at or above the image's ``threshold``-th percentile, 85 as G2D §3.2 binarises its own
  attention maps; scale-free, so cosine ranges of different methods do not matter) or ``"fixed"``
  (map ≥ ``threshold``, a similarity in [-1, 1]);
- ``pixel_auroc``: threshold-free AUROC of the map's values against the ground-truth pixels, so a
  threshold artefact can be told from a map that ranks lesion pixels high.

All four are means over the positive images. Nothing is trained; the training and validation
splits are never read.
"""
from __future__ import annotations

import logging
import re
import textwrap
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from g2d_bench.adapter import Capability
from g2d_bench.errors import G2DBenchError
from g2d_bench.task import Hyper, SplitArrays, TaskContext, TaskResult, TaskSpec
from g2d_bench.tasks.zeroshot import NO_TRAINING, prompt_table


log = logging.getLogger(__name__)

THRESHOLD_RULES = ("percentile", "fixed")
UPSAMPLING = ("bilinear", "nearest")
COMMON = {
    "image_size": Hyper(224, "G2D A.4: dense-task images 224 (MedKLIP grounding: 224 x 224)"),
    "prompt_set": Hyper("chexzero", "tasks/prompts.yaml: the class's positive prompt(s); several are averaged"),
    "upsample": Hyper("bilinear", "G2D A.5 (BioViL): the similarity map resized to the image, bilinear; 'nearest' = MedKLIP code "
                                  "(Sample_Zero-Shot_Grounding_RSNA/test.py repeats each cell)"),
    "threshold_rule": Hyper("percentile", "g2d-bench: per-image percentile of the map (scale-free across methods); 'fixed' = "
                                          "a similarity value (MedKLIP code thresholds its attention map at 0.008)"),
    "threshold": Hyper(85.0, "G2D §3.2: the 85th percentile binarises G2D's own attention maps (map >= percentile, paper); "
                             "with threshold_rule=fixed a similarity in [-1, 1]"),
    "batch_size": Hyper(32, "g2d-bench: images per adapter call (speed only)"),
}


def _spec(name: str, dataset: str, finding: str, description: str) -> TaskSpec:
    return TaskSpec(
        name=name,
        version=1,
        family="zero-shot-grounding",
        dataset=dataset,
        split="g2d",
        protocol="biovil-grounding",
        metrics=("pointing_game", "iou", "dice", "pixel_auroc"),
        primary="pointing_game",
        run="g2d_bench.tasks.grounding:run",
        hparams={**COMMON, "finding": Hyper(finding, f"{dataset} label whose positive prompt is grounded")},
        requires=frozenset({Capability.DENSE_TEXT}),
        needs=frozenset({"masks"}),
        description=description,
        uses_fraction=False,  # no training data
    )


RSNA_GROUND = _spec("rsna-ground", "rsna", "Pneumonia",
                    "RSNA pneumonia zero-shot grounding on the positive test images (boxes as masks), pointing game (G2D Table 2b)")
SIIM_GROUND = _spec("siim-ground", "siim", "Pneumothorax",
                    "SIIM pneumothorax zero-shot grounding on the positive test images (RLE masks), pointing game (G2D Table 2b)")


# -- metrics (pure functions on one image: heat S×S float, gt S×S bool) ----------------------------
def pointing_game(heat: np.ndarray, gt: np.ndarray) -> float:
    """1 if the map's maximum is inside ``gt``, 0 if not; with several maximal pixels, the share of
    them inside ``gt`` (a constant map scores the lesion's area fraction, i.e. chance)."""
    top = heat == heat.max()
    return float(np.logical_and(top, gt).sum() / top.sum())


def threshold_map(heat: np.ndarray, rule: str, value: float) -> np.ndarray:
    """Binary prediction: ``heat >= percentile(heat, value)`` or ``heat >= value``."""
    if rule == "percentile":
        if not 0.0 <= value <= 100.0:
            raise G2DBenchError(f"threshold_rule=percentile takes threshold in [0, 100], got {value!r}")
        return heat >= np.percentile(heat, value)
    if rule == "fixed":
        return heat >= value
    raise G2DBenchError(f"threshold_rule must be one of {', '.join(THRESHOLD_RULES)}, got {rule!r}")


def overlap(pred: np.ndarray, gt: np.ndarray) -> tuple[float, float]:
    """(IoU, Dice) of two binary masks; (1, 1) when both are empty."""
    inter = float(np.logical_and(pred, gt).sum())
    total = float(pred.sum() + gt.sum())
    if total == 0:
        return 1.0, 1.0
    return inter / (total - inter), 2.0 * inter / total


def pixel_auroc(heat: np.ndarray, gt: np.ndarray) -> float:
    """AUROC of the map's pixel values against the ground-truth pixels (Mann–Whitney U with
    average ranks for ties, as scikit-learn's ``roc_auc_score``); NaN if ``gt`` is all one class."""
    from scipy.stats import rankdata

    values, truth = heat.ravel(), gt.ravel().astype(bool)
    n_pos = int(truth.sum())
    n_neg = truth.size - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(values)
    return float((ranks[truth].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def score_image(heat: np.ndarray, gt: np.ndarray, rule: str, value: float) -> dict[str, float]:
    """Every grounding metric of one image (``gt`` non-empty)."""
    pred = threshold_map(heat, rule, value)
    iou, dice = overlap(pred, gt)
    return {"pointing_game": pointing_game(heat, gt), "iou": iou, "dice": dice, "pixel_auroc": pixel_auroc(heat, gt),
            "gt_pixels": int(gt.sum()), "pred_pixels": int(pred.sum())}


# -- maps -----------------------------------------------------------------------------------------
def positive_rows(arrays: SplitArrays) -> np.ndarray:
    """Rows of ``arrays`` whose ground-truth mask is not empty."""
    if arrays.masks is None:
        raise G2DBenchError("grounding needs masks, but the cached test split has none; rebuild the cache")
    return np.flatnonzero(np.asarray(arrays.masks).reshape(len(arrays), -1).any(axis=1))


def grounding_heatmaps(adapter, arrays: SplitArrays, rows: np.ndarray, texts: Sequence[str], upsample: str,
                       batch_size: int, device: str) -> Iterator[tuple[np.ndarray, np.ndarray, tuple[int, int]]]:
    """``(rows, heat maps B×S×S float32, map grid (h, w))`` for ``rows`` of ``arrays`` in batches:
    ``grounding_maps`` of every prompt in ``texts`` (encoded once), averaged over the prompts and
    resized to the image side ``S`` (``upsample``: bilinear, or nearest)."""
    import torch
    import torch.nn.functional as F

    from g2d_bench.tasks.features import to_tensor

    if upsample not in UPSAMPLING:
        raise G2DBenchError(f"upsample must be one of {', '.join(UPSAMPLING)}, got {upsample!r}")
    size = tuple(arrays.images.shape[-2:])
    with torch.no_grad():
        encoded = adapter.encode_prompts(list(texts))
        for start in range(0, len(rows), batch_size):
            chunk = rows[start : start + batch_size]
            x = to_tensor(np.asarray(arrays.images[chunk]), device).contiguous(memory_format=torch.channels_last)
            maps = adapter.grounding_maps(x, encoded)
            if maps.dim() != 4 or tuple(maps.shape[:2]) != (len(chunk), len(texts)):
                raise G2DBenchError(f"method {adapter.name!r}: grounding_maps returned shape {tuple(maps.shape)}, "
                                    f"expected ({len(chunk)}, {len(texts)}, h, w)")
            grid = (int(maps.shape[-2]), int(maps.shape[-1]))
            heat = maps.float().mean(dim=1, keepdim=True)
            kwargs = {"align_corners": False} if upsample == "bilinear" else {}
            heat = F.interpolate(heat, size=size, mode=upsample, **kwargs)[:, 0]
            yield chunk, heat.cpu().numpy(), grid


def _settings(ctx: TaskContext) -> tuple[list[str], str, str, float]:
    """(prompts, upsample, threshold rule, threshold value) of a run, checked."""
    table = prompt_table(ctx.spec.dataset, ctx.hp("prompt_set"), [ctx.hp("finding")])
    rule, value = ctx.hp("threshold_rule"), float(ctx.hp("threshold"))
    if rule not in THRESHOLD_RULES:
        raise G2DBenchError(f"threshold_rule must be one of {', '.join(THRESHOLD_RULES)}, got {rule!r}")
    if rule == "fixed" and not -1.0 <= value <= 1.0:
        raise G2DBenchError(f"threshold_rule=fixed takes a similarity in [-1, 1] as threshold, got {value:g}; "
                            "set --set threshold=<similarity> too")
    return [table.texts[i] for i in table.positive[0]], ctx.hp("upsample"), rule, value


def run(ctx: TaskContext) -> TaskResult:
    """Family function of ``rsna-ground`` / ``siim-ground`` (only the test split is read)."""
    import pandas as pd

    test = ctx.data("test")
    rows = positive_rows(test)
    if len(rows) == 0:
        raise G2DBenchError(f"{ctx.spec.name}: the test split has no image with a lesion to ground; use a larger copy of the data")
    texts, upsample, rule, value = _settings(ctx)
    records, grid = [], None
    for chunk, heats, map_grid in grounding_heatmaps(ctx.adapter, test, rows, texts, upsample, int(ctx.hp("batch_size")), ctx.device):
        grid = map_grid
        for row, heat in zip(chunk, heats):
            gt = np.asarray(test.masks[row]) > 0
            records.append({"sample_id": test.sample_ids[row], **score_image(heat, gt, rule, value)})
    per_sample = pd.DataFrame(records)
    metrics = {m: float(np.nanmean(per_sample[m].to_numpy(dtype=float))) for m in ctx.spec.metrics}
    table = prompt_table(ctx.spec.dataset, ctx.hp("prompt_set"), [ctx.hp("finding")])
    info = {"prompts": table.describe(), "grounded_prompts": texts, "n_test": len(test), "n_positive": len(rows),
            "map_grid": list(grid), "image_size": int(test.images.shape[-1]),
            "threshold": {"rule": rule, "value": value}, "note": NO_TRAINING}
    return TaskResult(metrics=metrics, per_sample=per_sample, info=info)


# -- figures --------------------------------------------------------------------------------------
def plot_grounding(images: np.ndarray, heats: np.ndarray, gts: np.ndarray, prompts: Sequence[str] | str,
                   out_png: str | Path, titles: Sequence[str] | None = None, threshold: tuple[str, float] | None = None) -> Path:
    """One row per image: the image; the image with the heat map overlaid, the ground truth
    outlined (white) and, with ``threshold`` = (rule, value), the thresholded prediction outlined
    (dashed cyan); the prompt and ``titles[i]`` above. ``images``: ``N×S×S`` (uint8 or [0, 1]),
    ``heats``: ``N×S×S``, ``gts``: ``N×S×S`` bool. Written atomically (Agg canvas)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from g2d_bench.io import atomic_path

    images, heats, gts = np.asarray(images), np.asarray(heats), np.asarray(gts).astype(bool)
    n = len(images)
    if not (len(heats) == len(gts) == n) or images.shape[-2:] != heats.shape[-2:] or heats.shape[-2:] != gts.shape[-2:]:
        raise G2DBenchError(f"plot_grounding: images {images.shape}, heats {heats.shape} and gts {gts.shape} must all be N×S×S")
    prompts = [prompts] * n if isinstance(prompts, str) else list(prompts)
    fig = Figure(figsize=(7.0, 3.6 * n))
    FigureCanvasAgg(fig)
    axes = fig.subplots(n, 2, squeeze=False)
    for i in range(n):
        left, right = axes[i]
        left.imshow(images[i], cmap="gray")
        left.set_title("\n".join(textwrap.fill(line, 48) for line in (titles[i] if titles else "image").split("\n")), fontsize=7)
        right.imshow(images[i], cmap="gray")
        shown = right.imshow(heats[i], cmap="jet", alpha=0.45)
        fig.colorbar(shown, ax=right, fraction=0.046, pad=0.02)
        if gts[i].any():
            right.contour(gts[i].astype(float), levels=[0.5], colors="white", linewidths=1.2)
        if threshold is not None:
            pred = threshold_map(heats[i], *threshold)
            if pred.any() and not pred.all():
                right.contour(pred.astype(float), levels=[0.5], colors="cyan", linewidths=1.0, linestyles="dashed")
        right.set_title(textwrap.fill(f'prompt: "{prompts[i]}"', 48), fontsize=8)
        for ax in (left, right):
            ax.axis("off")
    fig.tight_layout()
    out_png = Path(out_png)
    with atomic_path(out_png) as tmp:
        fig.savefig(tmp, dpi=100, format="png", metadata={"Software": None})
    return out_png


def figure_grounding(method: str, task: str = "rsna-ground", checkpoint: str | None = None, out: str | Path = "figures",
                     n: int = 4, home: Path | None = None, data_root: str | None = None, scale: str | None = None,
                     device: str | None = None, image_size: int | None = None, overrides: dict[str, Any] | None = None,
                     progress: bool = False) -> list[Path]:
    """PNGs of a method's grounding maps on the first ``n`` positive test images of ``task`` (the
    manifest's order): ``<out>/<task>-<method>-<i>-<sample>.png``, each from :func:`plot_grounding`
    with the run's threshold outlined and the image's metrics in its title. The same settings as
    ``g2d-bench run`` (``overrides`` = ``--set``); returns the paths."""
    import tempfile

    from g2d_bench.data import load_task_data
    from g2d_bench.runner import RunConfig, build_adapter, default_device
    from g2d_bench.tasks import TASKS

    spec = TASKS.get(task)
    if spec.family != "zero-shot-grounding":
        raise G2DBenchError(f"figure grounding: task {task!r} is not a grounding task (family {spec.family}); use rsna-ground or siim-ground")
    if n < 1:
        raise G2DBenchError(f"figure grounding: -n must be at least 1, got {n}")
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(spec.hparams))
    if unknown:
        raise G2DBenchError(f"task {task} has no setting {unknown[0]!r} (settings: {', '.join(sorted(spec.hparams))})")
    config = RunConfig(method=method, task=task, fraction=1.0, checkpoint=checkpoint, data_root=data_root, device=device,
                       scale=scale, image_size=image_size, overrides=overrides, progress=progress, home=home)
    device = device or default_device()
    adapter = build_adapter(config, device)
    if not adapter.has(Capability.DENSE_TEXT):
        raise G2DBenchError(f"method {method!r} has no dense image-text embeddings (capability dense-text); it cannot ground prompts")
    scale_ = config.resolved_scale()
    size = int(image_size or overrides.get("image_size") or scale_.image_size or spec.hparams["image_size"].value)
    data = load_task_data(spec, 1.0, size, data_root, progress, home)
    test = data.split("test")
    with tempfile.TemporaryDirectory(prefix="g2d-figure-") as workdir:
        ctx = TaskContext(spec=spec, adapter=adapter, data=data.split, fraction=1.0, seed=0, device=device,
                          workdir=Path(workdir), overrides={**overrides, "image_size": size})
        texts, upsample, rule, value = _settings(ctx)
    rows = positive_rows(test)[:n]
    if len(rows) == 0:
        raise G2DBenchError(f"figure grounding: the {task} test split has no image with a lesion")
    out = Path(out)
    paths = []
    for chunk, heats, _ in grounding_heatmaps(adapter, test, rows, texts, upsample, int(spec.hparams["batch_size"].value), device):
        for row, heat in zip(chunk, heats):
            gt = np.asarray(test.masks[row]) > 0
            scores = score_image(heat, gt, rule, value)
            sample = test.sample_ids[row]
            title = (f"{method} · {task}\n{sample}\npointing {scores['pointing_game']:.2f}  IoU {scores['iou']:.2f}  "
                     f"Dice {scores['dice']:.2f}  AUROC {scores['pixel_auroc']:.2f}")
            name = f"{task}-{method}-{len(paths)}-{re.sub(r'[^A-Za-z0-9._-]+', '_', sample)[:60]}.png"
            paths.append(plot_grounding(np.asarray(test.images[row])[None], heat[None], gt[None], " | ".join(texts),
                                        out / name, titles=[title], threshold=(rule, value)))
    log.info("wrote %d grounding figures to %s", len(paths), out)
    return paths
