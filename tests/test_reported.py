"""results/reported/: every number G2D reports, as data (checked against the shared list), the
paper → registry name mapping, reported twins of measured cells and `compare-reported`."""
import argparse
import csv
import math
from pathlib import Path

import pandas as pd
import pytest

from g2d_bench import reported as rep
from g2d_bench.errors import G2DBenchError
from g2d_bench.records import RunKey, iter_records, write_record
from g2d_bench.tasks import TASKS

SHARED = Path("/work/shared/g2d_reported.csv")  # the project's list of the paper's numbers (728 rows)


def test_data_file_holds_every_reported_number():
    rows = rep.load_reported()
    assert len(rows) == 728
    assert sorted({r.table for r in rows}) == ["1", "2a", "2b", "3", "4", "5c", "5d", "5e", "5f", "5g", "5h", "7", "8"]
    assert sum(math.isnan(r.value) for r in rows) == 8  # Object-CXR 1 %: printed as '-'
    g2d = next(r for r in rows if r.table == "4" and r.paper_method == "G2D" and r.task == "covidx-cls" and r.fraction == "1.0")
    assert (g2d.method, g2d.metric, g2d.paper_metric, g2d.value, g2d.source) == ("g2d", "accuracy", "acc", 93.4, "G2D NeurIPS 2024 Table 4")


@pytest.mark.skipif(not SHARED.exists(), reason=f"{SHARED} (the shared list of G2D's numbers) is not on this machine")
def test_data_file_matches_the_shared_list_row_by_row():
    shared = pd.read_csv(SHARED, dtype=str, keep_default_na=False)
    ours = rep.load_reported()
    assert len(ours) == len(shared) == 728
    for r, (_, s) in zip(ours, shared.iterrows()):
        assert (r.table, r.paper_method, r.task, r.paper_metric, r.fraction) == (s["table"], s["method"], s["task"], s["metric"], s["fraction"])
        assert (math.isnan(r.value) and s["value"] == "") or r.value == float(s["value"])
        assert r.source == f"G2D NeurIPS 2024 Table {s['table']}" + (f"; {s['note']}" if s["note"] else "")
    # the committed file is exactly what the conversion of the shared list writes
    assert [list(row.values()) for row in rep.convert_shared(SHARED)] == [
        list(row.values()) for row in csv.DictReader(rep.REPORTED_CSV.read_text().splitlines())]


def test_metric_names_and_method_mapping():
    assert [rep.canonical_metric(m) for m in ("mAP", "acc", "auc:Pleural_Thickening", "dice", "recall", "f1")] == [
        "map", "accuracy", "auc/Pleural_Thickening", "dice", "pointing_game", "f1"]
    rows = rep.load_reported()
    names = {(r.paper_method, r.method, r.variant) for r in rows if r.setting == rep.MAIN}
    for expected in [("Random Init", "random", ""), ("ImageNet Init", "imagenet", ""), ("ConVIRT", "convirt", ""), ("GLoRIA", "gloria", ""),
                     ("MGCA", "mgca", ""), ("G2D", "g2d", ""), ("G2D (encoder-decoder)", "g2d", "transfer=encoder-decoder"),
                     ("GLoRIA-MIMIC", "", ""), ("MedKLIP", "", "")]:
        assert expected in names
    assert {r.setting for r in rows if r.table == "7"} == {"medklip-finetune"}
    assert {r.setting for r in rows if r.table.startswith("5") or r.table == "8"} == {"ablation"}
    assert all(r.method == "g2d" for r in rows if r.setting == "ablation" and r.paper_method.endswith("(G2D)"))


def record(method, task, fraction, seed, metrics, transfer=None):
    spec = TASKS.get(task)
    config = {h: v.value for h, v in spec.hparams.items()}
    if transfer:
        config["transfer"] = transfer
    overrides = (("transfer", transfer),) if transfer and transfer != "encoder" else ()
    key = RunKey(method, method[0] * 64, task, spec.version, fraction, seed, 224, overrides, "real-abc", "paper")
    return {"schema": 1, "key": key.as_dict(), "status": "ok", "metrics": metrics, "primary": spec.primary, "task": spec.describe(), "config": config}


def test_twins_follow_method_task_metric_fraction_and_variant():
    rows = rep.load_reported()
    [enc] = rep.twin(record("g2d", "siim-seg", 0.01, 0, {"dice": 0.6}), "dice", rows)
    assert (enc.paper_method, enc.value, enc.table) == ("G2D (encoder)", 62.6, "1")  # not Table 7's 70.6, not an ablation's
    [dec] = rep.twin(record("g2d", "siim-seg", 0.01, 0, {"dice": 0.6}, transfer="encoder-decoder"), "dice", rows)
    assert (dec.paper_method, dec.value) == ("G2D (encoder-decoder)", 65.6)
    [acc] = rep.twin(record("random", "covidx-cls", 1.0, 0, {"accuracy": 0.5}), "accuracy", rows)
    assert acc.value == 70.0 and acc.paper_metric == "acc"
    assert rep.twin(record("random", "covidx-cls", 0.5, 0, {"accuracy": 0.5}), "accuracy", rows) == []  # no 50 % column
    assert rep.twin(record("random", "covidx-cls", 1.0, 0, {"auc": 0.5}), "auc", rows) == []  # G2D reports no COVIDx AUC
    zero_shot = rep.Reported("2b", "g2d", "G2D", "", "rsna-zs", "auc", "auc", rep.ZERO_SHOT, 87.6, "percent", rep.MAIN, "x")
    fake = {"key": {"method": "g2d", "task": "rsna-zs", "fraction": 1.0}, "config": {}}
    assert rep.twin(fake, "auc", [zero_shot]) == [zero_shot]  # a zero-shot number matches a run at any fraction


def test_compare_lists_both_numbers_and_the_difference(tmp_path):
    for seed, value in ((0, 0.70), (1, 0.74)):
        body = record("g2d", "rsna-cls", 0.01, seed, {"auc": value})
        key = RunKey(**{**body["key"], "overrides": ()})
        write_record(tmp_path, key, {k: v for k, v in body.items() if k not in ("schema", "key")},
                     pd.DataFrame({"sample_id": ["a", "b"], "y/Pneumonia": [0, 1], "p/Pneumonia": [0.2, 0.9]}))
    body = record("imagenet", "siim-seg", 1.0, 0, {"dice": 0.5, "dice_pos": 0.3})
    write_record(tmp_path, RunKey(**{**body["key"], "overrides": ()}), {k: v for k, v in body.items() if k not in ("schema", "key")},
                 pd.DataFrame({"sample_id": ["a"], "dice": [0.5], "gt_pixels": [3], "pred_pixels": [3]}))
    rows = rep.compare(list(iter_records(tmp_path)), rep.load_reported())
    assert [(c.method, c.task, c.metric, c.fraction) for c in rows] == [("g2d", "rsna-cls", "auc", 0.01), ("imagenet", "siim-seg", "dice", 1.0)]
    g2d = rows[0]
    assert g2d.seeds == [0, 1] and g2d.measured == pytest.approx(72.0) and g2d.reported == 92.2 and g2d.difference == pytest.approx(-20.2)
    assert rows[1].reported == 63.5 and rows[1].difference == pytest.approx(-13.5)
    parser = argparse.ArgumentParser()
    rep.add_compare_reported_arguments(parser)
    md = rep.compare_reported_command(parser.parse_args(["--out", str(tmp_path)]))
    assert "| g2d | rsna-cls | auc | 1% | real-abc, paper scale, 224px | 2 | 72.0 | 92.2 | -20.2 | G2D NeurIPS 2024 Table 4 (G2D) |" in md
    lines = md.splitlines()
    assert len({line.count(" | ") for line in lines if line.startswith("| ")}) == 1  # same cell count on every row
    [first, second] = list(csv.DictReader(rep.compare_reported_command(parser.parse_args(["--out", str(tmp_path), "--format", "csv"])).splitlines()))
    assert float(first["difference"]) == pytest.approx(-20.2) and second["paper_method"] == "ImageNet Init"
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(G2DBenchError, match="no run record"):
        rep.compare_reported_command(parser.parse_args(["--out", str(empty)]))


def test_a_bad_data_file_is_named(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("table,method\n1,x\n")
    with pytest.raises(G2DBenchError, match="bad.csv: header"):
        rep.load_reported(bad)
    with pytest.raises(G2DBenchError, match="no reported numbers"):
        rep.load_reported(tmp_path / "missing.csv")
