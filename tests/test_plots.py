"""Plots: the files are PNGs, the same records give the same bytes, and the drawn lines, bands and
bars carry the hand-computed numbers of the records."""
import hashlib
import statistics

import numpy as np
import pytest
from PIL import Image

from g2d_bench import plots
from g2d_bench.errors import G2DBenchError
from g2d_bench.records import RunKey

# (method, task, fraction) -> per-seed primary AUC, seeds 0, 1
CURVES = {
    ("g2d", "rsna-cls", 0.01): [0.70, 0.74],
    ("g2d", "rsna-cls", 0.1): [0.80, 0.82],
    ("g2d", "rsna-cls", 1.0): [0.90, 0.90],
    ("random", "rsna-cls", 0.01): [0.50, 0.60],
    ("random", "rsna-cls", 0.1): [0.55, 0.65],
    ("random", "rsna-cls", 1.0): [0.60, 0.64],
    ("g2d", "covidx-cls", 0.1): [0.5, 0.7],
}


def record(method, task, fraction, seed, metrics, ci=None, status="ok"):
    key = RunKey(method, "a" * 64 if method == "g2d" else "b" * 64, task, 1, fraction, seed, 64, (), "synthcxr-v1")
    body = {"schema": 1, "key": key.as_dict(), "status": status, "metrics": metrics, "primary": "auc", "task": {"protocol": "mgca-linear", "primary": "auc"}}
    if ci is not None:
        body["ci"] = ci
    return body


def curve_records(ci=False):
    out = []
    for (method, task, fraction), values in CURVES.items():
        for seed, value in enumerate(values):
            interval = {"auc": {"low": value - 0.05, "high": value + 0.03}} if ci else None
            out.append(record(method, task, fraction, seed, {"auc": value}, interval))
    return out


def figure_for(plot_list, task):
    (plot,) = [p for p in plot_list if task in p.name]
    return plot


def band_at(collection, x):
    """Lowest and highest y of a fill_between polygon at x."""
    vertices = np.concatenate([path.vertices for path in collection.get_paths()])
    ys = vertices[np.isclose(vertices[:, 0], x), 1]
    return ys.min(), ys.max()


def test_one_line_and_one_sd_band_per_method_with_the_seed_statistics():
    plot = figure_for(plots.data_efficiency_figures(curve_records()), "rsna-cls")
    (ax,) = plot.figure.axes
    assert [line.get_label() for line in ax.lines] == ["g2d", "random"]
    assert len(ax.collections) == 2  # one band per method
    g2d, random = ax.lines
    assert np.allclose(g2d.get_xdata(), [1, 10, 100])
    assert np.allclose(g2d.get_ydata(), [72.0, 81.0, 90.0])
    assert np.allclose(random.get_ydata(), [55.0, 60.0, 62.0])
    # random at 1 %: values .50, .60 -> mean 55, sample SD 7.0711 (×100)
    low, high = band_at(ax.collections[1], 1.0)
    assert low == pytest.approx(55 - 7.0710678, abs=1e-4) and high == pytest.approx(55 + 7.0710678, abs=1e-4)
    low, high = band_at(ax.collections[0], 100.0)  # g2d at 100 %: both seeds .90 -> zero width
    assert low == pytest.approx(90.0) and high == pytest.approx(90.0)
    assert "SD" in plot.caption and "CI" not in plot.caption


def test_one_figure_per_task_column():
    drawn = plots.data_efficiency_figures(curve_records())
    assert sorted(p.name for p in drawn) == ["data-efficiency_covidx-cls_auc", "data-efficiency_rsna-cls_auc"]
    (ax,) = figure_for(drawn, "covidx").figure.axes
    assert len(ax.lines) == 1 and np.allclose(ax.lines[0].get_ydata(), [60.0])


def test_ci_band_when_every_record_carries_one():
    plot = figure_for(plots.data_efficiency_figures(curve_records(ci=True)), "rsna-cls")
    (ax,) = plot.figure.axes
    # g2d at 10 %: lows .75, .77 -> 76; highs .83, .85 -> 84 (×100)
    low, high = band_at(ax.collections[0], 10.0)
    assert low == pytest.approx(76.0) and high == pytest.approx(84.0)
    assert "95 % CI" in plot.caption


def test_sd_band_when_one_record_lacks_a_ci():
    records = curve_records(ci=True)
    del records[0]["ci"]
    plot = figure_for(plots.data_efficiency_figures(records), "rsna-cls")
    low, high = band_at(plot.figure.axes[0].collections[0], 10.0)
    assert low == pytest.approx(81 - 1.4142136, abs=1e-4) and high == pytest.approx(81 + 1.4142136, abs=1e-4)
    assert "SD" in plot.caption


def test_cell_ci_function_sets_every_band_from_the_cell_records():
    seen = []

    def cell_ci(records, metric):
        values = [r["metrics"][metric] for r in records]
        seen.append((metric, len(records)))
        return min(values) - 0.1, max(values) + 0.1

    plot = figure_for(plots.data_efficiency_figures(curve_records(ci=True), cell_ci=cell_ci), "rsna-cls")
    low, high = band_at(plot.figure.axes[0].collections[1], 10.0)  # random at 10 %: .55, .65
    assert low == pytest.approx(45.0) and high == pytest.approx(75.0)
    assert plot.caption.endswith(plots.CELL_CI_BAND + ".")
    assert seen.count(("auc", 2)) == len(CURVES)  # every cell, with its two seeds' records


@pytest.mark.parametrize("entry", [[0.7, 0.9], {"lo": 0.7, "hi": 0.9}, {"lower": 0.7, "upper": 0.9}, {"low": 0.7, "high": 0.9, "level": 0.95}])
def test_record_ci_shapes(entry):
    assert plots.record_ci({"ci": {"auc": entry}}, "auc") == (0.7, 0.9)
    assert plots.record_ci({"ci": {"auc": entry}}, "dice") is None
    assert plots.record_ci({}, "auc") is None


def test_table_with_records_traces_every_cell_to_its_records():
    records = curve_records()
    table, behind = plots.table_with_records(records)
    assert len(table.cells) == len(CURVES)
    for (row, column, fraction), cell in table.cells.items():
        assert [r["metrics"]["auc"] for r in behind[(row, column, fraction)]] == cell.values
        assert {(r["key"]["method"], r["key"]["task"], r["key"]["fraction"]) for r in behind[(row, column, fraction)]} == {(row, column.task, fraction)}


def test_pngs_are_written_deterministically(tmp_path):
    first = plots.data_efficiency(curve_records(), tmp_path / "a", formats=("png", "svg"))
    second = plots.data_efficiency(curve_records(), tmp_path / "b", formats=("png", "svg"))
    assert [p.name for p in first] == [p.name for p in second] == [
        "data-efficiency_covidx-cls_auc.png", "data-efficiency_covidx-cls_auc.svg",
        "data-efficiency_rsna-cls_auc.png", "data-efficiency_rsna-cls_auc.svg",
    ]
    for a, b in zip(first, second):
        assert hashlib.sha256(a.read_bytes()).digest() == hashlib.sha256(b.read_bytes()).digest(), a.name
    assert not list((tmp_path / "a").glob(".*"))  # no temporary files left behind
    png = first[2]
    image = Image.open(png)
    assert image.format == "PNG" and image.size == (600, 400)  # CURVE_SIZE × DPI
    assert "Software" not in image.info  # no matplotlib version string
    pixels = np.asarray(image.convert("RGB")).reshape(-1, 3)
    assert (np.abs(pixels.astype(int) - [0x1F, 0x77, 0xB4]).sum(axis=1) < 10).sum() > 200  # the C0 line is drawn


def class_records():
    # (method, fraction) -> per seed {class: auc}
    data = {
        ("g2d", 0.1): [{"A": 0.8, "B": 0.6, "C": 0.7}, {"A": 0.9, "B": 0.6, "C": 0.5}],
        ("random", 0.1): [{"A": 0.5, "B": 0.4, "C": 0.6}, {"A": 0.7, "B": 0.4, "C": 0.6}],
        ("g2d", 1.0): [{"A": 0.95, "B": 0.7, "C": 0.8}, {"A": 0.85, "B": 0.7, "C": 0.8}],
        ("random", 1.0): [{"A": 0.6, "B": 0.5, "C": 0.6}, {"A": 0.6, "B": 0.5, "C": 0.6}],
    }
    out = []
    for (method, fraction), seeds in data.items():
        for seed, per_class in enumerate(seeds):
            metrics = {"auc": statistics.fmean(per_class.values()), **{f"auc/{k}": v for k, v in per_class.items()}}
            out.append(record(method, "cxr14-ft", fraction, seed, metrics))
    return out + curve_records()  # other tasks are ignored


def test_per_class_bars_one_panel_per_fraction_one_bar_per_method_and_class():
    plot = plots.per_class_figure(class_records(), "cxr14-ft")
    low, full = plot.figure.axes
    assert [t.get_text() for t in low.get_xticklabels()] == ["A", "B", "C"]
    assert len(low.patches) == 6 and len(full.patches) == 6  # 2 methods × 3 classes
    from matplotlib.container import BarContainer

    g2d, random = (c for c in low.containers if isinstance(c, BarContainer))
    assert np.allclose([p.get_height() for p in g2d.patches], [85.0, 60.0, 60.0])
    assert np.allclose([p.get_height() for p in random.patches], [60.0, 40.0, 60.0])
    assert g2d.get_label() == "g2d" and "10%" in low.get_title() and "100%" in full.get_title()
    # error bars: sample SD over seeds; g2d class A at 10 %: .8, .9 -> 7.071
    segments = g2d.errorbar.lines[2][0].get_segments()
    assert segments[0][1][1] - segments[0][0][1] == pytest.approx(2 * 7.0710678, abs=1e-4)


def test_per_class_bars_writes_the_named_file(tmp_path):
    paths = plots.per_class_bars(class_records(), "cxr14-ft", tmp_path / "table3.png", formats=("svg",))
    assert [p.name for p in paths] == ["table3.png", "table3.svg"]
    assert Image.open(paths[0]).size == (750, 720)  # one 7.5 × 3.6 in panel per fraction, 100 dpi
    again = plots.per_class_bars(class_records(), "cxr14-ft", tmp_path / "again.png")
    assert again[0].read_bytes() == paths[0].read_bytes()


def test_per_class_bars_need_per_class_metrics(tmp_path):
    with pytest.raises(G2DBenchError, match="rsna-cls.*per-class"):
        plots.per_class_bars(curve_records(), "rsna-cls", tmp_path)
