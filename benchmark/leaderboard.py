"""Leaderboards: a pure function of run records → markdown, LaTeX, CSV and HTML tables shaped like
the G2D paper's (methods as rows; task × label fraction as columns; mean ± std over seeds; best in bold).

Two layouts: the default one table (``build_table``: one column per task × fraction), and the
paper layout (``build_paper_tables``: G2D Tables 1, 2a, 2b, 3, 4 as ``results/reported/g2d_tables.json``
lays them out, best bold, second underlined, bootstrap CIs and a paired-bootstrap significance mark
from :mod:`g2d_bench.stats`, and optionally the paper's own numbers as "(reported)" rows).

A column is one (task, task version, protocol, input size, scale, data, metric): records that
differ in any of these never share a column, so numbers from different protocols, scales, or from
SynthCXR and a real release are never averaged together.
"""
from __future__ import annotations

import csv
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from g2d_bench.errors import G2DBenchError


@dataclass(frozen=True)
class Column:
    task: str
    version: int
    protocol: str
    image_size: int
    metric: str
    data: str = "synthcxr"
    scale: str = "paper"

    def label(self, qualify: set[str]) -> str:
        parts = [self.task]
        if "version" in qualify:
            parts.append(f"v{self.version}")
        if "protocol" in qualify:
            parts.append(self.protocol)
        if "image_size" in qualify:
            parts.append(f"{self.image_size}px")
        if "scale" in qualify:
            parts.append(f"{self.scale} scale")
        if "data" in qualify:
            parts.append(self.data)
        if "metric" in qualify:
            parts.append(self.metric)
        return " ".join(parts)


@dataclass
class Cell:
    values: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0


@dataclass
class Table:
    rows: list[str]
    columns: list[Column]
    fractions: dict[Column, list[float]]
    cells: dict[tuple[str, Column, float], Cell]
    labels: dict[Column, str]
    skipped: dict[tuple[str, Column], str]


def label_context(records: Iterable[dict]) -> dict[str, dict]:
    """Per method: its checkpoint hashes, and its task-setting overrides merged into one label when
    every task's records share one override set and no setting takes two values across tasks (a
    grid's ``max_epochs=2`` on every task and ``head_width=0.25`` on the tasks that have it make one
    row, not one per task), else ``None`` (each record is labelled with its own overrides)."""
    context: dict[str, dict] = {}
    per_task: dict[tuple[str, str], set] = {}
    for r in records:
        key = r["key"]
        context.setdefault(key["method"], {"hashes": set(), "overrides": {}})["hashes"].add(key["checkpoint_hash"])
        per_task.setdefault((key["method"], key["task"]), set()).add(tuple(sorted((key.get("overrides") or {}).items())))
    for (method, _), sets in per_task.items():
        entry = context[method]
        if entry["overrides"] is None:
            continue
        if len(sets) > 1:
            entry["overrides"] = None
            continue
        for k, v in next(iter(sets)):
            if entry["overrides"].setdefault(k, v) != v:
                entry["overrides"] = None
                break
    return context


def row_label(record: dict, context: dict[str, dict]) -> str:
    """``method[@checkpoint] [overrides] {method options}`` (``context``: :func:`label_context`)."""
    key = record["key"]
    entry = context[key["method"]]
    label = key["method"]
    if len(entry["hashes"]) > 1:
        label += f"@{key['checkpoint_hash'][:8]}"
    overrides = entry["overrides"] if entry["overrides"] is not None else key.get("overrides")
    if overrides:
        label += " [" + ",".join(f"{k}={v}" for k, v in sorted(overrides.items())) + "]"
    if key.get("method_options"):
        label += " {" + ",".join(f"{k}={v}" for k, v in sorted(key["method_options"].items())) + "}"
    return label


def build_table(records: Iterable[dict], metric: str | None = None, tasks: Iterable[str] | None = None) -> Table:
    """Group records into cells. ``metric``: report this metric instead of each task's primary."""
    records = [r for r in records if tasks is None or r["key"]["task"] in set(tasks)]
    context = label_context(records)
    cells: dict[tuple[str, Column, float], Cell] = {}
    skipped: dict[tuple[str, Column], str] = {}
    rows: list[str] = []
    columns: list[Column] = []
    fractions: dict[Column, list[float]] = {}
    for r in sorted(records, key=lambda r: (r["key"]["task"], r["key"]["method"], r["key"]["fraction"], r["key"]["seed"])):
        key = r["key"]
        name = metric or r.get("primary") or r["task"]["primary"]
        column = Column(key["task"], key["task_version"], r["task"]["protocol"], key["image_size"], name, key.get("data", "synthcxr"), key.get("scale", "paper"))
        row = row_label(r, context)
        if row not in rows:
            rows.append(row)
        if column not in columns:
            columns.append(column)
        fractions.setdefault(column, [])
        if key["fraction"] not in fractions[column]:
            fractions[column].append(key["fraction"])
        if r["status"] == "skipped":
            skipped[(row, column)] = r.get("reason", "skipped")
            continue
        if name not in r["metrics"]:
            continue
        cell = cells.setdefault((row, column, key["fraction"]), Cell())
        cell.values.append(float(r["metrics"][name]))
        cell.seeds.append(key["seed"])
    for column in columns:
        fractions[column].sort()
    labels = _labels(columns)
    return Table(rows, columns, fractions, cells, labels, skipped)


def _labels(columns: list[Column]) -> dict[Column, str]:
    """Column labels qualified just enough to be unique (version, protocol, size, scale, data, metric)."""
    qualify: set[str] = set()
    for attribute in ("version", "protocol", "image_size", "scale", "data", "metric"):
        by_task: dict[str, set] = {}
        for c in columns:
            by_task.setdefault(c.task, set()).add(getattr(c, attribute))
        if any(len(v) > 1 for v in by_task.values()):
            qualify.add(attribute)
    return {c: c.label(qualify) for c in columns}


def _fmt_fraction(f: float) -> str:
    return f"{f * 100:g}%"


def _best(table: Table, column: Column, fraction: float) -> float | None:
    means = [table.cells[(row, column, fraction)].mean for row in table.rows if (row, column, fraction) in table.cells]
    return max(means) if means else None


def _cell_text(table: Table, row: str, column: Column, fraction: float, bold: tuple[str, str], pm: str) -> str:
    cell = table.cells.get((row, column, fraction))
    if cell is None:
        return "–"
    text = f"{cell.mean * 100:.1f}"
    if len(cell.values) > 1:
        text += f"{pm}{cell.std * 100:.1f}"
    if _best(table, column, fraction) == cell.mean and sum(1 for r in table.rows if (r, column, fraction) in table.cells) > 1:
        text = f"{bold[0]}{text}{bold[1]}"
    return text


def seeds_note(table: Table) -> str:
    counts = sorted({len(c.values) for c in table.cells.values()})
    return f"mean ± sample std over {', '.join(map(str, counts))} seed(s); ×100; best per column in bold"


def to_markdown(table: Table) -> str:
    header = ["Method"] + [f"{table.labels[c]} {_fmt_fraction(f)}" for c in table.columns for f in table.fractions[c]]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for row in table.rows:
        cells = [_cell_text(table, row, c, f, ("**", "**"), " ± ") for c in table.columns for f in table.fractions[c]]
        lines.append("| " + " | ".join([row, *cells]) + " |")
    lines.append("")
    lines.append(f"_{seeds_note(table)}_")
    for (row, column), reason in sorted(table.skipped.items(), key=lambda kv: (kv[0][0], table.labels[kv[0][1]])):
        lines.append(f"_{row} on {table.labels[column]}: skipped ({reason})_")
    return "\n".join(lines) + "\n"


def _tex(text: str) -> str:
    return text.replace("\\", r"\textbackslash{}").replace("_", r"\_").replace("%", r"\%").replace("&", r"\&").replace("#", r"\#")


def to_latex(table: Table) -> str:
    spans = [(table.labels[c], len(table.fractions[c])) for c in table.columns]
    n = sum(s for _, s in spans)
    out = [r"\begin{tabular}{l" + "c" * n + "}", r"\toprule"]
    out.append("Method & " + " & ".join(rf"\multicolumn{{{s}}}{{c}}{{{_tex(label)}}}" for label, s in spans) + r" \\")
    out.append(" & " + " & ".join(_tex(_fmt_fraction(f)) for c in table.columns for f in table.fractions[c]) + r" \\")
    out.append(r"\midrule")
    for row in table.rows:
        cells = [_cell_text(table, row, c, f, (r"\textbf{", "}"), r"$\pm$") for c in table.columns for f in table.fractions[c]]
        out.append(_tex(row) + " & " + " & ".join(cells) + r" \\")
    out += [r"\bottomrule", r"\end{tabular}", f"% {seeds_note(table)}"]
    return "\n".join(out) + "\n"


def to_csv(table: Table) -> str:
    """Long format: one line per (method, column, fraction), raw values in [0, 1]."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method", "task", "version", "protocol", "image_size", "scale", "data", "metric", "fraction", "mean", "std", "n", "seeds"])
    for row in table.rows:
        for c in table.columns:
            for f in table.fractions[c]:
                cell = table.cells.get((row, c, f))
                if cell is not None:
                    writer.writerow([row, c.task, c.version, c.protocol, c.image_size, c.scale, c.data, c.metric, f, f"{cell.mean:.6f}", f"{cell.std:.6f}", len(cell.values), " ".join(map(str, cell.seeds))])
    return buffer.getvalue()


FORMATS = {"md": to_markdown, "latex": to_latex, "csv": to_csv}


def to_html(table: Table) -> str:
    """The default layout as a standalone HTML page (the paper layout's renderer, one table)."""
    return paper_html([_flat_as_paper(table)])


FORMATS["html"] = to_html


# == paper layout ==================================================================================
# G2D's Tables 1 (seg/det), 2a/2b (zero-shot), 3 (CXR14 per class) and 4 (linear cls): methods as
# rows, dataset × fraction columns, best bold, second underlined, significance marks from the
# paired bootstrap (g2d_bench.stats), and optionally the paper's own numbers as "(reported)" rows.
# Which task fills which table comes from results/reported/g2d_tables.json, never from code.

REPORTED_DATA = "real (G2D paper)"  # the data column of reported rows in the CSV
AUTO_TABLE = "runs"  # the id of auto_layout's table: it shows the reported numbers of every paper table
PAPER_LAYOUT_JSON = Path(__file__).resolve().parent.parent / "results" / "reported" / "g2d_tables.json"
DAGGER, DDAGGER = "†", "‡"


@dataclass(frozen=True)
class PaperColumn:
    """One (task, metric) of a paper table; ``label`` heads it (under ``group`` in zero-shot tables)."""

    task: str
    metric: str
    label: str
    group: str = ""


@dataclass(frozen=True)
class PaperTableSpec:
    id: str
    caption: str
    fractions: tuple[float, ...] | None  # None: zero-shot (no label fraction)
    fraction_position: str  # "inner": fractions under each column; "outer": columns under each fraction
    columns: tuple[PaperColumn, ...]

    @property
    def label(self) -> str:
        return f"tab:g2d-bench-{self.id}"


@dataclass(frozen=True)
class PaperLayout:
    tables: tuple[PaperTableSpec, ...]
    row_order: tuple[str, ...] = ()


def load_layout(path: str | Path | None = None) -> PaperLayout:
    """The paper tables' layout (default ``results/reported/g2d_tables.json``)."""
    path = Path(path) if path else PAPER_LAYOUT_JSON
    if not path.exists():
        raise G2DBenchError(f"{path}: no paper table layout there; pass the g2d_tables.json of a g2d-bench checkout")
    try:
        data = json.loads(path.read_text())
        tables = tuple(
            PaperTableSpec(str(t["id"]), t["caption"], None if t.get("fractions") is None else tuple(float(f) for f in t["fractions"]),
                           t.get("fraction_position", "inner"), tuple(PaperColumn(**c) for c in t["columns"]))
            for t in data["tables"])
    except (KeyError, TypeError, ValueError) as error:
        raise G2DBenchError(f"{path}: not a paper table layout ({error}); see its _about entry") from None
    for t in tables:
        if t.fraction_position not in ("inner", "outer"):
            raise G2DBenchError(f"{path}: table {t.id}: fraction_position must be 'inner' or 'outer'")
    return PaperLayout(tables, tuple(data.get("row_order", ())))


def auto_layout(records: Iterable[dict], metric: str | None = None, tasks: Iterable[str] | None = None) -> PaperLayout:
    """One table of every task in ``records`` with its primary metric (or ``metric``): the default
    layout, rendered by the paper machinery (reported rows, statistics, HTML)."""
    wanted = set(tasks) if tasks is not None else None
    columns: dict[tuple[str, str], PaperColumn] = {}
    for r in sorted(records, key=lambda r: r["key"]["task"]):
        task = r["key"]["task"]
        if wanted is not None and task not in wanted:
            continue
        name = metric or r.get("primary") or (r.get("task") or {}).get("primary")
        if name:
            columns.setdefault((task, name), PaperColumn(task, name, task if metric is None else f"{task} {name}"))
    return PaperLayout((PaperTableSpec(AUTO_TABLE, "Run records", (), "inner", tuple(columns.values())),))


@dataclass(frozen=True)
class Leaf:
    """One printed column: a (task, metric) of one column variant (measured ``column``, or ``None``
    for reported-only) at one label fraction (``None``: zero-shot without measured runs)."""

    group: str
    sub: str
    task: str
    metric: str
    fraction: float | None
    column: Column | None


@dataclass
class PaperCell:
    """A measured cell: per-seed values and records, rank, and bootstrap statistics."""

    values: list[float] = field(default_factory=list)
    seeds: list[int] = field(default_factory=list)
    records: list[dict] = field(default_factory=list)
    rank: int = 0  # 1 best, 2 second, 0 other or unranked
    ci: Any = None  # g2d_bench.stats.Interval of ci_metric
    ci_metric: str = ""
    p_value: float | None = None  # this row beats p_vs (the next-ranked row), paired bootstrap
    p_vs: str = ""
    p_metric: str = ""
    mark: str = ""
    note: str = ""

    @property
    def mean(self) -> float:
        return statistics.fmean(self.values)

    @property
    def std(self) -> float:
        return statistics.stdev(self.values) if len(self.values) > 1 else 0.0


@dataclass
class PaperTable:
    spec: PaperTableSpec
    leaves: list[Leaf]
    rows: list[str]
    cells: dict[tuple[str, int], PaperCell]
    reported_rows: list[str] = field(default_factory=list)
    reported: dict[tuple[str, int], Any] = field(default_factory=dict)  # g2d_bench.reported.Reported
    notes: list[str] = field(default_factory=list)


def _fraction_label(f: float) -> str:
    return f"{f * 100:g}%"


def _variants(columns: Iterable[Column]) -> dict[Column, str]:
    """Qualifiers that tell apart the variants of one (task, metric): '' when there is one."""
    columns = sorted(set(columns), key=lambda c: (c.version, c.protocol, c.image_size, c.scale, c.data))
    if len(columns) < 2:
        return {c: "" for c in columns}
    labels = _labels(columns)
    return {c: labels[c][len(c.task):].strip() for c in columns}


def _index(records: list[dict], pairs: set[tuple[str, str]], context: dict[str, dict]) -> dict[tuple[str, str], dict[Column, dict[float, dict[str, list[dict]]]]]:
    index: dict = {}
    for r in sorted(records, key=lambda r: (r["key"]["task"], r["key"]["method"], r["key"]["fraction"], r["key"]["seed"])):
        key = r["key"]
        for task, metric in pairs:
            if task != key["task"] or r.get("status") != "ok" or metric not in r.get("metrics", {}):
                continue
            column = Column(task, key["task_version"], r["task"]["protocol"], key["image_size"], metric, key.get("data", "synthcxr"), key.get("scale", "paper"))
            row = row_label(r, context)
            index.setdefault((task, metric), {}).setdefault(column, {}).setdefault(key["fraction"], {}).setdefault(row, []).append(r)
    return index


def _leaves(spec: PaperTableSpec, index: dict, reported: list) -> list[Leaf]:
    """The printed columns of a table: every (task, metric) with measured runs or (when reported
    rows are shown) a reported number, per column variant and label fraction."""
    from g2d_bench.reported import ZERO_SHOT

    present: list[tuple[PaperColumn, Column | None, str]] = []
    measured_fractions: set[float] = set()
    for col in spec.columns:
        variants = index.get((col.task, col.metric), {})
        if variants:
            for column, qualifier in _variants(variants).items():
                present.append((col, column, qualifier))
                measured_fractions.update(variants[column])
        elif any(r.task == col.task and r.metric == col.metric for r in reported):
            present.append((col, None, ""))
    if spec.fractions is None:  # zero-shot: one column per metric (and per measured fraction if several)
        leaves = []
        for col, column, qualifier in present:
            fractions = sorted(index[(col.task, col.metric)][column]) if column is not None else [None]
            for f in fractions:
                group = " ".join(x for x in (col.group or col.task, qualifier) if x)
                sub = col.label + (f" {_fraction_label(f)}" if f is not None and len(fractions) > 1 else "")
                leaves.append(Leaf(group, sub, col.task, col.metric, f, column))
        return leaves
    reported_fractions = {float(r.fraction) for r in reported if r.fraction != ZERO_SHOT
                          and any(r.task == col.task and r.metric == col.metric for col, _, _ in present)}
    fractions = sorted(measured_fractions | (reported_fractions & set(spec.fractions)))
    label = {(col, column): " ".join(x for x in (col.label, qualifier) if x) for col, column, qualifier in present}
    if spec.fraction_position == "outer":
        return [Leaf(_fraction_label(f), label[(col, column)], col.task, col.metric, f, column)
                for f in fractions for col, column, _ in present]
    return [Leaf(label[(col, column)], _fraction_label(f), col.task, col.metric, f, column)
            for col, column, _ in present for f in fractions]


def _rank_and_test(cells: list[tuple[str, PaperCell]], leaf: Leaf, n_resamples: int, seed: int, alpha: float, level: float) -> set[str]:
    """Rank a printed column's measured cells (best = 1, second = 2), then, with ``n_resamples``,
    bootstrap each cell's CI and test each cell against the next-ranked one. Returns the notes."""
    from g2d_bench import stats

    notes: set[str] = set()
    cells = [(row, c) for row, c in cells if not math.isnan(c.mean)]
    higher = stats.higher_is_better(leaf.task)
    order = sorted(cells, key=lambda rc: rc[1].mean, reverse=higher)
    distinct = sorted({c.mean for _, c in cells}, reverse=higher)
    if len(cells) > 1:
        for _, c in cells:
            c.rank = 1 if c.mean == distinct[0] else 2 if len(distinct) > 1 and c.mean == distinct[1] else 0
    if not n_resamples:
        return notes
    scores: dict[str, Any] = {}
    for row, c in order:
        try:
            scores[row] = stats.cell_scores(c.records, leaf.metric)
        except G2DBenchError as error:
            c.note = str(error)
            notes.add(f"no statistics for {leaf.task} {leaf.metric}: {error}")
            continue
        c.ci = stats.cell_ci(scores[row], n_resamples=n_resamples, level=level, seed=seed)
        c.ci_metric = scores[row].metric
        if scores[row].approximate:
            c.note = scores[row].note
    for (row_a, a), (row_b, b) in zip(order, order[1:]):
        if row_a in scores and row_b in scores:
            try:
                test = stats.compare_cells(scores[row_a], scores[row_b], n_resamples=n_resamples, level=level, seed=seed, higher_is_better=higher)
            except G2DBenchError as error:
                notes.add(f"no paired test for {leaf.task} {leaf.metric} ({row_a} vs {row_b}): {error}")
                continue
            a.p_value, a.p_vs, a.p_metric = test.p_value, row_b, scores[row_a].metric
    if len(order) > 1:
        (_, best), (_, second) = order[0], order[1]
        if best.p_value is not None and best.p_value < alpha and best.mean != second.mean:
            best.mark = DDAGGER if best.note else DAGGER
    return notes


def build_paper_tables(records: Iterable[dict], layout: PaperLayout | None = None, *, reported: list | None = None,
                       n_resamples: int | None = None, seed: int = 0, alpha: float | None = None, level: float | None = None) -> list[PaperTable]:
    """The paper tables of ``layout`` (default: G2D Tables 1–4) filled from run records.

    ``reported``: :func:`g2d_bench.reported.load_reported` rows to show as "(reported)" rows (never
    ranked or tested). ``n_resamples`` (default 1,000; 0 = no statistics): bootstrap resamples of the
    test images for each cell's 95 % CI and the paired test of each cell against the next-ranked
    one; the best cell is marked † when it beats the second at p < ``alpha`` (0.05). A table with
    neither measured nor shown reported numbers is left out."""
    from g2d_bench import stats
    from g2d_bench.reported import MAIN

    n_resamples = stats.N_RESAMPLES if n_resamples is None else n_resamples
    alpha = stats.ALPHA if alpha is None else alpha
    level = stats.LEVEL if level is None else level
    layout = layout or load_layout()
    records = list(records)
    order = {m: i for i, m in enumerate(layout.row_order)}
    out = []
    for spec in layout.tables:
        # a table's row labels name the settings of its own tasks' runs only (a grid's max_epochs on
        # the dense tasks is not printed beside the linear probe's rows)
        tasks = {c.task for c in spec.columns}
        table_records = [r for r in records if r["key"]["task"] in tasks]
        context = label_context(table_records)
        index = _index(table_records, {(c.task, c.metric) for c in spec.columns}, context)
        method_of = {row_label(r, context): r["key"]["method"] for r in table_records}
        shown = [r for r in (reported or []) if r.setting == MAIN and (r.table == spec.id or spec.id == AUTO_TABLE)]
        leaves = _leaves(spec, index, shown)
        if not leaves:
            continue
        cells: dict[tuple[str, int], PaperCell] = {}
        for i, leaf in enumerate(leaves):
            if leaf.column is None:
                continue
            for row, recs in index[(leaf.task, leaf.metric)][leaf.column].get(leaf.fraction, {}).items():
                cells[(row, i)] = PaperCell([float(r["metrics"][leaf.metric]) for r in recs], [r["key"]["seed"] for r in recs], recs)
        rows = sorted({row for row, _ in cells}, key=lambda row: (order.get(method_of.get(row, ""), len(order)), row))
        table = PaperTable(spec, leaves, rows, cells)
        notes: set[str] = set()
        for i, leaf in enumerate(leaves):
            notes |= _rank_and_test([(row, cells[(row, i)]) for row in rows if (row, i) in cells], leaf, n_resamples, seed, alpha, level)
        for r in shown:
            for i, leaf in enumerate(leaves):
                if r.task == leaf.task and r.metric == leaf.metric and (r.fraction_matches(leaf.fraction) if leaf.fraction is not None else True):
                    row = f"{r.paper_method} (reported)"
                    if row not in table.reported_rows:
                        table.reported_rows.append(row)
                    table.reported[(row, i)] = r
        table.notes = _notes(table, table_records, context, n_resamples, seed, alpha, level, sorted(notes))
        out.append(table)
    return out


def _notes(table: PaperTable, records: list[dict], context: dict[str, dict], n_resamples: int, seed: int, alpha: float, level: float,
           extra: list[str]) -> list[str]:
    """Footnote lines: what the numbers are, the marks, the data the measured rows ran on, the
    reported rows' provenance, and the runs left out (skipped)."""
    notes = []
    measured = list(table.cells.values())
    if measured:
        seeds = ", ".join(map(str, sorted({len(c.values) for c in measured})))
        columns = {leaf.column for leaf in table.leaves if leaf.column is not None}
        data = ", ".join(sorted({c.data for c in columns}))
        scales = ", ".join(sorted({f"{c.scale} scale {c.image_size}px" for c in columns}))
        notes.append(f"Measured rows: mean over {seeds} seed(s), ×100, on {data} ({scales}); best per column in bold, "
                     f"second underlined (measured rows only).")
        compared = any(c.p_value is not None for c in measured)
        if n_resamples and compared:
            notes.append(f"{DAGGER}: the best beats the second at p < {alpha:g} (one-sided paired bootstrap over the same test "
                         f"images, {n_resamples} resamples, seed {seed}, class-stratified for AUC; p = (1 + #resamples with "
                         f"best - second <= 0) / (1 + resamples)); {level:.0%} bootstrap CIs and p-values are in the CSV format.")
        elif n_resamples:
            notes.append(f"{level:.0%} bootstrap CIs over the test images ({n_resamples} resamples, seed {seed}) are in the CSV format; "
                         "no column has two measured rows to test.")
        else:
            notes.append("No bootstrap statistics (resamples = 0).")
        proxies = sorted({c.note for c in measured if c.note and c.ci is not None})
        if n_resamples and proxies:
            notes.append(f"Proxy statistics ({DDAGGER} in place of {DAGGER}; the CSV's CIs are of the proxy): where the scores file "
                         "cannot reproduce the metric, the bootstrap resamples " + "; ".join(proxies))
    if table.reported_rows:
        printed = ", ".join(sorted({r.table for r in table.reported.values()}))
        notes.append(f"(reported) rows: numbers printed in G2D (NeurIPS 2024) Table {printed}, on the real datasets at "
                     "paper scale (224px, ResNet-50), not on the measured rows' data; never ranked or tested with measured rows.")
        if any(math.isnan(r.value) for r in table.reported.values()):
            notes.append("-: printed as '-' in the paper (" + "; ".join(sorted({r.source.split('; ', 1)[-1] for r in table.reported.values() if math.isnan(r.value)})) + ").")
    tasks = {leaf.task for leaf in table.leaves}
    for r in records:
        if r.get("status") == "skipped" and r["key"]["task"] in tasks:
            line = f"{row_label(r, context)} on {r['key']['task']}: skipped ({r.get('reason', 'skipped')})"
            if line not in notes:
                notes.append(line)
    return notes + extra


def _flat_as_paper(table: Table) -> PaperTable:
    """A default-layout :class:`Table` as a one-table :class:`PaperTable` (no statistics)."""
    leaves = [Leaf(table.labels[c], _fraction_label(f), c.task, c.metric, f, c) for c in table.columns for f in table.fractions[c]]
    cells = {(row, i): PaperCell(list(cell.values), list(cell.seeds)) for i, leaf in enumerate(leaves)
             for row in table.rows if (cell := table.cells.get((row, leaf.column, leaf.fraction))) is not None}
    paper = PaperTable(PaperTableSpec(AUTO_TABLE, "Run records", (), "inner", ()), leaves, list(table.rows), cells)
    for i in range(len(leaves)):
        best = _best(table, leaves[i].column, leaves[i].fraction)
        for row in table.rows:
            if (row, i) in cells and best is not None and len([r for r in table.rows if (r, i) in cells]) > 1:
                cells[(row, i)].rank = 1 if cells[(row, i)].mean == best else 0
    paper.notes = [seeds_note(table)] + [f"{row} on {table.labels[column]}: skipped ({reason})" for (row, column), reason in sorted(table.skipped.items(), key=lambda kv: (kv[0][0], table.labels[kv[0][1]]))]
    return paper


# -- paper layout: rendering ----------------------------------------------------------------------
def _number(table: PaperTable, row: str, i: int) -> tuple[str, int, str] | None:
    """(text, rank, mark) of a cell; measured numbers ×100, reported as printed; ``None``: empty."""
    if (row, i) in table.cells:
        c = table.cells[(row, i)]
        return ("-" if math.isnan(c.mean) else f"{c.mean * 100:.1f}"), c.rank, c.mark
    if (row, i) in table.reported:
        value = table.reported[(row, i)].value
        return ("-" if math.isnan(value) else f"{value:.1f}"), 0, ""
    return None


def _spans(labels: list[str]) -> list[tuple[str, int]]:
    spans: list[tuple[str, int]] = []
    for label in labels:
        if spans and spans[-1][0] == label:
            spans[-1] = (label, spans[-1][1] + 1)
        else:
            spans.append((label, 1))
    return spans


def _md_escape(text: str) -> str:
    return text.replace("|", r"\|")


def _paper_md_one(table: PaperTable) -> str:
    header = ["Method"] + [f"{leaf.group} {leaf.sub}".strip() for leaf in table.leaves]
    lines = [f"**Table {table.spec.id}.** {table.spec.caption}", "", "| " + " | ".join(_md_escape(h) for h in header) + " |",
             "|" + "---|" * len(header)]
    for row in table.rows + table.reported_rows:
        cells = []
        for i in range(len(table.leaves)):
            number = _number(table, row, i)
            if number is None:
                cells.append("–")
                continue
            text, rank, mark = number
            text = f"**{text}**" if rank == 1 else f"<ins>{text}</ins>" if rank == 2 else text
            cells.append(text + mark)
        lines.append("| " + " | ".join([_md_escape(row), *cells]) + " |")
    lines.append("")
    lines += [f"_{_md_escape(note)}_" for note in table.notes]
    return "\n".join(lines) + "\n"


def paper_markdown(tables: list[PaperTable]) -> str:
    """GitHub-flavoured markdown: one table per paper table (a header row, the separator row, one
    row per method; the group and fraction of a column share its one header cell), footnotes below."""
    return "\n".join(_paper_md_one(t) for t in tables)


_TEX_SPECIALS = {"\\": r"\textbackslash{}", "{": r"\{", "}": r"\}", "$": r"\$", "&": r"\&", "#": r"\#", "^": r"\^{}",
                 "_": r"\_", "~": r"\~{}", "%": r"\%", "†": r"$^\dagger$", "‡": r"$^\ddagger$", "–": "--", "×": r"$\times$"}


def tex_escape(text: str) -> str:
    """Plain text → LaTeX that compiles with pdflatex (specials escaped, daggers as math)."""
    return "".join(_TEX_SPECIALS.get(ch, ch) for ch in text)


def _paper_latex_one(table: PaperTable) -> str:
    n = len(table.leaves)
    out = [r"\begin{table}[t]", r"\centering", rf"\caption{{{tex_escape(table.spec.caption)}}}",
           rf"\label{{{table.spec.label}}}", r"\small", r"\begin{tabular}{l" + "c" * n + "}", r"\toprule"]
    spans = _spans([leaf.group for leaf in table.leaves])
    out.append(" & " + " & ".join(rf"\multicolumn{{{s}}}{{c}}{{{tex_escape(g)}}}" for g, s in spans) + r" \\")
    start, rules = 2, []
    for _, s in spans:
        rules.append(rf"\cmidrule(lr){{{start}-{start + s - 1}}}")
        start += s
    out.append(" ".join(rules))
    out.append("Method & " + " & ".join(tex_escape(leaf.sub) for leaf in table.leaves) + r" \\")
    out.append(r"\midrule")
    for block in (table.rows, table.reported_rows):
        if not block:
            continue
        if block is table.reported_rows and table.rows:
            out.append(r"\midrule")
        for row in block:
            cells = []
            for i in range(n):
                number = _number(table, row, i)
                if number is None:
                    cells.append("--")
                    continue
                text, rank, mark = number
                text = rf"\textbf{{{text}}}" if rank == 1 else rf"\underline{{{text}}}" if rank == 2 else text
                cells.append(text + tex_escape(mark))
            out.append(tex_escape(row) + " & " + " & ".join(cells) + r" \\")
    out.append(r"\bottomrule")
    out.append(r"\end{tabular}")
    if table.notes:
        out.append(r"\par\smallskip")
        out.append(r"\parbox{\linewidth}{\footnotesize " + r" \\ ".join(tex_escape(note) for note in table.notes) + "}")
    out.append(r"\end{table}")
    return "\n".join(out) + "\n"


def paper_latex(tables: list[PaperTable]) -> str:
    """One booktabs ``table`` environment per paper table (needs ``\\usepackage{booktabs}``):
    caption, label, a grouped header with ``\\cmidrule``, ``\\toprule``/``\\midrule``/``\\bottomrule``,
    reported rows after their own ``\\midrule``, footnotes in a ``\\footnotesize`` box."""
    return "% requires \\usepackage{booktabs}\n" + "\n".join(_paper_latex_one(t) for t in tables)


PAPER_CSV_COLUMNS = ("table", "group", "column", "method", "kind", "task", "version", "protocol", "image_size", "scale", "data",
                     "metric", "fraction", "mean", "std", "n", "seeds", "rank", "mark", "ci_low", "ci_high", "ci_level",
                     "ci_metric", "p_value", "p_vs", "p_metric", "stats_note", "source")


def _g(value: float | None, digits: int = 6) -> str:
    return "" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def paper_csv(tables: list[PaperTable]) -> str:
    """Long format, one line per printed cell; values in [0, 1] (reported numbers divided by 100).
    ``ci_low``/``ci_high``: bootstrap interval of ``ci_metric`` (the metric, or a proxy the
    ``stats_note`` names); ``p_value``: paired bootstrap p that this row beats ``p_vs``, the
    next-ranked row in the column."""
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(PAPER_CSV_COLUMNS)
    for table in tables:
        for i, leaf in enumerate(table.leaves):
            col = leaf.column
            common = [col.version if col else "", col.protocol if col else "", col.image_size if col else "", col.scale if col else "", col.data if col else ""]
            fraction = "" if leaf.fraction is None else leaf.fraction
            for row in table.rows:
                c = table.cells.get((row, i))
                if c is None:
                    continue
                ci = c.ci
                writer.writerow([table.spec.id, leaf.group, leaf.sub, row, "measured", leaf.task, *common, leaf.metric, fraction,
                                 _g(c.mean), _g(c.std), len(c.values), " ".join(map(str, c.seeds)), c.rank or "", c.mark,
                                 _g(ci.low if ci else None), _g(ci.high if ci else None), _g(ci.level if ci else None, 2), c.ci_metric,
                                 _g(c.p_value), c.p_vs, c.p_metric, c.note, ""])
            for row in table.reported_rows:
                r = table.reported.get((row, i))
                if r is None:
                    continue
                # the paper's numbers: its real data at paper scale, not the measured column's data
                writer.writerow([table.spec.id, leaf.group, leaf.sub, row, "reported", leaf.task, "", "", "", "paper", REPORTED_DATA, leaf.metric, r.fraction,
                                 _g(r.value / 100.0), "", "", "", "", "", "", "", "", "", "", "", "", "", r.source])
    return buffer.getvalue()


def _paper_html_one(table: PaperTable) -> str:
    from html import escape

    out = [f'<table class="g2d-table" id="{escape(table.spec.label.replace(":", "-"))}">',
           f"<caption>Table {escape(table.spec.id)}. {escape(table.spec.caption)}</caption>", "<thead>",
           '<tr><th rowspan="2">Method</th>' + "".join(f'<th colspan="{s}">{escape(g)}</th>' for g, s in _spans([leaf.group for leaf in table.leaves])) + "</tr>",
           "<tr>" + "".join(f"<th>{escape(leaf.sub)}</th>" for leaf in table.leaves) + "</tr>", "</thead>"]
    for kind, block in (("measured", table.rows), ("reported", table.reported_rows)):
        if not block:
            continue
        out.append(f'<tbody class="{kind}">')
        for row in block:
            cells = []
            for i in range(len(table.leaves)):
                number = _number(table, row, i)
                if number is None:
                    cells.append("<td>–</td>")
                    continue
                text, rank, mark = number
                body = f"<b>{text}</b>" if rank == 1 else f"<u>{text}</u>" if rank == 2 else text
                if mark:
                    body += f"<sup>{mark}</sup>"
                cells.append(f'<td title="{escape(_provenance(table, row, i))}">{body}</td>')
            out.append(f"<tr><th>{escape(row)}</th>" + "".join(cells) + "</tr>")
        out.append("</tbody>")
    if table.notes:
        out.append(f'<tfoot><tr><td colspan="{len(table.leaves) + 1}">' + "<br>".join(escape(n) for n in table.notes) + "</td></tr></tfoot>")
    out.append("</table>")
    return "\n".join(out)


def _provenance(table: PaperTable, row: str, i: int) -> str:
    """Hover text of a cell: seeds, std, CI and p-value of a measured cell; the source of a reported one."""
    if (row, i) in table.reported:
        return table.reported[(row, i)].source
    c = table.cells[(row, i)]
    parts = [f"seeds {' '.join(map(str, c.seeds))}", f"std {c.std * 100:.2f}"]
    if c.ci is not None:
        parts.append(f"{c.ci.level:.0%} CI of {c.ci_metric} [{c.ci.low * 100:.1f}, {c.ci.high * 100:.1f}]")
    if c.p_value is not None:
        parts.append(f"p(beats {c.p_vs}) = {c.p_value:.3f}")
    if c.note:
        parts.append(c.note)
    return "; ".join(parts)


def paper_html_fragment(tables: list[PaperTable]) -> str:
    """The tables as HTML ``<table>`` elements (for embedding in a report page)."""
    return "\n".join(_paper_html_one(t) for t in tables)


def paper_html(tables: list[PaperTable]) -> str:
    """A standalone HTML page of the tables (inline style; hover a cell for its provenance)."""
    style = ("body{font-family:sans-serif;margin:2em}table{border-collapse:collapse;margin:1.5em 0}"
             "caption{text-align:left;font-weight:bold;margin-bottom:.4em}th,td{padding:.2em .6em;text-align:center}"
             "thead tr:first-child{border-top:2px solid #000}thead{border-bottom:1px solid #000}tbody.reported{border-top:1px solid #000;color:#555}"
             "tbody tr:last-child{border-bottom:2px solid #000}tbody th{text-align:left;font-weight:normal}tfoot td{text-align:left;font-size:.85em}")
    return ("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>g2d-bench leaderboard</title>\n"
            f"<style>{style}</style>\n</head>\n<body>\n{paper_html_fragment(tables)}\n</body>\n</html>\n")


PAPER_FORMATS = {"md": paper_markdown, "latex": paper_latex, "csv": paper_csv, "html": paper_html}


# -- CLI helpers (benchmark/cli.py wires them) ----------------------------------------------------
def add_leaderboard_arguments(parser) -> None:
    """Every option of ``g2d-bench leaderboard`` (the existing ones and --layout, --with-reported,
    --reported, --layout-file, --resamples, --stats-seed)."""
    from g2d_bench import stats

    parser.add_argument("--out", type=Path, default=Path("runs"), help="folder of run records (default: ./runs)")
    parser.add_argument("--format", choices=["md", "latex", "csv", "html"], default="md")
    parser.add_argument("--metric", help="report this metric instead of each task's primary metric (default layout)")
    parser.add_argument("--tasks", type=lambda text: [t for t in text.split(",") if t], help="only these tasks (comma-separated)")
    parser.add_argument("--save", type=Path, help="write the table to this file (atomically) instead of stdout")
    parser.add_argument("--layout", choices=["table", "paper"], default="table",
                        help="table: one column per task x fraction (default); paper: G2D Tables 1, 2a, 2b, 3, 4 with significance marks")
    parser.add_argument("--with-reported", action="store_true", help="add the G2D paper's numbers as '(reported)' rows (never ranked or tested)")
    parser.add_argument("--reported", type=Path, help="reported numbers (default: results/reported/g2d_reported.csv)")
    parser.add_argument("--layout-file", type=Path, help="paper table layout (default: results/reported/g2d_tables.json)")
    parser.add_argument("--resamples", type=int, default=stats.N_RESAMPLES,
                        help=f"bootstrap resamples of the test images for CIs and the paired test (default {stats.N_RESAMPLES}; 0 = none)")
    parser.add_argument("--stats-seed", type=int, default=0, help="seed of the bootstrap (default 0)")


def leaderboard_command(args) -> str:
    """The text of ``g2d-bench leaderboard`` (the CLI prints or saves it). The default layout without
    --with-reported renders exactly as before (``build_table`` + ``FORMATS``)."""
    from g2d_bench.records import iter_records
    from g2d_bench.reported import load_reported

    out = Path(args.out)
    if not out.is_dir():
        raise G2DBenchError(f"no run records under {out}; run `g2d-bench run ...` first or pass --out")
    records = list(iter_records(out))
    if not records:
        raise G2DBenchError(f"no complete run records under {out}")
    layout_name = getattr(args, "layout", "table")
    with_reported = getattr(args, "with_reported", False)
    if getattr(args, "resamples", 0) < 0:
        raise G2DBenchError(f"--resamples must be >= 0, got {args.resamples}")
    if layout_name == "table" and not with_reported:
        return FORMATS[args.format](build_table(records, args.metric, args.tasks))
    if layout_name == "paper":
        if args.metric:
            raise G2DBenchError("--metric applies to the default layout; the paper layout's metrics come from its layout file")
        layout = load_layout(getattr(args, "layout_file", None))
        if args.tasks:
            keep = set(args.tasks)
            layout = PaperLayout(tuple(PaperTableSpec(t.id, t.caption, t.fractions, t.fraction_position, tuple(c for c in t.columns if c.task in keep))
                                       for t in layout.tables), layout.row_order)
    else:
        layout = auto_layout(records, args.metric, args.tasks)
    reported = load_reported(getattr(args, "reported", None)) if with_reported else None
    tables = build_paper_tables(records, layout, reported=reported, n_resamples=getattr(args, "resamples", None),
                                seed=getattr(args, "stats_seed", 0))
    if not tables:
        raise G2DBenchError(f"no run record under {out} belongs to a paper table (tasks of {PAPER_LAYOUT_JSON.name}); "
                            "use the default layout or --with-reported")
    return PAPER_FORMATS[args.format](tables)
