"""Metrics of the dense tasks: Dice for segmentation, COCO mAP for detection (pure functions).

Segmentation (MGCA/G2D protocol, REFERENCE.md): a pixel is predicted positive when its sigmoid
probability is > 0.5; Dice is computed per image; an image whose ground truth is empty scores 1
iff its prediction is empty too, else 0; the task's Dice is the mean over images
(``reduction="per-image"``). ``reduction="mgca-batch"`` reproduces MGCA's number: the mean over
test batches of each batch's mean per-image Dice (``SSLSegmenter.get_dice`` per step, then
``np.array(dice).mean()`` in ``shared_epoch_end``), which weights the images of a short last batch
more.

Detection: mean AP over IoU thresholds 0.40:0.05:0.75 (``IOU_THRESHOLDS``) computed by pycocotools'
``COCOeval`` over **every** test image (``mode="all"``): missed objects on images without
predictions and false positives on images without objects count. ``mode="mgca-skip"`` reproduces
MGCA's ``SSLDetector.shared_step``, which hands the metric only images that have at least one
prediction and at least one ground-truth box — both kinds of error vanish, inflating mAP.
"""
from __future__ import annotations

import contextlib
import copy
import io
import logging
from typing import Callable, Sequence

import numpy as np

from g2d_bench.errors import G2DBenchError

log = logging.getLogger(__name__)

#: REFERENCE.md / MGCA code (SSLDetector iou_thres): 0.40, 0.45, …, 0.75. ``linspace`` + round, not
#: ``arange`` (ENVIRONMENT.md: arange gives 0.6499999…).
IOU_THRESHOLDS = np.round(np.linspace(0.4, 0.75, 8), 2)
DICE_REDUCTIONS = ("per-image", "mgca-batch")
MAP_MODES = ("all", "mgca-skip")


# -- segmentation ---------------------------------------------------------------------------------
def dice_per_image(pred: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Per-image Dice of binary masks.

    ``pred``, ``target``: ``N×H×W`` (bool or {0, 1}). Returns ``N`` floats in [0, 1]:
    ``2|P∩T| / (|P| + |T|)`` where ``T`` is non-empty; 1.0 if both are empty, 0.0 if only ``T`` is.
    """
    if pred.shape != target.shape or pred.ndim != 3:
        raise G2DBenchError(f"dice: prediction {pred.shape} and target {target.shape} must both be N×H×W")
    p = np.asarray(pred, dtype=bool).reshape(len(pred), -1)
    t = np.asarray(target, dtype=bool).reshape(len(target), -1)
    inter = np.logical_and(p, t).sum(1).astype(np.float64)
    total = p.sum(1).astype(np.float64) + t.sum(1)
    empty_gt = t.sum(1) == 0
    # REFERENCE.md / MGCA get_dice: empty ground truth scores 1 iff the prediction is empty
    return np.where(empty_gt, (p.sum(1) == 0).astype(np.float64), 2.0 * inter / np.maximum(total, 1.0))


def mean_dice(per_image: np.ndarray, reduction: str = "per-image", batch_size: int | None = None) -> float:
    """Reduce per-image Dice (test-set order) to one number.

    ``"per-image"``: the mean over images. ``"mgca-batch"``: MGCA's mean of per-batch means over
    consecutive batches of ``batch_size`` (its test loader: no shuffling, last batch kept).
    """
    scores = np.asarray(per_image, dtype=np.float64)
    if scores.size == 0:
        raise G2DBenchError("dice: no test images to score")
    if reduction == "per-image":
        return float(scores.mean())
    if reduction == "mgca-batch":
        if not batch_size or batch_size < 1:
            raise G2DBenchError("dice_reduction 'mgca-batch' needs the test batch size (batch_size >= 1)")
        return float(np.mean([chunk.mean() for chunk in np.array_split(scores, range(batch_size, len(scores), batch_size))]))
    raise G2DBenchError(f"dice_reduction must be one of {', '.join(DICE_REDUCTIONS)}, got {reduction!r}")


# -- detection ------------------------------------------------------------------------------------
def _xywh(boxes: np.ndarray) -> np.ndarray:
    b = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    return np.stack([b[:, 0], b[:, 1], b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1)


def _coco_gt(gt_boxes: Sequence[np.ndarray], image_ids: Sequence[int], size: int):
    from pycocotools.coco import COCO

    images, annotations = [], []
    for image_id in image_ids:
        images.append({"id": int(image_id), "width": size, "height": size})
        for x, y, w, h in _xywh(gt_boxes[image_id]):
            # ids start at 1: COCOeval marks unmatched detections with id 0
            annotations.append({"id": len(annotations) + 1, "image_id": int(image_id), "category_id": 1,
                                "bbox": [x, y, w, h], "area": w * h, "iscrowd": 0})
    coco = COCO()
    coco.dataset = {"images": images, "annotations": annotations, "categories": [{"id": 1, "name": "object"}]}
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    return coco


def scored_images(pred_boxes: Sequence[np.ndarray], gt_boxes: Sequence[np.ndarray], mode: str) -> list[int]:
    """Indices of the images the mAP counts: all of them, or (``"mgca-skip"``) only those with at
    least one prediction and at least one ground-truth box."""
    if mode == "all":
        return list(range(len(gt_boxes)))
    if mode == "mgca-skip":
        return [i for i in range(len(gt_boxes)) if len(pred_boxes[i]) and len(gt_boxes[i])]
    raise G2DBenchError(f"map_mode must be one of {', '.join(MAP_MODES)}, got {mode!r}")


def _coco_inputs(pred_boxes, pred_scores, gt_boxes, mode: str, iou_thresholds) -> tuple[list[int], np.ndarray, list[dict]]:
    """(the scored image indices, the IoU thresholds, pycocotools' detection list) of a mAP."""
    if not len(pred_boxes) == len(pred_scores) == len(gt_boxes):
        raise G2DBenchError(f"mAP: {len(pred_boxes)} predictions, {len(pred_scores)} score lists, {len(gt_boxes)} ground truths")
    ids = scored_images(pred_boxes, gt_boxes, mode)
    dets = [{"image_id": i, "category_id": 1, "bbox": list(map(float, box)), "score": float(s)}
            for i in ids for box, s in zip(_xywh(pred_boxes[i]), np.asarray(pred_scores[i]).reshape(-1))]
    return ids, np.asarray(iou_thresholds, dtype=np.float64), dets


def _map_result(precision: "np.ndarray | None", thresholds: np.ndarray, n_gt: int, n_scored: int) -> dict[str, float]:
    """``{"map", "ap50", "n_scored"}`` from COCOeval's precision (T×R×K×A×M; area "all" is index 0,
    100 detections the last; -1 marks "no ground truth"); ``precision=None``: no prediction at all."""
    ap50_index = np.flatnonzero(np.isclose(thresholds, 0.5))
    if n_gt == 0:
        return {"map": float("nan"), "ap50": float("nan"), "n_scored": n_scored}
    if precision is None:
        return {"map": 0.0, "ap50": 0.0 if ap50_index.size else float("nan"), "n_scored": n_scored}
    precision = precision[:, :, 0, 0, -1]
    per_threshold = np.array([p[p > -1].mean() if (p > -1).any() else np.nan for p in precision])
    return {"map": float(np.nanmean(per_threshold)),
            "ap50": float(per_threshold[ap50_index[0]]) if ap50_index.size else float("nan"), "n_scored": n_scored}


def _evaluated(gt_boxes, ids: list[int], dets: list[dict], thresholds: np.ndarray, image_size: int):
    """A COCOeval of one class whose ``evaluate`` (IoUs and per-image matching) has run."""
    from pycocotools.cocoeval import COCOeval

    gt = _coco_gt(gt_boxes, ids, image_size)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator = COCOeval(gt, gt.loadRes(dets), iouType="bbox")
        evaluator.params.imgIds = ids
        evaluator.params.iouThrs = thresholds
        evaluator.evaluate()
    return evaluator


def detection_map(
    pred_boxes: Sequence[np.ndarray],
    pred_scores: Sequence[np.ndarray],
    gt_boxes: Sequence[np.ndarray],
    image_size: int,
    mode: str = "all",
    iou_thresholds: np.ndarray = IOU_THRESHOLDS,
) -> dict[str, float]:
    """COCO-style mAP (one class; 101-point interpolation, up to 100 detections per image).

    ``pred_boxes[i]``: ``k×4`` xyxy pixels, ``pred_scores[i]``: ``k``, ``gt_boxes[i]``: ``m×4`` xyxy.
    Returns ``{"map": mean over thresholds, "ap50": AP at IoU 0.5 (NaN if 0.5 is not a threshold),
    "n_scored": images counted}``. ``map`` is NaN when the counted images hold no ground-truth box
    (AP is undefined), 0.0 when there are boxes but no predictions.
    """
    ids, thresholds, dets = _coco_inputs(pred_boxes, pred_scores, gt_boxes, mode, iou_thresholds)
    n_gt = sum(len(gt_boxes[i]) for i in ids)
    if n_gt == 0 or not dets:
        return _map_result(None, thresholds, n_gt, len(ids))
    evaluator = _evaluated(gt_boxes, ids, dets, thresholds, image_size)
    with contextlib.redirect_stdout(io.StringIO()):
        evaluator.accumulate()
    return _map_result(evaluator.eval["precision"], thresholds, n_gt, len(ids))


def detection_map_on_rows(
    pred_boxes: Sequence[np.ndarray],
    pred_scores: Sequence[np.ndarray],
    gt_boxes: Sequence[np.ndarray],
    image_size: int,
    mode: str = "all",
    iou_thresholds: np.ndarray = IOU_THRESHOLDS,
) -> Callable[[np.ndarray], dict[str, float]]:
    """``rows -> detection_map(...)`` of the images at ``rows`` (repeats allowed): for bootstraps.

    COCO matching is per image (each image's detections are matched greedily to its own ground
    truth), so pycocotools' ``evaluate`` — the IoUs and the matching, nearly all of the cost — runs
    once over every image, and each call re-runs only ``accumulate`` over the chosen images' match
    tables (area "all", 100 detections). Equal to :func:`detection_map` on the resampled lists
    (tests/test_stats.py); about 10× faster per resample on the smoke grid's test sets."""
    ids, thresholds, dets = _coco_inputs(pred_boxes, pred_scores, gt_boxes, mode, iou_thresholds)
    scored = np.zeros(len(gt_boxes), dtype=bool)
    scored[ids] = True
    n_gt = np.array([len(np.asarray(g).reshape(-1, 4)) for g in gt_boxes], dtype=np.int64)
    evaluator, per_image, position = None, [], {}
    if dets and n_gt[ids].sum() > 0:
        evaluator = _evaluated(gt_boxes, ids, dets, thresholds, image_size)
        params = evaluator.params
        # evalImgs runs category × area range × image (params.imgIds, sorted): the first block is area "all"
        position = {image: k for k, image in enumerate(params.imgIds)}
        per_image = evaluator.evalImgs[:len(params.imgIds)]
        params.areaRng, params.areaRngLbl, params.maxDets = params.areaRng[:1], params.areaRngLbl[:1], params.maxDets[-1:]

    def on_rows(rows: np.ndarray) -> dict[str, float]:
        keep = [int(r) for r in rows if scored[r]]
        total = int(n_gt[keep].sum())
        if total == 0 or evaluator is None:
            return _map_result(None, thresholds, total, len(keep))
        evaluator.evalImgs = [per_image[position[r]] for r in keep]
        evaluator.params.imgIds = list(range(len(keep)))
        evaluator._paramsEval = copy.copy(evaluator.params)
        with contextlib.redirect_stdout(io.StringIO()):
            evaluator.accumulate()
        return _map_result(evaluator.eval["precision"], thresholds, total, len(keep))

    return on_rows


def best_ious(pred_boxes: np.ndarray, gt_boxes: np.ndarray) -> np.ndarray:
    """For each ground-truth box (``m×4`` xyxy) the best IoU with any prediction (``k×4``); 0 where
    there is no prediction. Returns ``m`` floats (pycocotools' IoU)."""
    from pycocotools import mask as mask_utils

    gt = _xywh(gt_boxes)
    if len(gt) == 0:
        return np.zeros(0)
    pred = _xywh(pred_boxes)
    if len(pred) == 0:
        return np.zeros(len(gt))
    ious = np.asarray(mask_utils.iou(pred.tolist(), gt.tolist(), [0] * len(gt)))
    return ious.reshape(len(pred), len(gt)).max(axis=0)
