"""Numbers the G2D paper reports (NeurIPS 2024, Tables 1–5, 7, 8), kept as data in
``results/reported/g2d_reported.csv``, and their comparison with measured run records.

The data file has one row per reported number:

``table, method, paper_method, variant, task, metric, paper_metric, fraction, value, unit, setting, source``

- ``paper_method``: the paper's row name; ``method``: the g2d-bench registry name where one exists
  (:data:`PAPER_METHODS`), else empty — a reported row without a registry name never has a measured twin;
- ``variant``: task settings that row stands for (``transfer=encoder-decoder`` for "G2D
  (encoder-decoder)"), matched against a record's resolved settings;
- ``metric``: the g2d-bench metric name (:func:`canonical_metric`: ``mAP`` → ``map``, ``acc`` →
  ``accuracy``, ``auc:Edema`` → ``auc/Edema``, ``recall`` → ``pointing_game``), ``paper_metric`` as printed;
- ``fraction``: ``0.01`` / ``0.1`` / ``1.0`` of the training labels, or ``zero-shot``;
- ``value``: as printed, in percent (empty where the paper prints "-");
- ``setting``: ``g2d-protocol`` (Tables 1–4: the protocols g2d-bench implements), ``medklip-finetune``
  (Table 7: MedKLIP's setting, encoder fine-tuned) or ``ablation`` (Tables 5c–5h, 8: G2D variants
  at 1 %). Only ``g2d-protocol`` rows are twins of measured cells;
- ``source``: ``G2D NeurIPS 2024 Table N`` and the note that came with the number.

Reported numbers are on the real datasets at paper scale (224 px, ResNet-50); they are shown beside
measured rows, labelled, and never enter measured statistics.
"""
from __future__ import annotations

import argparse
import csv
import io
import math
import statistics
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from g2d_bench.errors import G2DBenchError

#: results/reported/ of the source tree (the package folder benchmark/ sits beside results/)
RESULTS_DIR = Path(__file__).resolve().parent.parent / "results"
REPORTED_CSV = RESULTS_DIR / "reported" / "g2d_reported.csv"
COLUMNS = ("table", "method", "paper_method", "variant", "task", "metric", "paper_metric", "fraction", "value", "unit", "setting", "source")
ZERO_SHOT = "zero-shot"
MAIN = "g2d-protocol"

#: the paper's method names → (g2d-bench registry name, task settings the row stands for).
#: "GLoRIA" is the official GLoRIA checkpoint (pretrained on CheXpert); "GLoRIA-MIMIC" is GLoRIA
#: retrained on MIMIC-CXR, which a g2d-bench ``gloria`` run may be either of, so it has no twin.
PAPER_METHODS: dict[str, tuple[str, str]] = {
    "Random Init": ("random", ""),
    "ImageNet Init": ("imagenet", ""),
    "ConVIRT": ("convirt", ""),
    "GLoRIA": ("gloria", ""),
    "MGCA": ("mgca", ""),
    "G2D": ("g2d", ""),
    "G2D (encoder)": ("g2d", "transfer=encoder"),
    "G2D (encoder-decoder)": ("g2d", "transfer=encoder-decoder"),
}
#: Table 7 compares in MedKLIP's setting (encoder fine-tuned); Tables 5c–5h and 8 are ablations
SETTINGS = {"7": "medklip-finetune", "5c": "ablation", "5d": "ablation", "5e": "ablation", "5f": "ablation",
            "5g": "ablation", "5h": "ablation", "8": "ablation"}


def canonical_metric(name: str) -> str:
    """A paper metric name in g2d-bench's spelling: ``mAP`` → ``map``, ``acc`` → ``accuracy``,
    ``auc:Edema`` → ``auc/Edema`` (the class part keeps its case), ``recall`` → ``pointing_game``
    (G2D Table 2a's grounding "recall" is the pointing game, REFERENCE.md)."""
    head, sep, rest = name.replace(":", "/").partition("/")
    head = {"map": "map", "acc": "accuracy", "recall": "pointing_game"}.get(head.lower(), head.lower())
    return head + sep + rest


def _method_of(paper_method: str, table: str) -> tuple[str, str]:
    if paper_method in PAPER_METHODS:
        return PAPER_METHODS[paper_method]
    if SETTINGS.get(table) == "ablation" and paper_method.endswith("(G2D)"):
        return "g2d", ""  # the ablation row that is G2D as published
    return "", ""


def convert_shared(path: str | Path) -> list[dict[str, str]]:
    """Rows of the data file from the list of reported numbers ``table,method,task,metric,fraction,value,note``
    (``/work/shared/g2d_reported.csv``), in its order."""
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        expected = ["table", "method", "task", "metric", "fraction", "value", "note"]
        if reader.fieldnames != expected:
            raise G2DBenchError(f"{path}: header {reader.fieldnames} is not {','.join(expected)}")
        rows = []
        for raw in reader:
            method, variant = _method_of(raw["method"], raw["table"])
            source = f"G2D NeurIPS 2024 Table {raw['table']}" + (f"; {raw['note']}" if raw["note"] else "")
            rows.append({
                "table": raw["table"], "method": method, "paper_method": raw["method"], "variant": variant,
                "task": raw["task"], "metric": canonical_metric(raw["metric"]), "paper_metric": raw["metric"],
                "fraction": raw["fraction"], "value": raw["value"], "unit": "percent",
                "setting": SETTINGS.get(raw["table"], MAIN), "source": source,
            })
    return rows


def write_reported(rows: Sequence[Mapping[str, str]], path: str | Path = REPORTED_CSV) -> None:
    """Write the data file atomically (used once to create it from the shared list)."""
    from g2d_bench.io import atomic_write

    with atomic_write(path, newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS, lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


@dataclass(frozen=True)
class Reported:
    """One reported number (``value`` in percent; NaN where the paper prints "-")."""

    table: str
    method: str
    paper_method: str
    variant: str
    task: str
    metric: str
    paper_metric: str
    fraction: str
    value: float
    unit: str
    setting: str
    source: str

    def fraction_matches(self, fraction: float) -> bool:
        """A zero-shot number matches a measured run at any label fraction (zero-shot tasks train nothing)."""
        return self.fraction == ZERO_SHOT or math.isclose(float(self.fraction), float(fraction), rel_tol=0, abs_tol=1e-12)

    def settings(self) -> dict[str, str]:
        return dict(part.split("=", 1) for part in self.variant.split(",") if part)


def load_reported(path: str | Path | None = None) -> list[Reported]:
    """The reported numbers (default: ``results/reported/g2d_reported.csv`` of the source tree)."""
    path = Path(path) if path else REPORTED_CSV
    if not path.exists():
        raise G2DBenchError(f"{path}: no reported numbers there; pass --reported results/reported/g2d_reported.csv of a g2d-bench checkout")
    with open(path, newline="") as handle:
        reader = csv.DictReader(handle)
        if tuple(reader.fieldnames or ()) != COLUMNS:
            raise G2DBenchError(f"{path}: header {reader.fieldnames} is not {','.join(COLUMNS)}")
        return [Reported(**{**row, "value": float(row["value"]) if row["value"] else float("nan")}) for row in reader]


# -- comparison with measured records -------------------------------------------------------------
def _record_setting(record: Mapping[str, Any], name: str) -> str | None:
    config = record.get("config") or {}
    if name in config:
        return str(config[name])
    hparams = (record.get("task") or {}).get("hparams") or {}
    return str(hparams[name]["value"]) if name in hparams else None


def twin(record: Mapping[str, Any], metric: str, reported: Iterable[Reported]) -> list[Reported]:
    """The reported numbers a record's ``metric`` is the measured counterpart of: same method,
    task, metric and fraction, a ``g2d-protocol`` row, and the row's variant settings equal to the
    record's resolved settings."""
    key = record["key"]
    name = canonical_metric(metric)
    out = []
    for row in reported:
        if row.setting != MAIN or not row.method or row.method != key["method"] or row.task != key["task"]:
            continue
        if row.metric != name or not row.fraction_matches(key["fraction"]):
            continue
        if all(_record_setting(record, k) == v for k, v in row.settings().items()):
            out.append(row)
    return out


@dataclass
class Comparison:
    """A measured cell (mean over seeds, ×100) beside its reported twin."""

    row: str
    method: str
    task: str
    metric: str
    fraction: float
    data: str
    scale: str
    image_size: int
    seeds: list[int]
    measured: float
    reported: float
    paper_method: str
    table: str
    source: str

    @property
    def difference(self) -> float:
        return self.measured - self.reported


def compare(records: Iterable[Mapping[str, Any]], reported: Sequence[Reported]) -> list[Comparison]:
    """Every measured cell (row label × task × version × data × scale × size × metric × fraction)
    that has a reported twin, with both numbers in percent. Every metric of a record is compared,
    not only the primary one."""
    from g2d_bench.leaderboard import label_context, row_label

    records = [r for r in records if r.get("status") == "ok"]
    context = label_context(records)
    cells: dict[tuple, dict[str, Any]] = {}
    for r in sorted(records, key=lambda r: (r["key"]["task"], r["key"]["method"], r["key"]["fraction"], r["key"]["seed"])):
        key = r["key"]
        for metric, value in r.get("metrics", {}).items():
            twins = twin(r, metric, reported)
            if not twins:
                continue
            ident = (row_label(r, context), key["task"], key["task_version"], key.get("data", ""), key.get("scale", ""),
                     key["image_size"], metric, key["fraction"])
            cell = cells.setdefault(ident, {"values": [], "seeds": [], "twins": twins, "method": key["method"]})
            cell["values"].append(float(value))
            cell["seeds"].append(key["seed"])
    out = []
    for (row, task, _version, data, scale, size, metric, fraction), cell in cells.items():
        for t in cell["twins"]:
            out.append(Comparison(row, cell["method"], task, metric, fraction, data, scale, size, cell["seeds"],
                                  100.0 * statistics.fmean(cell["values"]), t.value, t.paper_method, t.table, t.source))
    return out


def _fmt(value: float) -> str:
    return "–" if math.isnan(value) else f"{value:.1f}"


def comparison_markdown(rows: Sequence[Comparison]) -> str:
    """A GitHub table: measured (mean over seeds) and reported numbers in percent, their difference."""
    header = ["Method", "Task", "Metric", "Fraction", "Measured on", "Seeds", "Measured", "Reported", "Measured − reported", "Source"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for c in rows:
        cells = [c.row, c.task, c.metric, f"{c.fraction * 100:g}%", f"{c.data}, {c.scale} scale, {c.image_size}px",
                 str(len(c.seeds)), f"{c.measured:.1f}", _fmt(c.reported), _fmt(c.difference), f"{c.source} ({c.paper_method})"]
        lines.append("| " + " | ".join(x.replace("|", r"\|") for x in cells) + " |")
    lines.append("")
    lines.append("_Measured: mean over seeds ×100 on the data and scale named; reported: G2D NeurIPS 2024, real data at paper "
                 "scale (224 px, ResNet-50). A difference across different data or scales is not a reproduction check._")
    return "\n".join(lines) + "\n"


def comparison_csv(rows: Sequence[Comparison]) -> str:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(["method", "row", "task", "metric", "fraction", "data", "scale", "image_size", "seeds",
                     "measured", "reported", "difference", "paper_method", "table", "source"])
    for c in rows:
        writer.writerow([c.method, c.row, c.task, c.metric, c.fraction, c.data, c.scale, c.image_size,
                         " ".join(map(str, c.seeds)), f"{c.measured:.4f}", "" if math.isnan(c.reported) else f"{c.reported:.1f}",
                         "" if math.isnan(c.reported) else f"{c.difference:.4f}", c.paper_method, c.table, c.source])
    return buffer.getvalue()


COMPARE_FORMATS = {"md": comparison_markdown, "csv": comparison_csv}


# -- CLI helpers (benchmark/cli.py wires them) ----------------------------------------------------
def add_compare_reported_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``g2d-bench compare-reported``."""
    parser.add_argument("--out", type=Path, default=Path("runs"), help="folder of run records (default: ./runs)")
    parser.add_argument("--reported", type=Path, help="reported numbers (default: results/reported/g2d_reported.csv)")
    parser.add_argument("--format", choices=sorted(COMPARE_FORMATS), default="md")
    parser.add_argument("--save", type=Path, help="write the table to this file (atomically) instead of stdout")


def compare_reported_command(args: argparse.Namespace) -> str:
    """The text of ``g2d-bench compare-reported`` (the CLI prints or saves it)."""
    from g2d_bench.records import iter_records

    if not Path(args.out).is_dir():
        raise G2DBenchError(f"no run records under {args.out}; run `g2d-bench run ...` first or pass --out")
    records = list(iter_records(args.out))
    rows = compare(records, load_reported(getattr(args, "reported", None)))
    if not rows:
        raise G2DBenchError(f"no run record under {args.out} has a reported twin (same method, task, metric, fraction "
                            "as a G2D Table 1-4 number); run e.g. `g2d-bench run --method random --task siim-seg --fraction 0.01`")
    return COMPARE_FORMATS[args.format](rows)
