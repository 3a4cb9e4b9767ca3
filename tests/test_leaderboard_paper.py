"""`leaderboard --layout paper`: G2D-shaped tables from run records with per-sample scores — ranks
(bold / underline), the paired-bootstrap mark, CIs and p-values in the CSV, table assignment from the
layout data file, GitHub markdown, booktabs LaTeX (compiled when pdflatex exists), HTML."""
import argparse
import csv
import json
import re
import shutil
import subprocess
import zlib
from html.parser import HTMLParser

import numpy as np
import pandas as pd
import pytest

from g2d_bench import leaderboard as lb
from g2d_bench.records import RunKey, iter_records, write_record
from g2d_bench.reported import load_reported
from g2d_bench.tasks import TASKS

N_TEST = 150
IDS = [f"img{i:03d}" for i in range(N_TEST)]
Y = (np.arange(N_TEST) % 3 == 0).astype(float)


def _stable_seed(*parts) -> int:
    """A seed from strings and numbers that is the same in every process (``hash`` of a str is
    salted per process, which made these fixtures' noise, and a p-value near 0.05, vary by run)."""
    return zlib.crc32(repr(parts).encode())


def write(out, method, task, fraction, seed, table, metrics, overrides=()):
    spec = TASKS.get(task)
    key = RunKey(method, method[0] * 64, task, spec.version, fraction, seed, 64, overrides, "synthcxr-test", "cpu")
    body = {"status": "ok", "metrics": metrics, "primary": spec.primary, "task": spec.describe(),
            "config": {h: v.value for h, v in spec.hparams.items()} | {"image_size": 64}}
    write_record(out, key, body, table)


def cls_run(out, method, skill, fraction, seed):
    """An rsna-cls run whose scores separate the classes by ``skill`` (logit shift)."""
    from g2d_bench.tasks.rescore import binary_auc

    rng = np.random.default_rng(_stable_seed(method, fraction, seed))
    p = 1 / (1 + np.exp(-(skill * (2 * Y - 1) + rng.normal(0, 1, N_TEST))))
    write(out, method, "rsna-cls", fraction, seed, pd.DataFrame({"sample_id": IDS, "y/Pneumonia": Y, "p/Pneumonia": p}),
          {"auc": binary_auc(Y, p)})


def seg_run(out, method, level, seed, overrides=()):
    rng = np.random.default_rng(_stable_seed(method, seed))
    dice = np.clip(level + rng.normal(0, 0.1, N_TEST), 0, 1)
    gt = np.where(Y > 0, 50, 0)
    write(out, method, "siim-seg", 0.01, seed, pd.DataFrame({"sample_id": IDS, "dice": dice, "gt_pixels": gt, "pred_pixels": gt}),
          {"dice": float(dice.mean()), "dice_pos": float(dice[gt > 0].mean())}, overrides)


def det_run(out, method, iou, seed, map_value):
    n_gt = (Y > 0).astype(int)
    best = np.where(n_gt > 0, iou, np.nan)
    table = pd.DataFrame({"sample_id": IDS, "n_pred": n_gt, "n_gt": n_gt, "best_iou": best, "max_score": np.where(n_gt > 0, 0.9, np.nan)})
    write(out, method, "rsna-det", 0.01, seed, table, {"map": map_value, "ap50": 2 * map_value})


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    for seed in (0, 1):
        for fraction in (0.01, 1.0):
            cls_run(out, "g2d", 2.0, fraction, seed)
            cls_run(out, "mgca", 0.6, fraction, seed)
            cls_run(out, "random", 0.1, fraction, seed)
        seg_run(out, "g2d", 0.6, seed)
        seg_run(out, "random", 0.3, seed)
    rng = np.random.default_rng(5)
    det_run(out, "g2d", np.clip(0.6 + rng.normal(0, 0.1, N_TEST), 0, 1), 0, 0.2)
    det_run(out, "random", np.clip(0.3 + rng.normal(0, 0.1, N_TEST), 0, 1), 0, 0.05)
    return out


@pytest.fixture(scope="module")
def tables(runs):
    return lb.build_paper_tables(list(iter_records(runs)), n_resamples=200, seed=0)


def by_id(tables, table_id):
    return next(t for t in tables if t.spec.id == table_id)


def test_tables_come_from_the_layout_file(tables, runs, tmp_path):
    assert [t.spec.id for t in tables] == ["1", "4"]  # no zero-shot or CXR14 runs: Tables 2a, 2b, 3 left out
    t4 = by_id(tables, "4")
    assert [(leaf.group, leaf.sub) for leaf in t4.leaves] == [("RSNA (AUC)", "1%"), ("RSNA (AUC)", "100%")]
    assert t4.rows == ["random", "mgca", "g2d"]  # the layout's row order
    layout = json.loads(lb.PAPER_LAYOUT_JSON.read_text())
    layout["tables"] = [{"id": "X", "caption": "moved", "fractions": [1.0], "fraction_position": "inner",
                         "columns": [{"task": "rsna-cls", "metric": "auc", "label": "RSNA"}]}]
    path = tmp_path / "layout.json"
    path.write_text(json.dumps(layout))
    [moved] = lb.build_paper_tables(list(iter_records(runs)), lb.load_layout(path), n_resamples=0)
    assert moved.spec.id == "X" and [leaf.fraction for leaf in moved.leaves] == [0.01, 1.0]


def test_best_bold_second_underlined_and_the_significance_mark(tables):
    t4 = by_id(tables, "4")
    cells = {row: t4.cells[(row, 1)] for row in t4.rows}
    assert cells["g2d"].mean > cells["mgca"].mean > cells["random"].mean
    assert [cells[r].rank for r in ("g2d", "mgca", "random")] == [1, 2, 0]
    assert cells["g2d"].mark == lb.DAGGER and cells["g2d"].p_vs == "mgca" and cells["g2d"].p_value < 0.05
    assert cells["mgca"].p_vs == "random" and cells["random"].p_value is None
    for c in cells.values():
        assert c.ci.low <= c.mean <= c.ci.high and c.ci.n_resamples == 200
    md = lb.paper_markdown(tables)
    assert f"**{cells['g2d'].mean * 100:.1f}**†" in md and f"<ins>{cells['mgca'].mean * 100:.1f}</ins>" in md
    assert "p < 0.05" in md and "(1 + resamples)" in md  # the footnote documents the mark and the correction


def test_no_mark_when_the_best_does_not_clearly_beat_the_second(tmp_path):
    for seed in (0, 1):
        cls_run(tmp_path, "g2d", 1.0, 1.0, seed)
        cls_run(tmp_path, "gloria", 1.0, 1.0, seed + 10)  # same skill, other noise
    [t4] = lb.build_paper_tables(list(iter_records(tmp_path)), n_resamples=300)
    best = next(c for c in t4.cells.values() if c.rank == 1)
    assert best.p_value > 0.05 and best.mark == ""


def test_detection_without_boxes_uses_the_labelled_proxy(tables):
    t1 = by_id(tables, "1")
    i = next(i for i, leaf in enumerate(t1.leaves) if leaf.task == "rsna-det")
    g2d = t1.cells[("g2d", i)]
    assert g2d.ci_metric == "loc_hit" and "in place of map" in g2d.note and g2d.mark == lb.DDAGGER
    assert any("Proxy statistics" in n for n in t1.notes)


def test_lower_is_better_reverses_the_ranks(runs, monkeypatch):
    monkeypatch.setattr("g2d_bench.stats.higher_is_better", lambda task: False)
    t4 = by_id(lb.build_paper_tables(list(iter_records(runs)), n_resamples=100), "4")
    assert t4.cells[("random", 1)].rank == 1 and t4.cells[("g2d", 1)].rank == 0
    assert t4.cells[("random", 1)].mark == lb.DAGGER  # "random beats mgca" now means lower AUC


def _md_cells(line: str) -> list[str]:
    return [c.strip() for c in re.split(r"(?<!\\)\|", line.strip())[1:-1]]


def test_markdown_is_a_github_table(tables):
    for block in lb.paper_markdown(tables).split("**Table ")[1:]:
        lines = [line for line in block.splitlines() if line.startswith("|")]
        header, separator, *rows = lines
        n = len(_md_cells(header))
        assert re.fullmatch(r"\|(---\|)+", separator) and len(_md_cells(separator)) == n
        assert rows and all(len(_md_cells(row)) == n for row in rows)


def test_latex_is_a_booktabs_table(tables):
    tex = lb.paper_latex(tables)
    envs = re.findall(r"\\begin\{table\}.*?\\end\{table\}", tex, re.S)
    assert len(envs) == len(tables)
    for env, table in zip(envs, tables):
        for command in (r"\caption{", rf"\label{{{table.spec.label}}}", r"\toprule", r"\midrule", r"\bottomrule", r"\end{tabular}"):
            assert command in env
        assert env.index(r"\toprule") < env.index(r"\midrule") < env.index(r"\bottomrule")
        spec = re.search(r"\\begin\{tabular\}\{(l c*)\}".replace(" ", ""), env).group(1)
        assert len(spec) == len(table.leaves) + 1
        body = env[env.index(r"\midrule"):env.index(r"\bottomrule")]
        for row in [line for line in body.splitlines() if line.endswith(r"\\")]:
            assert row.count(" & ") == len(table.leaves)
    assert r"\textbf{" in tex and r"\underline{" in tex and r"$^\dagger$" in tex and "%" not in tex.replace(r"\%", "").split("\n", 1)[1]


@pytest.mark.skipif(shutil.which("pdflatex") is None, reason="pdflatex not installed (apt-get install texlive-latex-base texlive-latex-recommended)")
def test_latex_compiles_with_pdflatex(tables, runs, tmp_path):
    reported = load_reported()
    tex = lb.paper_latex(lb.build_paper_tables(list(iter_records(runs)), reported=reported, n_resamples=50))
    doc = "\\documentclass{article}\n\\usepackage{booktabs}\n\\usepackage[margin=1cm,landscape]{geometry}\n\\begin{document}\n" + tex + "\\end{document}\n"
    (tmp_path / "t.tex").write_text(doc)
    result = subprocess.run(["pdflatex", "-halt-on-error", "-interaction=nonstopmode", "t.tex"], cwd=tmp_path, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout[-2000:]
    assert (tmp_path / "t.pdf").stat().st_size > 1000


def test_csv_has_intervals_and_p_values_and_keeps_reported_apart(runs):
    reported = load_reported()
    tables = lb.build_paper_tables(list(iter_records(runs)), reported=reported, n_resamples=200)
    rows = list(csv.DictReader(lb.paper_csv(tables).splitlines()))
    assert {"ci_low", "ci_high", "p_value", "p_vs"} <= set(rows[0])
    measured = [r for r in rows if r["kind"] == "measured"]
    for r in measured:
        assert float(r["ci_low"]) <= float(r["mean"]) <= float(r["ci_high"]) or r["ci_metric"] != r["metric"]
    best = next(r for r in measured if r["table"] == "4" and r["fraction"] == "1.0" and r["rank"] == "1")
    assert best["method"] == "g2d" and float(best["p_value"]) < 0.05 and best["p_vs"] == "mgca" and best["mark"] == "†"
    # reported rows: the paper's numbers (/100), on its real data, never ranked, never tested
    g2d_paper = next(r for r in rows if r["kind"] == "reported" and r["method"] == "G2D (reported)" and r["fraction"] == "1.0" and r["task"] == "rsna-cls")
    assert float(g2d_paper["mean"]) == pytest.approx(0.936) and g2d_paper["data"] == lb.REPORTED_DATA
    assert g2d_paper["rank"] == g2d_paper["p_value"] == g2d_paper["ci_low"] == "" and "Table 4" in g2d_paper["source"]
    # a reported 93.6 beats every measured AUC here, yet the bold stays with the best measured row
    t4 = by_id(tables, "4")
    i = next(i for i, leaf in enumerate(t4.leaves) if leaf.task == "rsna-cls" and leaf.fraction == 1.0)
    assert t4.reported[("G2D (reported)", i)].value == 93.6 and t4.cells[("g2d", i)].rank == 1
    assert all("(reported)" not in row for row in t4.rows)


def test_with_reported_shows_reported_only_columns_and_labels_them(runs):
    tables = lb.build_paper_tables(list(iter_records(runs)), reported=load_reported(), n_resamples=0)
    assert [t.spec.id for t in tables] == ["1", "2a", "2b", "3", "4"]
    t2a = by_id(tables, "2a")
    assert not t2a.rows and "G2D (reported)" in t2a.reported_rows
    md = lb.paper_markdown([t2a])
    assert "| G2D (reported) | 37.7 | 3.9 | 5.1 | 88.4 | 33.5 | 47.7 |" in md
    assert "real datasets at paper scale" in md
    t4 = by_id(tables, "4")
    assert [(leaf.group, leaf.sub) for leaf in t4.leaves if leaf.task == "rsna-cls"] == [("RSNA (AUC)", f) for f in ("1%", "10%", "100%")]
    assert [leaf.column is None for leaf in t4.leaves].count(True) == 6  # CheXpert, COVIDx: reported only
    ten = next(i for i, leaf in enumerate(t4.leaves) if leaf.task == "rsna-cls" and leaf.fraction == 0.1)
    assert t4.reported[("G2D (reported)", ten)].value == 92.9 and not [key for key in t4.cells if key[1] == ten]  # 10 %: reported only


class _Cells(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rows, self.bold = [], 0

    def handle_starttag(self, tag, attrs):
        if tag == "tr":
            self.rows.append(0)
        elif tag in ("td", "th") and self.rows:
            self.rows[-1] += int(dict(attrs).get("colspan", 1))
        elif tag == "b":
            self.bold += 1


def test_html_rows_have_one_cell_per_column(tables):
    for table in tables:
        parser = _Cells()
        parser.feed(lb.paper_html([table]))
        header, sub, *body = parser.rows
        n = len(table.leaves) + 1
        assert header == n and sub == n - 1 and all(row == n for row in body[:-1])  # the last row is the footnote
        assert parser.bold >= len(table.leaves)


def test_statistics_are_deterministic(runs):
    first = lb.paper_csv(lb.build_paper_tables(list(iter_records(runs)), n_resamples=50, seed=3))
    assert first == lb.paper_csv(lb.build_paper_tables(list(iter_records(runs)), n_resamples=50, seed=3))
    assert first != lb.paper_csv(lb.build_paper_tables(list(iter_records(runs)), n_resamples=50, seed=4))


def test_cli_helpers(runs, tmp_path):
    parser = argparse.ArgumentParser()
    lb.add_leaderboard_arguments(parser)
    default = lb.leaderboard_command(parser.parse_args(["--out", str(runs)]))
    assert default == lb.to_markdown(lb.build_table(list(iter_records(runs))))  # the default layout is unchanged
    paper = lb.leaderboard_command(parser.parse_args(["--out", str(runs), "--layout", "paper", "--format", "csv", "--resamples", "0", "--tasks", "rsna-cls"]))
    assert {r["task"] for r in csv.DictReader(paper.splitlines())} == {"rsna-cls"}
    flat = lb.leaderboard_command(parser.parse_args(["--out", str(runs), "--with-reported", "--resamples", "0"]))
    assert "| Random Init (reported) |" in flat and "**Table runs.**" in flat
    with pytest.raises(Exception, match="no run records"):
        lb.leaderboard_command(parser.parse_args(["--out", str(tmp_path / "none")]))


def test_a_grids_per_task_overrides_make_one_row_per_method_but_different_settings_stay_apart():
    from g2d_bench.leaderboard import label_context, row_label

    def rec(task, overrides, method="random"):
        return {"key": {"method": method, "task": task, "checkpoint_hash": "h", "overrides": overrides}}

    grid = [rec("rsna-cls", {"max_epochs": 2}), rec("rsna-det", {"max_epochs": 2, "head_width": 0.25}), rec("rsna-zs", {})]
    context = label_context(grid)
    assert {row_label(r, context) for r in grid} == {"random [head_width=0.25,max_epochs=2]"}
    same_task = [rec("rsna-cls", {"max_epochs": 2}), rec("rsna-cls", {})]  # two settings of one task: two rows
    context = label_context(same_task)
    assert [row_label(r, context) for r in same_task] == ["random [max_epochs=2]", "random"]
    across = [rec("rsna-cls", {"max_epochs": 2}), rec("siim-seg", {"max_epochs": 3})]  # one setting, two values
    context = label_context(across)
    assert [row_label(r, context) for r in across] == ["random [max_epochs=2]", "random [max_epochs=3]"]


def test_a_tables_row_labels_name_only_its_own_tasks_settings(tmp_path):
    """A grid that caps the segmentation head's epochs labels Table 1's rows with the cap and leaves
    Table 4's (the linear probe, which ran at its protocol's epochs) without it."""
    for method, skill in (("g2d", 2.0), ("random", 0.1)):
        cls_run(tmp_path, method, skill, 0.01, 0)
        seg_run(tmp_path, method, 0.5, 0, overrides=(("max_epochs", "10"),))
    tables = lb.build_paper_tables(list(iter_records(tmp_path)), n_resamples=0)
    assert by_id(tables, "1").rows == ["random [max_epochs=10]", "g2d [max_epochs=10]"]
    assert by_id(tables, "4").rows == ["random", "g2d"]
