"""One static, self-contained HTML page of a folder of run records: the leaderboard, its plots,
and where every number came from — a file a researcher can attach to a paper's supplement.

``index.html`` loads nothing from outside: styles are inline, figures are PNG data URIs (or, with
``embed=False``, files under ``plots/`` beside the page, referenced relatively), and there is no
JavaScript. Every table cell carries its numbers as attributes a program can read::

    <td class="cell" data-task="rsna-cls" data-method="g2d" data-fraction="0.1" data-metric="auc"
        data-mean="0.81" data-std="0.0141421356" data-n="2" data-seeds="0 1" data-values="0.8 0.82"
        title="(the records behind it)">81.0 ± 1.4</td>

``data-mean``/``data-std``/``data-values`` are on the metric's own scale ([0, 1]); the text is ×100
with one decimal, exactly as ``g2d-bench leaderboard`` prints it (mean ± sample SD over seeds).
The ``title`` tooltip and a ``<details>`` entry (linked from the cell) list the records behind the
cell: method, checkpoint hash, seed, value, git commit, package versions and record path.
The page has no timestamp, so the same records and code give the same bytes.
"""
from __future__ import annotations

import base64
import html
import logging
import platform
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from g2d_bench.errors import G2DBenchError
from g2d_bench.io import atomic_write
from g2d_bench.leaderboard import Column, Table
from g2d_bench.records import iter_records, provenance

if TYPE_CHECKING:
    from g2d_bench.plots import CellCI

log = logging.getLogger(__name__)

_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1200px; padding: 0 1rem; color: #222; }
h1 { margin-bottom: 0.2rem; } h2 { border-bottom: 1px solid #ccc; padding-bottom: 0.2rem; margin-top: 2rem; }
.scroll { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { border: 1px solid #ddd; padding: 0.25rem 0.5rem; text-align: center; white-space: nowrap; }
th.row, td.row { text-align: left; }
thead th { background: #f4f4f4; }
td.cell a { color: inherit; text-decoration: none; }
td.cell:hover { background: #fff6d5; }
td.best { font-weight: bold; }
.note { color: #555; font-size: 0.85rem; }
dl.kv { display: grid; grid-template-columns: max-content minmax(0, 1fr); gap: 0.2rem 1rem; font-size: 0.9rem; }
dl.kv dt { font-weight: 600; } dl.kv dd { margin: 0; font-family: ui-monospace, monospace; word-break: break-all; }
details { margin: 0.3rem 0; } summary { cursor: pointer; }
table.prov td { text-align: left; font-family: ui-monospace, monospace; font-size: 0.8rem; }
figure { display: inline-block; margin: 0.5rem 1rem 1rem 0; vertical-align: top; max-width: 100%; }
figure img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { font-size: 0.85rem; color: #444; max-width: 600px; }
"""


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


def _num(value: float) -> str:
    """A float as text a program reads back exactly (repr round-trips)."""
    return repr(float(value))


def cell_text(mean: float, std: float, n: int) -> str:
    """The number a cell displays: ×100, one decimal, ``± SD`` when there is more than one seed."""
    text = f"{mean * 100:.1f}"
    return text + f" ± {std * 100:.1f}" if n > 1 else text


def _short_commit(commit: str | None) -> str:
    if not commit:
        return "unknown"
    dirty = commit.endswith("+dirty")
    return commit[:10] + ("+dirty" if dirty else "")


class _Packages:
    """Distinct package-version sets across records, named P1, P2, … in order of first use."""

    def __init__(self) -> None:
        self.sets: dict[tuple, str] = {}

    def name(self, record: dict) -> str:
        packages = tuple(sorted(((record.get("provenance") or {}).get("packages") or {}).items()))
        return self.sets.setdefault(packages, f"P{len(self.sets) + 1}")


def _relative(path: str | None, root: Path) -> str:
    if not path:
        return "?"
    try:
        return str(Path(path).resolve().relative_to(root.resolve()))
    except ValueError:
        return str(path)


def _record_line(record: dict, metric: str, root: Path, packages: _Packages) -> str:
    key = record["key"]
    commit = (record.get("provenance") or {}).get("git_commit")
    value = record["metrics"][metric]
    return (f"seed {key['seed']}: {value:.4f} · ckpt {key['checkpoint_hash'][:12]} · commit {_short_commit(commit)}"
            f" · packages {packages.name(record)} · {_relative(record.get('_path'), root)}")


def _tooltip(row: str, label: str, fraction: float, column: Column, mean: float, std: float, records: list[dict], root: Path, packages: _Packages) -> str:
    lines = [f"{row} · {label} · {fraction * 100:g}% · {column.metric}",
             f"mean {mean:.6f}, sample SD {std:.6f}, n = {len(records)}"]
    lines += [_record_line(r, column.metric, root, packages) for r in records]
    return "\n".join(lines)


def _header_rows(table: Table) -> str:
    top = ['<th class="row" rowspan="2">Method</th>']
    top += [f'<th colspan="{len(table.fractions[c])}">{_e(table.labels[c])}</th>' for c in table.columns]
    bottom = [f"<th>{f * 100:g}%</th>" for c in table.columns for f in table.fractions[c]]
    return f"<tr>{''.join(top)}</tr>\n<tr>{''.join(bottom)}</tr>"


def _leaderboard(table: Table, behind: dict, root: Path, packages: _Packages) -> tuple[str, str]:
    """The leaderboard table and the provenance ``<details>`` of its cells, as HTML."""
    body, details = [], []
    for row in table.rows:
        tds = [f'<td class="row">{_e(row)}</td>']
        for column in table.columns:
            for fraction in table.fractions[column]:
                key = (row, column, fraction)
                cell = table.cells.get(key)
                if cell is None:
                    reason = table.skipped.get((row, column))
                    tds.append(f'<td class="empty" title="{_e("skipped: " + reason) if reason else "no record"}">–</td>')
                    continue
                records = behind[key]
                ident = f"cell-{len(details) + 1}"
                means = [table.cells[(r, column, fraction)].mean for r in table.rows if (r, column, fraction) in table.cells]
                best = len(means) > 1 and cell.mean == max(means)
                label = table.labels[column]
                attrs = {
                    "id": ident, "data-task": column.task, "data-column": label, "data-method": row,
                    "data-fraction": _num(fraction), "data-metric": column.metric, "data-mean": _num(cell.mean),
                    "data-std": _num(cell.std), "data-n": len(cell.values), "data-seeds": " ".join(map(str, cell.seeds)),
                    "data-values": " ".join(_num(v) for v in cell.values),
                    "title": _tooltip(row, label, fraction, column, cell.mean, cell.std, records, root, packages),
                }
                classes = "cell best" if best else "cell"
                text = cell_text(cell.mean, cell.std, len(cell.values))
                attr_text = " ".join(f'{k}="{_e(v)}"' for k, v in attrs.items())
                tds.append(f'<td class="{classes}" {attr_text}><a href="#prov-{ident}">{_e(text)}</a></td>')
                details.append(_cell_details(ident, row, label, fraction, column, cell.mean, cell.std, records, root, packages))
        body.append("<tr>" + "".join(tds) + "</tr>")
    table_html = f'<div class="scroll"><table class="leaderboard">\n<thead>\n{_header_rows(table)}\n</thead>\n<tbody>\n' + "\n".join(body) + "\n</tbody>\n</table></div>"
    return table_html, "\n".join(details)


def _cell_details(ident: str, row: str, label: str, fraction: float, column: Column, mean: float, std: float, records: list[dict], root: Path, packages: _Packages) -> str:
    head = "<tr><th>seed</th><th>value</th><th>method</th><th>checkpoint hash</th><th>git commit</th><th>packages</th><th>95 % CI</th><th>record</th></tr>"
    rows = []
    for r in records:
        key, prov = r["key"], r.get("provenance") or {}
        ci = (r.get("ci") or {}).get(column.metric)
        rows.append("<tr>" + "".join(f"<td>{_e(v)}</td>" for v in (
            key["seed"], _num(r["metrics"][column.metric]), (r.get("method") or {}).get("name", key["method"]),
            key["checkpoint_hash"], prov.get("git_commit") or "unknown", packages.name(r),
            ci if ci is not None else "–", _relative(r.get("_path"), root),
        )) + "</tr>")
    summary = f"{_e(row)} · {_e(label)} · {fraction * 100:g}% — {_e(cell_text(mean, std, len(records)))} ({len(records)} record{'s' if len(records) != 1 else ''})"
    return (f'<details id="prov-{ident}" class="prov"><summary>{summary}</summary>\n'
            f'<div class="scroll"><table class="prov">{head}\n' + "\n".join(rows) + "</table></div></details>")


def _dl(items: Iterable[tuple[str, object]]) -> str:
    return '<dl class="kv">' + "".join(f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in items) + "</dl>"


def _figures(records: list[dict], metric: str | None, tasks: list[str] | None, out_dir: Path, embed: bool, cell_ci: CellCI | None = None) -> tuple[str, list[str]]:
    """The plots as ``<figure>`` HTML, and the names of the plots drawn."""
    from g2d_bench import plots

    drawn = plots.data_efficiency_figures(records, metric, tasks, cell_ci)
    task_names = sorted({r["key"]["task"] for r in records if tasks is None or r["key"]["task"] in tasks})
    for task in task_names:
        has_classes = any(m.startswith("auc/") for r in records if r["key"]["task"] == task and r.get("status") == "ok" for m in r.get("metrics", {}))
        if has_classes:
            drawn.append(plots.per_class_figure(records, task))
    parts = []
    for plot in drawn:
        data = plots.render(plot.figure, "png")
        if embed:
            src = "data:image/png;base64," + base64.b64encode(data).decode("ascii")
        else:
            path = plots.save(plot, out_dir / "plots", ("png",))[0]
            src = f"plots/{path.name}"
        width, height = (round(v * plots.DPI) for v in plot.figure.get_size_inches())
        parts.append(f'<figure id="fig-{_e(plot.name)}"><img src="{src}" alt="{_e(plot.caption)}" width="{width}" height="{height}">'
                     f"<figcaption>{_e(plot.caption)}</figcaption></figure>")
        plot.figure.clear()
    return "\n".join(parts), [p.name for p in drawn]


def write_report(runs_dir: str | Path, out_dir: str | Path, metric: str | None = None, tasks: Iterable[str] | None = None, embed: bool = True, title: str = "g2d-bench report", cell_ci: CellCI | None = None) -> Path:
    """Write ``out_dir/index.html`` for every complete record under ``runs_dir``; returns its path.

    ``metric``: tabulate and plot this metric instead of each task's primary one; ``tasks``: only
    these tasks; ``embed``: figures as data URIs in the page (one file) rather than ``plots/*.png``;
    ``cell_ci``: bands of the data-efficiency curves from this interval function (see
    :func:`g2d_bench.plots.data_efficiency_figures`).
    """
    from g2d_bench.plots import CELL_CI_BAND, CI_BAND, SD_BAND, table_with_records

    runs_dir, out_dir = Path(runs_dir), Path(out_dir)
    tasks = None if tasks is None else list(tasks)
    records = [r for r in iter_records(runs_dir) if tasks is None or r["key"]["task"] in tasks]
    if not records:
        raise G2DBenchError(f"report: no complete run records under {runs_dir}{' for tasks ' + ', '.join(tasks) if tasks else ''}; run `g2d-bench run` or `g2d-bench sweep --out {runs_dir}` first")
    table, behind = table_with_records(records, metric, tasks)
    packages = _Packages()
    table_html, details_html = _leaderboard(table, behind, runs_dir, packages)
    figures_html, plot_names = _figures(records, metric, tasks, out_dir, embed, cell_ci)
    for r in records:
        packages.name(r)
    code = provenance()
    commits = Counter((r.get("provenance") or {}).get("git_commit") or "unknown" for r in records)
    seeds = sorted({len(c.values) for c in table.cells.values()})
    skipped = [f"<li>{_e(row)} on {_e(table.labels[column])}: {_e(reason)}</li>" for (row, column), reason in sorted(table.skipped.items(), key=lambda kv: (kv[0][0], table.labels[kv[0][1]]))]
    settings = [
        ("runs folder", str(runs_dir)), ("metric", metric or "each task's primary metric"),
        ("tasks", ", ".join(tasks) if tasks else "all"), ("records", f"{len(records)} complete ({sum(r.get('status') == 'skipped' for r in records)} skipped)"),
        ("cells", f"mean ± sample SD over {', '.join(map(str, seeds)) or '0'} seed(s); ×100; best per column in bold (higher is better)"),
        ("plot bands", CELL_CI_BAND if cell_ci else f"{SD_BAND}; {CI_BAND} where every plotted record carries record['ci']"),
        ("figures", "embedded PNG data URIs" if embed else "plots/*.png beside this page"), ("plots", ", ".join(plot_names) or "none"),
    ]
    generator = [
        ("generating code commit", code.get("git_commit") or "unknown"),
        ("g2d-bench", code.get("packages", {}).get("g2d-bench", "unknown")),
        ("python", platform.python_version()),
        ("matplotlib", _version("matplotlib")),
    ]
    record_commits = [(commit, f"{n} record{'s' if n != 1 else ''}") for commit, n in sorted(commits.items())]
    package_sets = [(name, ", ".join(f"{k} {v}" for k, v in pkgs) or "none recorded") for pkgs, name in packages.sets.items()]
    page = f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="generator" content="g2d-bench {_e(code.get('packages', {}).get('g2d-bench', ''))}">
<title>{_e(title)}</title>
<link rel="icon" href="data:,">
<style>{_STYLE}</style>
</head>
<body>
<h1>{_e(title)}</h1>
<p class="note">{len(records)} run records from <code>{_e(runs_dir)}</code>; records' git commit(s): {_e(', '.join(_short_commit(c) for c in sorted(commits)))}; generated by code at {_e(_short_commit(code.get('git_commit')))}. Hover a number for the records behind it; click it for details.</p>
<section id="leaderboard">
<h2>Leaderboard</h2>
{table_html}
<p class="note">mean ± sample SD over {_e(', '.join(map(str, seeds)) or '0')} seed(s); ×100; best per column in bold.</p>
{'<ul class="skipped">' + ''.join(skipped) + '</ul>' if skipped else ''}
</section>
<section id="plots">
<h2>Plots</h2>
{figures_html or '<p class="note">no plots</p>'}
</section>
<section id="cells">
<h2>Provenance of every cell</h2>
{details_html}
</section>
<section id="provenance">
<h2>Provenance</h2>
<h3>Records' git commits</h3>
{_dl(record_commits)}
<h3>Package versions of the records</h3>
{_dl(package_sets)}
<h3>Generating code</h3>
{_dl(generator)}
<h3>Generation settings</h3>
{_dl(settings)}
</section>
</body>
</html>
"""
    path = out_dir / "index.html"
    with atomic_write(path, encoding="utf-8") as handle:
        handle.write(page)
    log.info("wrote %s (%d records, %d plots)", path, len(records), len(plot_names))
    return path


def _version(name: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "unknown"
