"""Figures drawn from run records: data-efficiency curves and per-class AUC bars.

Like the leaderboard, every figure is a pure function of run records, grouped by
:func:`g2d_bench.leaderboard.build_table` (so a figure never mixes task versions, protocols,
input sizes, scales or data sets). Numbers are plotted ×100, as the tables print them.

Bands of the data-efficiency curves
    * **±1 sample SD over seeds** (the default): mean ± ``statistics.stdev`` of the per-seed
      metric values of a cell (zero width for a single seed).
    * **95 % CI** when every plotted record carries one for the plotted metric under
      ``record["ci"][metric]`` (a test-set bootstrap interval written by the statistics step).
      A cell's band then runs from the mean of its records' lower bounds to the mean of their upper
      bounds (the per-seed interval, averaged over seeds). One figure never mixes both kinds: if
      any plotted record lacks a CI, the whole figure uses the SD band. The caption says which.
    * **a cell's own interval** when the caller passes ``cell_ci(records, metric) -> (low, high)``
      (e.g. :mod:`g2d_bench.stats`' bootstrap over all seeds of a cell at once).

Accepted ``record["ci"][metric]`` shapes: ``{"low": a, "high": b}`` (also ``lo``/``hi``,
``lower``/``upper``) or a two-item list ``[a, b]``, values on the metric's own scale ([0, 1]).

Output is deterministic: the Agg canvas (no display), fixed figure sizes and dpi, no software or
date entries in the file metadata, a fixed SVG hash salt; files are written atomically.
"""
from __future__ import annotations

import io
import logging
import re
import statistics
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from g2d_bench.errors import G2DBenchError
from g2d_bench.io import atomic_path
from g2d_bench.leaderboard import Cell, Column, Table, build_table

if TYPE_CHECKING:  # matplotlib is imported by the functions that draw
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)

DPI = 100  # fixed so the same records give the same pixels
CURVE_SIZE = (6.0, 4.0)  # inches: one data-efficiency figure
BAR_PANEL_SIZE = (7.5, 3.6)  # inches: one (column, fraction) panel of per-class bars
CI_BAND = "95 % CI (test-set bootstrap, per-seed bounds averaged over seeds)"
CELL_CI_BAND = "95 % CI of the cell (test-set bootstrap)"
SD_BAND = "±1 sample SD over seeds"
FORMATS = ("png", "svg")
_RC = {"svg.hashsalt": "g2d-bench", "svg.fonttype": "path", "font.family": "DejaVu Sans"}


@dataclass
class Plot:
    """One figure and what a page needs to show it: a file stem, a caption, alt text."""

    name: str
    figure: Figure
    caption: str


CellKey = tuple[str, Column, float]
#: ``cell_ci(records, metric) -> (low, high)``: a cell's interval from the records behind it
CellCI = Callable[[list[dict], str], tuple[float, float]]


def table_with_records(records: Iterable[dict], metric: str | None = None, tasks: Iterable[str] | None = None) -> tuple[Table, dict[CellKey, list[dict]]]:
    """:func:`build_table` plus, for every cell, the records behind it (in ``cell.values`` order).

    The grouping stays build_table's own: it is run a second time on copies of the records whose
    metrics are replaced by the record's index, so each cell of that twin table lists indices.
    """
    records = list(records)
    tasks = None if tasks is None else list(tasks)
    table = build_table(records, metric=metric, tasks=tasks)
    tagged = [{**r, "metrics": {name: float(i) for name in r.get("metrics", {})}} for i, r in enumerate(records)]
    twin = build_table(tagged, metric=metric, tasks=tasks)
    if twin.cells.keys() != table.cells.keys():  # a grouping that depends on metric values
        raise G2DBenchError("plots: leaderboard cells depend on metric values; cannot trace cells back to records (update g2d_bench.plots.table_with_records)")
    behind = {key: [records[int(i)] for i in cell.values] for key, cell in twin.cells.items()}
    return table, behind


def record_ci(record: dict, metric: str) -> tuple[float, float] | None:
    """The (low, high) interval a record carries for ``metric`` under ``record["ci"]``, or None."""
    entry = (record.get("ci") or {}).get(metric)
    if entry is None:
        return None
    if isinstance(entry, dict):
        for low, high in (("low", "high"), ("lo", "hi"), ("lower", "upper")):
            if low in entry and high in entry:
                return float(entry[low]), float(entry[high])
        return None
    if isinstance(entry, (list, tuple)) and len(entry) == 2:
        return float(entry[0]), float(entry[1])
    return None


def _band(cell: Cell, records: list[dict], metric: str, use_ci: bool) -> tuple[float, float]:
    """Band bounds of one cell on the metric's own scale."""
    if use_ci:
        intervals = [record_ci(r, metric) for r in records]
        return statistics.fmean(i[0] for i in intervals), statistics.fmean(i[1] for i in intervals)
    return cell.mean - cell.std, cell.mean + cell.std


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._=-]+", "_", text).strip("_")


def _new_figure(size: tuple[float, float]) -> Figure:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    figure = Figure(figsize=size, dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)  # Agg: renders without a display
    return figure


def _colors(rows: Sequence[str]) -> dict[str, str]:
    """One colour per table row, stable across every figure drawn from the same records."""
    palette = [f"C{i % 10}" for i in range(len(rows))]
    return dict(zip(rows, palette))


def data_efficiency_figures(records: Iterable[dict], metric: str | None = None, tasks: Iterable[str] | None = None, cell_ci: CellCI | None = None) -> list[Plot]:
    """One data-efficiency figure per leaderboard column (task × version × protocol × size ×
    scale × data × metric): metric ×100 vs label fraction (log axis), one line per method (the
    table's rows) through the seed means, one shaded band per method (see the module docstring
    for which band). Records without the column's metric are not drawn.

    ``cell_ci``: if given, every band is ``cell_ci(records of the cell, metric)`` instead (e.g. a
    bootstrap over the cell's seeds together from :mod:`g2d_bench.stats`); a figure where it returns
    ``None`` for some cell falls back to the SD band, and its caption says so."""
    import matplotlib

    table, behind = table_with_records(records, metric, tasks)
    colors = _colors(table.rows)
    plots = []
    with matplotlib.rc_context(_RC):
        for column in table.columns:
            keys = [(row, column, f) for row in table.rows for f in table.fractions[column] if (row, column, f) in table.cells]
            if not keys:
                continue
            use_ci = cell_ci is None and all(record_ci(r, column.metric) is not None for k in keys for r in behind[k])
            # the caller's intervals, when it has one for every cell of the figure (``None`` = none for
            # that cell, e.g. a metric its scores cannot reproduce); else the SD band for the whole figure
            own = {k: cell_ci(behind[k], column.metric) for k in keys} if cell_ci else {}
            use_own = bool(own) and all(v is not None for v in own.values())
            figure = _new_figure(CURVE_SIZE)
            ax = figure.add_subplot()
            for row in table.rows:
                points = [(f, table.cells[(row, column, f)], behind[(row, column, f)]) for f in table.fractions[column] if (row, column, f) in table.cells]
                if not points:
                    continue
                xs = [f * 100 for f, _, _ in points]
                ys = [cell.mean * 100 for _, cell, _ in points]
                bands = [own[(row, column, f)] if use_own else _band(cell, rs, column.metric, use_ci) for f, cell, rs in points]
                ax.plot(xs, ys, marker="o", color=colors[row], label=row)
                ax.fill_between(xs, [lo * 100 for lo, _ in bands], [hi * 100 for _, hi in bands], color=colors[row], alpha=0.2, linewidth=0)
            fractions = table.fractions[column]
            ax.set_xscale("log")
            ax.set_xticks([f * 100 for f in fractions], [f"{f * 100:g}%" for f in fractions])
            ax.minorticks_off()
            ax.set_xlabel("labelled training data")
            ax.set_ylabel(f"{column.metric} (×100)")
            ax.set_title(table.labels[column], fontsize="medium")
            ax.grid(True, alpha=0.3)
            ax.legend(fontsize="small")
            band = CELL_CI_BAND if use_own else CI_BAND if use_ci else SD_BAND
            seeds = sorted({len(table.cells[k].values) for k in keys})
            caption = f"{table.labels[column]}: {column.metric} ×100 vs label fraction; line = mean over {', '.join(map(str, seeds))} seed(s); band = {band}."
            plots.append(Plot(_safe(f"data-efficiency_{table.labels[column]}_{column.metric}"), figure, caption))
    return plots


def per_class_figure(records: Iterable[dict], task: str, prefix: str = "auc/") -> Plot:
    """Per-class bars of ``task`` (the CXR14 Table 3 layout): one panel per (column, fraction),
    classes on the x axis, one bar per method with ±1 sample SD over seeds as error bars.
    Classes are the metric names starting with ``prefix`` (``auc/Atelectasis`` → Atelectasis)."""
    import matplotlib

    records = [r for r in records if r["key"]["task"] == task]
    names = sorted({m for r in records if r.get("status") == "ok" for m in r.get("metrics", {}) if m.startswith(prefix)})
    if not names:
        raise G2DBenchError(f"plots: no record of task {task!r} has per-class metrics '{prefix}<class>'; per-class bars need a multi-label task (e.g. cxr14-ft, chexpert-cls)")
    tables = {name: build_table(records, metric=name) for name in names}
    first = tables[names[0]]
    rows = list(dict.fromkeys(row for name in names for row in tables[name].rows))
    colors = _colors(rows)
    panels = [(column, f) for column in first.columns for f in first.fractions[column]]
    classes = [name[len(prefix):] for name in names]
    width = 0.8 / max(len(rows), 1)
    with matplotlib.rc_context(_RC):
        figure = _new_figure((BAR_PANEL_SIZE[0], BAR_PANEL_SIZE[1] * len(panels)))
        axes = figure.subplots(len(panels), 1, squeeze=False)[:, 0]
        for ax, (column, fraction) in zip(axes, panels):
            for i, row in enumerate(rows):
                cells = [_class_cell(tables[name], row, column, fraction) for name in names]
                xs = [k + (i - (len(rows) - 1) / 2) * width for k in range(len(names))]
                heights = [c.mean * 100 if c else float("nan") for c in cells]
                errors = [c.std * 100 if c else 0.0 for c in cells]
                ax.bar(xs, heights, width, yerr=errors, capsize=2, color=colors[row], label=row, error_kw={"linewidth": 0.8})
            ax.set_xticks(range(len(classes)), classes, rotation=45, ha="right", fontsize="small")
            ax.set_ylabel(f"{prefix.rstrip('/')} (×100)")
            ax.set_title(f"{first.labels[column]} {fraction * 100:g}%", fontsize="medium")
            ax.grid(True, axis="y", alpha=0.3)
            ax.legend(fontsize="small", ncols=min(len(rows), 4))
    caption = f"{task}: per-class {prefix.rstrip('/')} ×100 (one panel per label fraction); bar = mean over seeds, error bar = {SD_BAND}."
    return Plot(_safe(f"per-class_{task}_{prefix.rstrip('/')}"), figure, caption)


def _class_cell(table: Table, row: str, column: Column, fraction: float) -> Cell | None:
    """A class's cell, matched on everything but the metric (each class table has its own metric)."""
    for (r, c, f), cell in table.cells.items():
        if r == row and f == fraction and (c.task, c.version, c.protocol, c.image_size, c.data, c.scale) == (column.task, column.version, column.protocol, column.image_size, column.data, column.scale):
            return cell
    return None


def render(figure: Figure, fmt: str = "png") -> bytes:
    """The figure's bytes in ``fmt`` ('png' or 'svg'), deterministic for the same figure."""
    if fmt not in FORMATS:
        raise G2DBenchError(f"plots: unknown format {fmt!r}; choose one of {', '.join(FORMATS)}")
    import matplotlib

    metadata = {"Software": None} if fmt == "png" else {"Creator": None, "Date": None}
    buffer = io.BytesIO()
    with matplotlib.rc_context(_RC):
        figure.savefig(buffer, format=fmt, dpi=DPI, metadata=metadata)
    return buffer.getvalue()


def save(plot: Plot, out_dir: str | Path, formats: Sequence[str] = ("png",)) -> list[Path]:
    """Write ``plot`` as ``out_dir/<plot.name>.<fmt>`` for each format, atomically."""
    paths = []
    for fmt in formats:
        data = render(plot.figure, fmt)
        path = Path(out_dir) / f"{plot.name}.{fmt}"
        with atomic_path(path) as tmp:
            tmp.write_bytes(data)
        log.info("wrote %s", path)
        paths.append(path)
    return paths


def data_efficiency(records: Iterable[dict], out_dir: str | Path, metric: str | None = None, tasks: Iterable[str] | None = None, formats: Sequence[str] = ("png",), cell_ci: CellCI | None = None) -> list[Path]:
    """Write one data-efficiency figure per leaderboard column under ``out_dir``; returns the
    paths written (``data-efficiency_<column>_<metric>.png`` and, if asked, ``.svg``)."""
    records = list(records)
    if not records:
        raise G2DBenchError(f"plots: no run records to draw into {out_dir}; run `g2d-bench run` or `g2d-bench sweep` first")
    return [path for plot in data_efficiency_figures(records, metric, tasks, cell_ci) for path in save(plot, out_dir, formats)]


def per_class_bars(records: Iterable[dict], task: str, out: str | Path, prefix: str = "auc/", formats: Sequence[str] = ("png",)) -> list[Path]:
    """Write the per-class bars of ``task``. ``out`` is a file path (its suffix, .png or .svg, is
    written, plus ``formats`` beside it with the same stem) or a folder (then the files are
    ``<out>/per-class_<task>_auc.<fmt>``). Returns the paths written."""
    plot = per_class_figure(records, task, prefix)
    out = Path(out)
    if out.is_dir() or not out.suffix:
        return save(plot, out, formats)
    plot.name = out.stem
    return save(plot, out.parent, list(dict.fromkeys([out.suffix.lstrip("."), *formats])))
