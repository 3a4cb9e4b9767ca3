"""The CI regression check of metric numbers (benchmark/regress.py):

- unit: a reference round-trips; a cell beyond its tolerance, a missing cell and a NaN fail; cells
  inside pass;
- the committed smoke reference (results/reference/smoke.csv) is re-run from its grid and every cell
  must lie within its tolerance — this is how CI guards the metric numbers;
- a deliberate change to a protocol constant (the linear probe's learning rate) or to a metric (AUC
  computed on flipped scores) makes ``regress`` fail on the cells it touches."""
import math
from dataclasses import replace
from pathlib import Path

from g2d_bench.regress import compare, read_reference, regress, write_reference

ROOT = Path(__file__).resolve().parent.parent
SMOKE = ROOT / "results" / "reference" / "smoke.csv"


def _record(method="random", task="rsna-cls", fraction=0.1, seed=0, **metrics):
    return {"status": "ok", "metrics": metrics or {"auc": 0.7},
            "key": {"method": method, "task": task, "task_version": 1, "fraction": fraction, "seed": seed, "image_size": 64,
                    "scale": "cpu", "data": "synthcxr-test"}}


def test_reference_round_trip_and_comparisons(tmp_path):
    path = tmp_path / "ref.csv"
    write_reference([_record(auc=0.7), _record(fraction=1.0, auc=0.8, accuracy=0.6)], path,
                    {"auc": {"value": 0.02, "why": "test"}, "default": {"value": 0.05, "why": "test"}}, {"grid": {}})
    table, meta = read_reference(path)
    assert len(table) == 3 and meta["cells"] == 3 and meta["tolerances"]["auc"]["value"] == 0.02
    tolerances = sorted(tol for _, tol in table.values())
    assert tolerances == [0.02, 0.02, 0.05]  # auc's own, accuracy the default
    measured = {key: value for key, (value, _) in table.items()}
    assert compare(table, measured).ok
    key = next(k for k in table if k[3] == "auc" and k[4] == "0.1")
    assert compare(table, {**measured, key: 0.7 + 0.019}).ok  # inside
    outcome = compare(table, {**measured, key: 0.7 + 0.021})  # beyond
    assert not outcome.ok and [m[0] for m in outcome.moved] == [key] and "+0.0210" in outcome.table()
    assert not compare(table, {**measured, key: math.nan}).ok
    missing = compare(table, {k: v for k, v in measured.items() if k != key})
    assert missing.missing == [key] and not missing.ok
    assert compare(table, {k: v for k, v in measured.items() if k != key}, only={"task": {"other"}}).checked == 0


def test_the_smoke_grid_reproduces_its_reference(tmp_path, monkeypatch):
    """CI's regression check: run the smoke grid (every method that builds without weights x one task
    per family x 1/10/100 %, tiny pretraining included), check every record's contract — ok or
    skipped for a missing capability, every declared metric present and in [0, 1] — and compare every
    cell with the committed numbers."""
    import math

    from g2d_bench.records import iter_records
    from g2d_bench.sweep import Grid, iter_runs
    from g2d_bench.tasks import TASKS

    monkeypatch.setenv("G2D_BENCH_CACHE", str(tmp_path / "cache"))
    _, meta = read_reference(SMOKE)
    grid = Grid.from_dict(meta["grid"])
    paths = list(iter_runs(grid, tmp_path / "runs"))
    assert len(paths) == len(grid.combinations())
    for record in iter_records(tmp_path / "runs"):
        spec = TASKS.get(record["key"]["task"])
        if record["status"] == "skipped":
            assert "lacks capability" in record["reason"] and spec.requires
            continue
        assert set(spec.metrics) <= set(record["metrics"]), record["_path"]
        assert all(0.0 <= v <= 1.0 or (math.isnan(v) and m != spec.primary) for m, v in record["metrics"].items()), record["_path"]
    outcome = regress(SMOKE, runs=tmp_path / "runs")
    assert outcome.checked > 100 and outcome.ok, outcome.table()


def test_a_changed_protocol_constant_or_metric_fails_regress(tmp_path, monkeypatch):
    """On segmentation cells (tight bands: Dice moved by at most 0.014 under other seeds or thread
    counts): the prediction threshold 0.5 -> 0.9 (a protocol constant) and Dice computed as 1 - Dice
    (a metric change) each make regress fail; the unchanged tree passes."""
    from g2d_bench.task import Hyper
    from g2d_bench.tasks import TASKS
    from g2d_bench.tasks import segmentation

    monkeypatch.setenv("G2D_BENCH_CACHE", str(tmp_path / "cache"))
    only = {"method": {"random"}, "task": {"siim-seg"}}
    unchanged = regress(SMOKE, only=only)
    assert unchanged.checked == 6 and unchanged.ok, unchanged.table()  # dice and dice_pos at 1, 10, 100 %
    spec = TASKS.get("siim-seg")
    changed = replace(spec, hparams={**spec.hparams, "threshold": Hyper(0.9, "deliberately changed")})
    monkeypatch.setitem(TASKS._entries, "siim-seg", changed)
    outcome = regress(SMOKE, only=only)
    assert not outcome.ok and outcome.moved, "a 0.9 prediction threshold must move Dice beyond its band"
    monkeypatch.setitem(TASKS._entries, "siim-seg", spec)
    original = segmentation.dice_per_image
    monkeypatch.setattr(segmentation, "dice_per_image", lambda pred, gt: 1.0 - original(pred, gt))
    assert not regress(SMOKE, only=only).ok
