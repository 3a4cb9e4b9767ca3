"""Leaderboards: a pure function of run records → markdown, LaTeX and CSV tables shaped like the
G2D paper's (methods as rows; task × label fraction as columns; mean ± std over seeds; best in bold).

A column is one (task, task version, protocol, input size, scale, data, metric): records that
differ in any of these never share a column, so numbers from different protocols, scales, or from
SynthCXR and a real release are never averaged together.
"""
from __future__ import annotations

import csv
import io
import statistics
from dataclasses import dataclass, field
from typing import Iterable


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


def row_label(record: dict, hashes_per_method: dict[str, set[str]]) -> str:
    key = record["key"]
    label = key["method"]
    if len(hashes_per_method[key["method"]]) > 1:
        label += f"@{key['checkpoint_hash'][:8]}"
    if key.get("overrides"):
        label += " [" + ",".join(f"{k}={v}" for k, v in sorted(key["overrides"].items())) + "]"
    return label


def build_table(records: Iterable[dict], metric: str | None = None, tasks: Iterable[str] | None = None) -> Table:
    """Group records into cells. ``metric``: report this metric instead of each task's primary."""
    records = [r for r in records if tasks is None or r["key"]["task"] in set(tasks)]
    hashes: dict[str, set[str]] = {}
    for r in records:
        hashes.setdefault(r["key"]["method"], set()).add(r["key"]["checkpoint_hash"])
    cells: dict[tuple[str, Column, float], Cell] = {}
    skipped: dict[tuple[str, Column], str] = {}
    rows: list[str] = []
    columns: list[Column] = []
    fractions: dict[Column, list[float]] = {}
    for r in sorted(records, key=lambda r: (r["key"]["task"], r["key"]["method"], r["key"]["fraction"], r["key"]["seed"])):
        key = r["key"]
        name = metric or r.get("primary") or r["task"]["primary"]
        column = Column(key["task"], key["task_version"], r["task"]["protocol"], key["image_size"], name, key.get("data", "synthcxr"), key.get("scale", "paper"))
        row = row_label(r, hashes)
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
