import csv

import pandas as pd

from g2d_bench.leaderboard import build_table, to_csv, to_latex, to_markdown
from g2d_bench.records import RunKey, is_complete, iter_records, record_path, write_record


def record(method, task, fraction, seed, value, version=1, protocol="mgca-linear", size=224, hash_="a" * 64, status="ok", overrides=(), data="synthcxr-v1"):
    key = RunKey(method, hash_, task, version, fraction, seed, size, tuple(overrides), data)
    body = {"status": status, "metrics": {"auc": value}, "primary": "auc", "task": {"protocol": protocol, "primary": "auc"}}
    return {"schema": 1, "key": key.as_dict(), **body}


def test_mean_std_and_bold_best():
    records = [
        record("g2d", "rsna-cls", 0.01, 0, 0.80), record("g2d", "rsna-cls", 0.01, 1, 0.82),
        record("random", "rsna-cls", 0.01, 0, 0.60), record("random", "rsna-cls", 0.01, 1, 0.64),
    ]
    table = build_table(records)
    md = to_markdown(table)
    assert "**81.0 ± 1.4**" in md  # mean .81, sample std .01414
    assert "| random | 62.0 ± 2.8 |" in md
    latex = to_latex(table)
    assert r"\textbf{81.0$\pm$1.4}" in latex and r"\begin{tabular}" in latex
    csv = to_csv(table).splitlines()
    assert csv[0].startswith("method,task,version") and len(csv) == 3
    assert "0.810000" in csv[1]


def test_versions_and_protocols_never_share_a_column():
    records = [
        record("g2d", "rsna-det", 0.01, 0, 0.20, protocol="mgca-yolov3"),
        record("g2d", "rsna-det", 0.01, 0, 0.40, protocol="ultralytics"),
        record("g2d", "rsna-cls", 0.01, 0, 0.80, version=1),
        record("g2d", "rsna-cls", 0.01, 0, 0.90, version=2),
    ]
    table = build_table(records)
    assert len(table.columns) == 4
    assert all(len(cell.values) == 1 for cell in table.cells.values())
    header = to_markdown(table).splitlines()[0]
    assert "mgca-yolov3" in header and "ultralytics" in header and "v1" in header and "v2" in header


def test_synthcxr_and_real_data_never_share_a_column():
    records = [
        record("g2d", "rsna-cls", 0.01, 0, 0.80, data="synthcxr-v1-seed0-256px"),
        record("g2d", "rsna-cls", 0.01, 1, 0.60, data="rsna-3f2a9c01b7d4"),
    ]
    table = build_table(records)
    assert len(table.columns) == 2 and all(len(cell.values) == 1 for cell in table.cells.values())
    header = to_markdown(table).splitlines()[0]
    assert "synthcxr-v1-seed0-256px" in header and "rsna-3f2a9c01b7d4" in header
    assert [row["data"] for row in csv.DictReader(to_csv(table).splitlines())] == ["synthcxr-v1-seed0-256px", "rsna-3f2a9c01b7d4"]


def test_scales_never_share_a_column():
    cpu = record("g2d", "siim-seg", 0.01, 0, 0.3)
    cpu["key"]["scale"] = "cpu"
    table = build_table([cpu, record("g2d", "siim-seg", 0.01, 0, 0.5)])
    assert len(table.columns) == 2 and "cpu scale" in to_markdown(table).splitlines()[0]


def test_same_run_on_other_data_is_another_record(tmp_path):
    body = {"status": "skipped", "reason": "x", "task": {"protocol": "x"}}
    synth = write_record(tmp_path, RunKey("random", "c" * 64, "rsna-cls", 1, 0.1, 0, 224, (), "synthcxr-v1"), body)
    real = write_record(tmp_path, RunKey("random", "c" * 64, "rsna-cls", 1, 0.1, 0, 224, (), "rsna-3f2a9c01b7d4"), body)
    assert synth != real and len(list(iter_records(tmp_path))) == 2


def test_variants_and_checkpoints_are_separate_rows():
    records = [
        record("g2d", "siim-seg", 0.01, 0, 0.5),
        record("g2d", "siim-seg", 0.01, 0, 0.6, overrides=[("transfer", "encoder-decoder")]),
        record("g2d", "siim-seg", 0.01, 0, 0.7, hash_="b" * 64),
    ]
    table = build_table(records)
    assert len(table.rows) == 3
    assert any("[transfer=encoder-decoder]" in r for r in table.rows)


def test_skipped_records_are_listed_not_scored():
    records = [record("random", "rsna-zeroshot", 1.0, 0, 0.0, status="skipped")]
    records[0]["reason"] = "method 'random' lacks capability text"
    md = to_markdown(build_table(records))
    assert "lacks capability text" in md and "| random | – |" in md


def test_records_written_atomically_and_replaced(tmp_path):
    key = RunKey("random", "c" * 64, "rsna-cls", 1, 0.1, 0, 128)
    scores = pd.DataFrame({"sample_id": ["a", "b"], "p": [0.1, 0.9]})
    path = write_record(tmp_path, key, {"status": "ok", "metrics": {"auc": 0.7}, "primary": "auc", "task": {"protocol": "x"}}, scores)
    assert path == record_path(tmp_path, key) and is_complete(path)
    write_record(tmp_path, key, {"status": "ok", "metrics": {"auc": 0.9}, "primary": "auc", "task": {"protocol": "x"}}, scores)
    found = list(iter_records(tmp_path))
    assert len(found) == 1 and found[0]["metrics"]["auc"] == 0.9
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")]
    # a torn temp file of a killed run is ignored; a record without its scores is incomplete
    (path.parent / ".f0.1-s1-128px.json.abc.tmp").write_text("{")
    path.with_suffix(".scores.csv").unlink()
    assert not is_complete(path) and list(iter_records(tmp_path)) == []


def test_rerun_killed_between_scores_and_record_is_incomplete(tmp_path):
    key = RunKey("random", "c" * 64, "rsna-cls", 1, 0.1, 0, 128)
    body = {"status": "ok", "metrics": {"auc": 0.7}, "primary": "auc", "task": {"protocol": "x"}}
    path = write_record(tmp_path, key, body, pd.DataFrame({"sample_id": ["a", "b"], "p": [0.1, 0.9]}))
    assert is_complete(path)
    # a rerun replaced the scores, then died before its record: old JSON beside new scores
    pd.DataFrame({"sample_id": ["a", "b"], "p": [0.8, 0.2]}).to_csv(path.with_suffix(".scores.csv"), index=False)
    assert not is_complete(path) and list(iter_records(tmp_path)) == []
