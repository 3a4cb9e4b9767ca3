"""Bootstrap statistics (g2d_bench.stats) and metric recomputation from per-sample scores
(g2d_bench.tasks.rescore): intervals against analytic ones, the paired test's p-values under a clear
difference and under the null, determinism, and recomputed metrics equal to real runs' records."""
import json
import sys
import types

import numpy as np
import pandas as pd
import pytest
from scipy import stats as scipy_stats

from g2d_bench import stats
from g2d_bench.errors import G2DBenchError
from g2d_bench.records import RunKey, iter_records, write_record
from g2d_bench.tasks import TASKS, rescore


def mean_of(x):
    """A vectorised mean statistic over resampled rows (``B×n`` → ``B``)."""
    return lambda rows: x[rows].mean(axis=-1)


# -- resampling -----------------------------------------------------------------------------------
def test_resamples_are_seeded_and_keep_strata_sizes():
    strata = np.array([0] * 7 + [1] * 3)
    a = stats.resample_indices(10, 50, seed=3, strata=strata)
    assert a.shape == (50, 10) and np.array_equal(a, stats.resample_indices(10, 50, seed=3, strata=strata))
    assert not np.array_equal(a, stats.resample_indices(10, 50, seed=4, strata=strata))
    assert (strata[a] == 1).sum(axis=1).tolist() == [3] * 50  # every resample keeps 3 of stratum 1
    free = stats.resample_indices(10, 200, seed=3)
    assert len({int((strata[row] == 1).sum()) for row in free}) > 3  # unstratified: the count varies


def test_vectorised_and_per_resample_statistics_agree():
    x = np.random.default_rng(0).normal(size=300)
    one = stats.bootstrap_ci(lambda rows: x[rows].mean(), 300, n_resamples=200, seed=1)
    many = stats.bootstrap_ci(mean_of(x), 300, n_resamples=200, seed=1, vectorized=True)
    assert one == many and one.estimate == pytest.approx(x.mean())


# -- intervals ------------------------------------------------------------------------------------
def test_bootstrap_ci_of_a_mean_matches_the_normal_interval():
    rng = np.random.default_rng(7)
    x = rng.exponential(2.0, 5000)  # skewed data: the mean is still close to normal at n = 5000
    ci = stats.bootstrap_ci(mean_of(x), len(x), n_resamples=1000, seed=0, vectorized=True)
    half = 1.959964 * x.std(ddof=1) / np.sqrt(len(x))
    assert ci.n_resamples == ci.n_valid == 1000 and ci.level == 0.95
    assert abs(ci.low - (x.mean() - half)) < 0.1 * half
    assert abs(ci.high - (x.mean() + half)) < 0.1 * half


def test_stratified_auc_interval_is_close_to_hanley_mcneil():
    rng = np.random.default_rng(2)
    y = np.r_[np.ones(300), np.zeros(700)]
    p = np.r_[rng.normal(1.0, 1.0, 300), rng.normal(0.0, 1.0, 700)]
    ci = stats.bootstrap_ci(lambda rows: rescore.binary_auc(y[rows], p[rows]), len(y), n_resamples=1000, seed=0, strata=y)
    a, n1, n0 = ci.estimate, 300, 700
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)  # Hanley & McNeil 1982, eq. 2
    se = np.sqrt((a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n0 - 1) * (q2 - a * a)) / (n1 * n0))
    assert ci.stratified and ci.n_valid == 1000
    assert (ci.high - ci.low) / (2 * 1.959964 * se) == pytest.approx(1.0, abs=0.2)


# -- paired test ----------------------------------------------------------------------------------
def test_paired_bootstrap_p_is_smallest_when_a_is_clearly_better():
    rng = np.random.default_rng(1)
    b = rng.random(400)
    a = b + 0.2 + 0.05 * rng.normal(size=400)
    test = stats.paired_bootstrap(mean_of(a), mean_of(b), 400, n_resamples=1000, seed=0, vectorized=True)
    assert test.p_value == pytest.approx(1 / 1001)  # no resample with A - B <= 0; the +1 correction keeps p > 0
    assert test.delta == pytest.approx(a.mean() - b.mean()) and test.low > 0.15
    worse = stats.paired_bootstrap(mean_of(b), mean_of(a), 400, n_resamples=1000, seed=0, vectorized=True)
    assert worse.p_value == 1.0 and worse.delta < 0
    # lower is better: B (smaller) now beats A
    lower = stats.paired_bootstrap(mean_of(b), mean_of(a), 400, higher_is_better=False, n_resamples=1000, seed=0, vectorized=True)
    assert lower.p_value == pytest.approx(1 / 1001) and lower.delta > 0


def test_paired_bootstrap_p_value_counts_resamples_by_hand():
    x = np.array([0.0, 1.0, 2.0, 3.0])
    rows = stats.resample_indices(4, 25, seed=5)
    diff = x[rows].mean(axis=1) - 1.4  # A = mean, B = the constant 1.4
    expected = (1 + np.count_nonzero(diff <= 0)) / 26
    test = stats.paired_bootstrap(mean_of(x), lambda r: np.full(len(r), 1.4), 4, n_resamples=25, seed=5, vectorized=True)
    assert test.p_value == pytest.approx(expected)


def test_paired_bootstrap_p_values_are_uniform_when_a_and_b_are_exchangeable():
    rng = np.random.default_rng(11)
    p_values = []
    for _ in range(300):
        u, v = rng.normal(size=(2, 150))
        swap = rng.random(150) < 0.5  # A == B shuffled: each image's two scores assigned at random
        a, b = np.where(swap, u, v), np.where(swap, v, u)
        p_values.append(stats.paired_bootstrap(mean_of(a), mean_of(b), 150, n_resamples=500, seed=int(rng.integers(1 << 30)), vectorized=True).p_value)
    p_values = np.array(p_values)
    assert scipy_stats.kstest(p_values, "uniform").pvalue > 0.01
    assert 0.02 <= (p_values < 0.05).mean() <= 0.09


def test_paired_bootstrap_is_deterministic():
    rng = np.random.default_rng(3)
    a, b = rng.random(100), rng.random(100)
    runs = [stats.paired_bootstrap(mean_of(a), mean_of(b), 100, n_resamples=300, seed=9, vectorized=True) for _ in range(2)]
    assert runs[0] == runs[1]
    assert stats.paired_bootstrap(mean_of(a), mean_of(b), 100, n_resamples=300, seed=10, vectorized=True).p_value != runs[0].p_value


# -- rescoring: hand-computed cases ---------------------------------------------------------------
def test_linear_metrics_by_hand():
    spec = rescore.ScoreSpec.from_task(TASKS.get("chexpert-cls"))
    table = pd.DataFrame({"sample_id": list("abcd"), "y/A": [1, 0, 1, 0], "p/A": [0.9, 0.3, 0.6, 0.1],
                          "y/B": [0, 1, 1, 0], "p/B": [0.2, 0.4, 0.8, 0.7]})
    # A ranks both positives first: 1.0; B: pairs (0.4, 0.8) vs (0.2, 0.7): 3 of 4
    assert rescore.metric(table, spec, "auc/A") == 1.0 and rescore.metric(table, spec, "auc/B") == 0.75
    assert rescore.metric(table, spec, "auc") == pytest.approx(0.875)
    one_class = table.iloc[[0, 2, 1, 3]].assign(**{"y/B": [1, 1, 1, 1]})
    assert rescore.metric(one_class, spec, "auc") == 1.0  # as linear.score: B has no AUC, A alone
    pinned = rescore.pinned(table, spec, "auc")
    assert pinned.setting("auc_labels") == ("A", "B") and np.isnan(rescore.metric(one_class, pinned, "auc"))
    multi = pd.DataFrame({"sample_id": list("abcd"), "target": [0, 1, 2, 2], "p/n": [1, 0, 0, 0.2], "p/p": [0, 1, 1, 0.3], "p/c": [0, 0, 0, 0.5]})
    assert rescore.metric(multi, TASKS.get("covidx-cls"), "accuracy") == 0.75
    with pytest.raises(G2DBenchError, match="no metric 'f1'"):
        rescore.metric(multi, TASKS.get("covidx-cls"), "f1")


def test_binary_auc_equals_scikit_learn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(4)
    y, p = rng.integers(0, 2, 500), np.round(rng.random(500), 2)  # many ties
    assert rescore.binary_auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)
    assert np.isnan(rescore.binary_auc(np.ones(5), rng.random(5)))


def test_segmentation_metrics_follow_the_runs_reduction():
    table = pd.DataFrame({"sample_id": list("abcde"), "dice": [1.0, 0.0, 0.5, 0.25, 1.0], "gt_pixels": [0, 4, 9, 3, 0]})
    spec = rescore.ScoreSpec.from_task(TASKS.get("siim-seg"))
    assert rescore.metric(table, spec, "dice") == pytest.approx(0.55)
    assert rescore.metric(table, spec, "dice_pos") == pytest.approx(0.25)
    batch = rescore.ScoreSpec.from_task(TASKS.get("siim-seg"), {"dice_reduction": "mgca-batch", "batch_size": 2})
    assert rescore.metric(table, batch, "dice") == pytest.approx((0.5 + 0.375 + 1.0) / 3)  # MGCA: mean of batch means
    assert rescore.strata(table, spec, "dice_pos").tolist() == [False, True, True, True, False]


def test_detection_map_is_exact_from_box_columns(tmp_path):
    from g2d_bench.tasks.dense_metrics import detection_map

    rng = np.random.default_rng(0)
    gts, preds = [], []
    for i in range(30):
        gt = np.array([[10, 10, 40, 40]], np.float32) + rng.integers(0, 20) if i % 3 else np.zeros((0, 4), np.float32)
        jitter = rng.normal(0, 4, (2, 4)).astype(np.float32)
        boxes = (np.vstack([gt, gt]) + jitter)[: rng.integers(0, 3)] if len(gt) else rng.uniform(0, 60, (1, 4)).astype(np.float32)
        boxes[:, 2:] = np.maximum(boxes[:, 2:], boxes[:, :2] + 1)
        preds.append((boxes.astype(np.float32), rng.random(len(boxes)).astype(np.float32)))
        gts.append(gt)
    table = pd.DataFrame({"sample_id": [f"s{i}" for i in range(30)], **rescore.detection_box_columns(preds, gts)})
    table.to_csv(tmp_path / "s.csv", index=False)
    table = pd.read_csv(tmp_path / "s.csv")
    for mode in ("all", "mgca-skip"):
        spec = rescore.ScoreSpec.from_task(TASKS.get("rsna-det"), {"image_size": 64, "map_mode": mode})
        direct = detection_map([p for p, _ in preds], [s for _, s in preds], gts, 64, mode)
        assert 0 < direct["map"] < 1
        assert rescore.metric(table, spec, "map") == pytest.approx(direct["map"], abs=1e-12)
        assert rescore.metric(table, spec, "ap50") == pytest.approx(direct["ap50"], abs=1e-12)


def test_bootstrap_map_from_one_matching_equals_pycocotools_on_each_resample(tmp_path):
    """The bootstrap's mAP shortcut (match once, accumulate per resample) gives the numbers
    pycocotools gives on the resampled image lists: repeats, images without boxes or predictions,
    tied scores, a resample with no ground truth, both mAP modes."""
    from g2d_bench.tasks.dense_metrics import detection_map, detection_map_on_rows

    rng = np.random.default_rng(1)
    gts, boxes, scores = [], [], []
    for i in range(40):
        gt = (np.array([[8, 8, 30, 30]], np.float64) + rng.integers(0, 25)) if i % 4 else np.zeros((0, 4))
        if i % 7 == 3:
            gt = np.vstack([gt, gt + 12]) if len(gt) else gt
        k = int(rng.integers(0, 4))
        b = (np.vstack([gt, gt, gt])[:k] if len(gt) else rng.uniform(0, 50, (k, 4))) + rng.normal(0, 5, (k, 4))
        b[:, 2:] = np.maximum(b[:, 2:], b[:, :2] + 1)
        boxes.append(b)
        scores.append(np.round(rng.random(k), 1))  # ties across images
        gts.append(gt)
    no_gt = np.array([i for i in range(40) if not len(gts[i])])
    for mode in ("all", "mgca-skip"):
        on_rows = detection_map_on_rows(boxes, scores, gts, 64, mode)
        for rows in [np.arange(40), rng.integers(0, 40, 40), rng.integers(0, 40, 40), rng.integers(0, 40, 15), no_gt]:
            direct = detection_map([boxes[r] for r in rows], [scores[r] for r in rows], [gts[r] for r in rows], 64, mode)
            fast = on_rows(rows)
            for name in ("map", "ap50"):
                assert fast[name] == pytest.approx(direct[name], abs=1e-12, nan_ok=True), (mode, name)
            assert fast["n_scored"] == direct["n_scored"]
    assert np.isnan(detection_map_on_rows(boxes, scores, gts, 64)(no_gt)["map"])
    nothing = detection_map_on_rows([np.zeros((0, 4))] * 40, [np.zeros(0)] * 40, gts, 64)
    assert nothing(np.arange(40))["map"] == 0.0 == detection_map([np.zeros((0, 4))] * 40, [np.zeros(0)] * 40, gts, 64)["map"]


@pytest.mark.parametrize("pinned", [False, True])
def test_prepared_auc_equals_the_metric_on_each_resample(pinned):
    rng = np.random.default_rng(5)
    y = (rng.random((80, 3)) < [0.2, 0.5, 0.05]).astype(float)
    table = pd.DataFrame({"sample_id": range(80), **{f"y/{n}": y[:, k] for k, n in enumerate("abc")},
                          **{f"p/{n}": np.round(rng.random(80), 2) for n in "abc"}})  # ties
    spec = rescore.ScoreSpec.from_task(TASKS.get("chexpert-cls"))
    for name in ("auc", "auc/a", "auc/c"):
        use = rescore.pinned(table, spec, name) if pinned else spec
        fast = rescore.on_rows(table, use, name)
        assert rescore.scorer(use).prepare(table, use, name) is not None
        for rows in (np.arange(80), rng.integers(0, 80, 80), rng.integers(0, 80, 30)):
            assert fast(rows) == pytest.approx(rescore.metric(table.iloc[rows], use, name), abs=1e-12, nan_ok=True)


def test_zero_shot_f1_and_accuracy_equal_scikit_learn():
    from sklearn.metrics import accuracy_score, f1_score

    rng = np.random.default_rng(3)
    y = (rng.random((50, 4)) < [0.3, 0.0, 0.5, 1.0]).astype(float)  # class 1 never positive, class 3 always
    d = (rng.random((50, 4)) < 0.4).astype(float)
    d[:, 1] = 0  # no positive and no positive decision: F1 0 (zero_division=0)
    f1, accuracy = rescore._f1_accuracy(y, d)
    for k in range(4):
        assert f1[k] == pytest.approx(f1_score(y[:, k], d[:, k], zero_division=0), abs=1e-12)
        assert accuracy[k] == pytest.approx(accuracy_score(y[:, k], d[:, k]), abs=1e-12)
    names = ["a", "b", "c", "e"]
    table = pd.DataFrame({"sample_id": range(50), **{f"y/{n}": y[:, k] for k, n in enumerate(names)},
                          **{f"p/{n}": rng.random(50) for n in names}, **{f"d/{n}": d[:, k] for k, n in enumerate(names)}})
    spec = rescore.ScoreSpec.from_task(TASKS.get("cxr14-zs"))
    # macro over the classes whose labels hold both values (a, c), as zeroshot.binary_metrics
    assert rescore.metric(table, spec, "f1") == pytest.approx((f1[0] + f1[2]) / 2, abs=1e-12)
    assert rescore.metric(table, spec, "accuracy/e") == pytest.approx(accuracy[3], abs=1e-12)
    pinned = rescore.pinned(table, spec, "f1")
    assert pinned.settings["score_labels"] == ("a", "c")


def test_detection_without_boxes_names_what_is_missing_and_offers_a_proxy():
    table = pd.DataFrame({"sample_id": list("abcd"), "n_pred": [1, 0, 2, 1], "n_gt": [1, 1, 0, 2],
                          "best_iou": [0.62, 0.0, np.nan, 0.45], "max_score": [0.9, np.nan, 0.7, 0.6]})
    spec = rescore.ScoreSpec.from_task(TASKS.get("rsna-det"))
    with pytest.raises(rescore.RescoreUnavailable, match="missing pred_boxes, pred_scores, gt_boxes"):
        rescore.metric(table, spec, "map")
    # thresholds .40 .45 … .75: 0.62 reaches 5 of 8, 0.0 none, 0.45 two
    assert rescore.metric(table, spec, "loc_hit") == pytest.approx((5 + 0 + 2) / 24)
    assert rescore.metric(table, spec, "loc_hit50") == pytest.approx(1 / 3)
    assert rescore.scorer(spec).proxies == {"map": "loc_hit", "ap50": "loc_hit50"}


def test_families_register_by_call_or_by_module_attribute():
    def zero_shot(per_sample, spec, name):
        return float(per_sample["hit"].mean())

    spec = rescore.ScoreSpec("demo-zs", "demo-zero-shot", ("acc",), "acc", run="demo_zs_family:run")
    table = pd.DataFrame({"sample_id": list("abc"), "hit": [1, 0, 1]})
    module = types.ModuleType("demo_zs_family")
    module.RESCORER = rescore.FamilyScorer(zero_shot)
    sys.modules["demo_zs_family"] = module
    try:
        assert rescore.metric(table, spec, "acc") == pytest.approx(2 / 3)  # found through the run reference
        with pytest.raises(G2DBenchError, match="already has a metric function"):
            rescore.register("demo-zero-shot", zero_shot)
        rescore.register("demo-zero-shot", lambda t, s, n: 0.5, replace=True)
        assert rescore.metric(table, spec, "acc") == 0.5
        with pytest.raises(rescore.RescoreUnavailable, match="register one"):
            rescore.metric(table, rescore.ScoreSpec("x", "unknown-family", ("a",), "a"), "a")
    finally:
        rescore.RESCORERS.pop("demo-zero-shot", None)
        del sys.modules["demo_zs_family"]


def test_every_task_states_whether_higher_is_better():
    for name in TASKS.names():
        assert TASKS.get(name).higher_is_better is True
    assert stats.higher_is_better("rsna-cls") and stats.higher_is_better("not-a-task")


# -- cells from run records -----------------------------------------------------------------------
def _record(tmp_path, method, seed, table, task="rsna-cls", value=0.5):
    key = RunKey(method, method[0] * 64, task, 1, 1.0, seed, 64)
    spec = TASKS.get(task)
    body = {"status": "ok", "metrics": {spec.primary: value}, "primary": spec.primary, "task": spec.describe(),
            "config": {h: v.value for h, v in spec.hparams.items()}}
    write_record(tmp_path, key, body, table)


def test_cells_align_seeds_by_sample_id_and_refuse_other_test_sets(tmp_path):
    rng = np.random.default_rng(0)
    ids = [f"img{i}" for i in range(60)]
    y = (np.arange(60) % 3 == 0).astype(float)
    p0, p1 = rng.random(60), rng.random(60)
    _record(tmp_path, "aa", 0, pd.DataFrame({"sample_id": ids, "y/Pneumonia": y, "p/Pneumonia": p0}))
    shuffled = rng.permutation(60)  # seed 1 wrote its rows in another order
    _record(tmp_path, "aa", 1, pd.DataFrame({"sample_id": np.array(ids)[shuffled], "y/Pneumonia": y[shuffled], "p/Pneumonia": p1[shuffled]}))
    records = list(iter_records(tmp_path))
    cell = stats.cell_scores(records, "auc")
    assert cell.n == 60 and not cell.approximate
    expected = np.mean([rescore.binary_auc(y, p0), rescore.binary_auc(y, p1)])
    assert cell.statistic()(np.arange(60)) == pytest.approx(expected, abs=1e-12)
    ci = stats.cell_ci(cell, n_resamples=200)
    assert ci.low < expected < ci.high and ci.stratified and ci.n_valid == 200
    assert stats.cell_interval(records, "auc", n_resamples=200) == (ci.low, ci.high)  # the plots' cell_ci hook
    other = tmp_path / "other"
    _record(other, "bb", 0, pd.DataFrame({"sample_id": [f"x{i}" for i in range(60)], "y/Pneumonia": y, "p/Pneumonia": p0}))
    with pytest.raises(G2DBenchError, match="same test images"):
        stats.compare_cells(cell, stats.cell_scores(list(iter_records(other)), "auc"), n_resamples=10)


# -- rescoring real runs --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def home(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("G2D_BENCH_SYNTH_N", "120")
    yield tmp_path_factory.mktemp("home")
    mp.undo()


REAL_RUNS = [
    ("rsna-cls", {"max_epochs": 2}),  # binary
    ("chexpert-cls", {"max_epochs": 2}),  # 5 labels, macro and per-label AUC
    ("covidx-cls", {"max_epochs": 2}),  # 3 classes: accuracy and one-vs-rest AUC
    ("siim-seg", {"max_epochs": 1, "dice_reduction": "mgca-batch"}),
    ("rsna-seg", {"max_epochs": 1}),
    ("rsna-det", {"max_epochs": 1, "head_width": 0.25}),
]


@pytest.mark.parametrize("task,overrides", REAL_RUNS, ids=[t for t, _ in REAL_RUNS])
def test_recomputed_metrics_equal_the_records_of_real_runs(task, overrides, home, tmp_path):
    import torch

    from g2d_bench.runner import RunConfig, run

    torch.set_num_threads(1)
    config = RunConfig(method="random", task=task, fraction=1.0, arch="resnet18", image_size=64, overrides=overrides,
                       out=tmp_path / "runs", home=home, progress=False, device="cpu")
    path = run(config)
    [record] = list(iter_records(tmp_path / "runs"))
    assert record["_path"] == str(path)
    scores = stats.load_scores(record)
    checked = 0
    for name, value in record["metrics"].items():
        # every metric, detection mAP included (its scores file holds each image's boxes and scores)
        assert rescore.metric(scores, record, name) == pytest.approx(value, abs=1e-9), name
        checked += 1
    assert checked == len(record["metrics"])
    cell = stats.cell_scores([record], record["primary"])
    assert not cell.approximate
    if cell.approximate:
        with pytest.raises(rescore.RescoreUnavailable, match="no exact interval"):
            stats.cell_interval([record], record["primary"], n_resamples=10)
    ci = stats.cell_ci(cell, n_resamples=100)
    if not cell.approximate:
        assert ci.low <= record["metrics"][record["primary"]] + 1e-12 and ci.estimate == pytest.approx(record["metrics"][record["primary"]], abs=1e-9)
    assert json.loads(path.read_text())["task"]["family"] == TASKS.get(task).family
