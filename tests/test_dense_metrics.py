"""Dice and detection mAP against hand-computed cases (and pycocotools' own conventions)."""
import subprocess
import sys

import numpy as np
import pytest

from g2d_bench.errors import G2DBenchError
from g2d_bench.tasks.dense_metrics import IOU_THRESHOLDS, best_ious, detection_map, dice_per_image, mean_dice


def _mask(*pixels, size=4):
    m = np.zeros((size, size), bool)
    for r, c in pixels:
        m[r, c] = True
    return m


# -- Dice -----------------------------------------------------------------------------------------
def test_dice_per_image_hand_cases():
    pred = np.stack([
        _mask((0, 0), (0, 1)),  # 2 px, 1 overlapping a 2-px truth: 2·1 / (2 + 2)
        _mask(),                # empty prediction, empty truth: 1
        _mask((3, 3)),          # false positive on an empty truth: 0
        _mask(),                # missed lesion: 0
        _mask((1, 1), (1, 2), (2, 1)),  # 3 px vs 1-px truth inside: 2·1 / (3 + 1)
    ])
    target = np.stack([_mask((0, 1), (1, 1)), _mask(), _mask(), _mask((2, 2)), _mask((1, 1))])
    np.testing.assert_allclose(dice_per_image(pred, target), [0.5, 1.0, 0.0, 0.0, 0.5])


def test_mean_dice_per_image_and_mgca_batch():
    scores = np.array([1.0, 0.0, 0.5, 1.0, 0.0])
    assert mean_dice(scores) == pytest.approx(0.5)
    # MGCA: per-batch means over consecutive batches of 2 = [0.5, 0.75, 0.0] -> mean 0.41667
    assert mean_dice(scores, "mgca-batch", batch_size=2) == pytest.approx((0.5 + 0.75 + 0.0) / 3)
    # full batches only: both reductions agree
    assert mean_dice(scores[:4], "mgca-batch", batch_size=2) == pytest.approx(mean_dice(scores[:4]))


def test_dice_rejects_bad_input():
    with pytest.raises(G2DBenchError, match="N×H×W"):
        dice_per_image(np.zeros((2, 4, 4)), np.zeros((2, 4, 5)))
    with pytest.raises(G2DBenchError, match="dice_reduction"):
        mean_dice(np.ones(3), "macro")
    with pytest.raises(G2DBenchError, match="batch size"):
        mean_dice(np.ones(3), "mgca-batch")


# -- detection mAP --------------------------------------------------------------------------------
def test_iou_thresholds_are_exact():
    assert IOU_THRESHOLDS.tolist() == [0.4, 0.45, 0.5, 0.55, 0.6, 0.65, 0.7, 0.75]


def test_map_matches_hand_computed_ap():
    # one image, two objects, three detections (TP .9, FP .8, TP .7), all IoUs 1 or 0:
    # precision/recall = (1, .5), (.5, .5), (2/3, 1); COCO 101-point interpolation gives
    # precision 1 at the 51 recall points <= .5 and 2/3 at the 50 points above.
    gt = [np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)]
    pred = [np.array([[0, 0, 10, 10], [40, 40, 50, 50], [20, 20, 30, 30]], float)]
    scores = [np.array([0.9, 0.8, 0.7])]
    result = detection_map(pred, scores, gt, image_size=64)
    assert result["map"] == pytest.approx((51 + 50 * 2 / 3) / 101)
    assert result["ap50"] == pytest.approx((51 + 50 * 2 / 3) / 101)


def test_map_averages_over_iou_thresholds():
    # a single detection with IoU 0.62 matches at 0.40…0.60 (5 of 8 thresholds): AP 1 there, 0 above
    gt = [np.array([[0, 0, 10, 10]], float)]
    pred = [np.array([[0, 0, 10, 6.2]], float)]
    result = detection_map(pred, [np.array([0.9])], gt, image_size=16)
    assert result["map"] == pytest.approx(5 / 8)
    assert result["ap50"] == pytest.approx(1.0)


def test_map_counts_every_image_and_mgca_skip_inflates_it():
    gt = [np.array([[0, 0, 10, 10]], float), np.zeros((0, 4)), np.array([[30, 30, 40, 40]], float)]
    pred = [np.array([[0, 0, 10, 10]], float),    # true positive (score .9)
            np.array([[5, 5, 15, 15]], float),    # false positive on an image without objects (score .95)
            np.zeros((0, 4))]                     # missed object, no prediction
    scores = [np.array([0.9]), np.array([0.95]), np.zeros(0)]
    correct = detection_map(pred, scores, gt, image_size=64)
    # ranked FP then TP over 2 objects: P/R = (0, 0), (.5, .5) -> precision .5 at the 51 recall points <= .5
    assert correct["map"] == pytest.approx(0.5 * 51 / 101)
    assert correct["n_scored"] == 3
    skipped = detection_map(pred, scores, gt, image_size=64, mode="mgca-skip")
    # MGCA keeps only image 0 (has both predictions and objects): a perfect score
    assert skipped["map"] == pytest.approx(1.0)
    assert skipped["n_scored"] == 1
    assert skipped["map"] - correct["map"] == pytest.approx(1 - 25.5 / 101)


def test_map_edge_cases():
    gt = [np.array([[0, 0, 10, 10]], float)]
    assert detection_map([np.zeros((0, 4))], [np.zeros(0)], gt, 16)["map"] == 0.0
    no_gt = detection_map([np.array([[0, 0, 4, 4]], float)], [np.array([0.9])], [np.zeros((0, 4))], 16)
    assert np.isnan(no_gt["map"])
    with pytest.raises(G2DBenchError, match="map_mode"):
        detection_map([np.zeros((0, 4))], [np.zeros(0)], gt, 16, mode="skip")


def test_best_ious_hand_cases():
    gt = np.array([[0, 0, 10, 10], [20, 20, 30, 30]], float)
    pred = np.array([[0, 0, 10, 5], [0, 0, 10, 10], [20, 20, 25, 30]], float)
    np.testing.assert_allclose(best_ious(pred, gt), [1.0, 0.5])
    np.testing.assert_allclose(best_ious(np.zeros((0, 4)), gt), [0.0, 0.0])
    assert best_ious(pred, np.zeros((0, 4))).shape == (0,)


def test_dense_task_modules_import_light():
    code = ("import sys, g2d_bench.tasks.segmentation, g2d_bench.tasks.detection, g2d_bench.tasks.detection_ultralytics, "
            "g2d_bench.tasks.dense_metrics; print([m for m in ('torch', 'segmentation_models_pytorch', 'ultralytics', "
            "'pycocotools', 'cv2') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"
