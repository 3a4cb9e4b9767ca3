"""Test-set statistics from per-sample scores: seeded bootstrap confidence intervals and a paired
bootstrap test of "A beats B" on the same test images.

Both resample the **test images** (rows of the per-sample scores files) with replacement and
recompute the metric on every resample (:mod:`g2d_bench.tasks.rescore`), so they measure how much a
number depends on which test images were drawn — not seed-to-seed training noise, which the
leaderboard's ± std over seeds reports. A cell with several seeds is resampled as one: every seed's
scores are indexed with the same resampled rows and the statistic is the mean over seeds, the number
the leaderboard shows.

- Resamples: 1,000 by default (issue 24), drawn from ``numpy.random.default_rng(seed)`` one resample
  after another, so results depend only on (n, resamples, seed, strata) — never on chunking.
- Stratification: where a metric needs both classes (AUC), each resample keeps the class counts of
  the test set (rows are drawn within each stratum; the family's ``strata`` function says which);
  Dice and accuracy resample images freely.
- Interval: the percentile interval (Efron & Tibshirani 1993, ch. 13) at ``level`` (95 %); resamples
  where the metric is undefined (NaN) are dropped and counted (``n_valid``).
- Paired test: A and B are scored on the *same* resampled indices; Δ* = A* − B* (B* − A* when lower
  is better). One-sided p = (1 + #{Δ* ≤ 0}) / (1 + n_valid): the share of resamples where A does not
  beat B, with the +1 correction (Davison & Hinkley 1997, eq. 4.11; North et al. 2002) that keeps
  p > 0 — with 1,000 resamples the smallest possible p is 1/1001 ≈ 0.001, never 0.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from g2d_bench.errors import G2DBenchError

if TYPE_CHECKING:
    import pandas as pd

log = logging.getLogger(__name__)

#: issue 24: 1,000 bootstrap resamples, 95 % intervals
N_RESAMPLES = 1000
LEVEL = 0.95
ALPHA = 0.05  # significance level of the tables' marks
#: resamples handed at once to a vectorised statistic (memory: block × n indices)
_BLOCK_CELLS = 1 << 22

#: ``statistic(rows) -> value`` on row indices ``rows`` (``n`` ints, with repeats); a vectorised one
#: takes ``B×n`` and returns ``B`` values
Statistic = Callable[[np.ndarray], "float | np.ndarray"]


# -- resampling -----------------------------------------------------------------------------------
def _groups(n: int, strata: "np.ndarray | None") -> list[np.ndarray]:
    if strata is None:
        return [np.arange(n)]
    strata = np.asarray(strata)
    if len(strata) != n:
        raise G2DBenchError(f"bootstrap: {len(strata)} strata labels for {n} rows")
    _, inverse = np.unique(strata, return_inverse=True)
    return [np.flatnonzero(inverse == k) for k in range(inverse.max() + 1)]


def iter_resamples(n: int, n_resamples: int = N_RESAMPLES, seed: int = 0, strata: "np.ndarray | None" = None) -> Iterator[np.ndarray]:
    """Row indices of each bootstrap resample (``n`` ints each), drawn with replacement — within
    each stratum when ``strata`` (``n`` labels) is given, keeping every stratum's size."""
    if n < 1:
        raise G2DBenchError("bootstrap: no test rows to resample")
    rng = np.random.default_rng(seed)
    groups = _groups(n, strata)
    for _ in range(n_resamples):
        yield np.concatenate([g[rng.integers(0, len(g), len(g))] for g in groups])


def resample_indices(n: int, n_resamples: int = N_RESAMPLES, seed: int = 0, strata: "np.ndarray | None" = None) -> np.ndarray:
    """All resamples at once: ``n_resamples×n`` row indices (:func:`iter_resamples`)."""
    return np.stack(list(iter_resamples(n, n_resamples, seed, strata))) if n_resamples else np.zeros((0, n), np.int64)


def _evaluate(statistics: Sequence[Statistic], n: int, n_resamples: int, seed: int, strata, vectorized: bool) -> np.ndarray:
    """``len(statistics)×n_resamples`` values of each statistic on the same resamples."""
    out = np.empty((len(statistics), n_resamples), dtype=np.float64)
    resamples = iter_resamples(n, n_resamples, seed, strata)
    if vectorized:
        block = max(1, _BLOCK_CELLS // n)
        for start in range(0, n_resamples, block):
            rows = np.stack([next(resamples) for _ in range(min(block, n_resamples - start))])
            for k, stat in enumerate(statistics):
                out[k, start : start + len(rows)] = np.asarray(stat(rows), dtype=np.float64)
    else:
        for b, rows in enumerate(resamples):
            for k, stat in enumerate(statistics):
                out[k, b] = float(stat(rows))
    return out


def _point(stat: Statistic, n: int, vectorized: bool) -> float:
    rows = np.arange(n)
    return float(np.asarray(stat(rows[None, :]))[0]) if vectorized else float(stat(rows))


# -- intervals and tests --------------------------------------------------------------------------
@dataclass(frozen=True)
class Interval:
    """A bootstrap percentile interval of a statistic on the full test set."""

    estimate: float
    low: float
    high: float
    level: float
    n_resamples: int
    n_valid: int  # resamples where the statistic was defined
    seed: int
    stratified: bool

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def _percentiles(values: np.ndarray, level: float) -> tuple[float, float]:
    if not 0.0 < level < 1.0:
        raise G2DBenchError(f"bootstrap: level must be in (0, 1), got {level}")
    if values.size == 0:
        return float("nan"), float("nan")
    low, high = np.quantile(values, [(1.0 - level) / 2.0, 1.0 - (1.0 - level) / 2.0])
    return float(low), float(high)


def bootstrap_ci(statistic: Statistic, n: int, *, n_resamples: int = N_RESAMPLES, level: float = LEVEL, seed: int = 0,
                 strata: "np.ndarray | None" = None, vectorized: bool = False) -> Interval:
    """Percentile bootstrap interval of ``statistic`` over ``n`` test rows (see module notes)."""
    values = _evaluate([statistic], n, n_resamples, seed, strata, vectorized)[0]
    values = values[~np.isnan(values)]
    low, high = _percentiles(values, level)
    return Interval(_point(statistic, n, vectorized), low, high, level, n_resamples, int(values.size), seed, strata is not None)


@dataclass(frozen=True)
class PairedTest:
    """Paired bootstrap of "A beats B" on the same test rows. ``delta``: A − B on the full test
    set, oriented so that positive means A is better; ``p_value``: one-sided, +1-corrected."""

    delta: float
    p_value: float
    low: float  # percentile interval of the oriented difference
    high: float
    level: float
    n_resamples: int
    n_valid: int
    seed: int
    higher_is_better: bool
    stratified: bool

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def paired_bootstrap(stat_a: Statistic, stat_b: Statistic, n: int, *, higher_is_better: bool = True,
                     n_resamples: int = N_RESAMPLES, level: float = LEVEL, seed: int = 0,
                     strata: "np.ndarray | None" = None, vectorized: bool = False) -> PairedTest:
    """One-sided paired bootstrap test that A beats B: both statistics see the same resampled
    rows; p = (1 + #{Δ* ≤ 0}) / (1 + n_valid) with Δ* oriented by ``higher_is_better``."""
    a, b = _evaluate([stat_a, stat_b], n, n_resamples, seed, strata, vectorized)
    return paired_from_values(a, b, _point(stat_a, n, vectorized), _point(stat_b, n, vectorized), higher_is_better=higher_is_better,
                              level=level, seed=seed, stratified=strata is not None)


def paired_from_values(a: np.ndarray, b: np.ndarray, point_a: float, point_b: float, *, higher_is_better: bool = True,
                       level: float = LEVEL, seed: int = 0, stratified: bool = False) -> PairedTest:
    """The paired test from both statistics' values on the *same* resamples (``a[i]``, ``b[i]``:
    resample ``i``) and on the full test set."""
    if a.shape != b.shape:
        raise G2DBenchError(f"paired bootstrap: {a.shape} vs {b.shape} resampled values")
    sign = 1.0 if higher_is_better else -1.0
    diff = sign * (np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64))
    diff = diff[~np.isnan(diff)]
    p = (1.0 + float(np.count_nonzero(diff <= 0.0))) / (1.0 + diff.size)
    low, high = _percentiles(diff, level)
    return PairedTest(sign * (point_a - point_b), p, low, high, level, int(a.size), int(diff.size), seed, higher_is_better, stratified)


# -- from run records -----------------------------------------------------------------------------
def load_scores(record: Mapping[str, Any]) -> "pd.DataFrame":
    """The per-sample scores table of a complete run record read by
    :func:`g2d_bench.records.iter_records` (which adds ``_path``)."""
    import pandas as pd

    if "_path" not in record or not record.get("scores_file"):
        raise G2DBenchError(f"run record of {record.get('key', {}).get('task', '?')} has no scores file on disk; "
                            "read records with g2d_bench.records.iter_records")
    path = Path(record["_path"]).with_name(record["scores_file"])
    if not path.exists():
        raise G2DBenchError(f"{path}: scores file missing; rerun the record's run")
    return pd.read_csv(path)


def align(frames: Sequence["pd.DataFrame"], what: str = "scores") -> list["pd.DataFrame"]:
    """The tables reordered to the first one's ``sample_id`` order (row ``i`` is the same test image
    in every table); an error when they were not scored on the same test images."""
    if not frames:
        raise G2DBenchError(f"{what}: no scores tables")
    ref = frames[0]["sample_id"].astype(str)
    if ref.duplicated().any():
        raise G2DBenchError(f"{what}: a scores table lists a test image twice")
    out = [frames[0].reset_index(drop=True)]
    for frame in frames[1:]:
        ids = frame["sample_id"].astype(str)
        if len(ids) != len(ref) or set(ids) != set(ref):
            raise G2DBenchError(f"{what}: scores were not computed on the same test images ({len(ids)} vs {len(ref)} rows, "
                                f"{len(set(ids) ^ set(ref))} differ); compare runs of the same task version and data only")
        out.append(frame.set_index(ids).loc[ref.to_numpy()].reset_index(drop=True))
    return out


@dataclass
class CellScores:
    """The scores of one leaderboard cell (one method × column × fraction; one table per seed,
    aligned) and how its metric is recomputed. ``metric`` is the metric recomputed on resamples:
    the column's own, or the family's proxy where the scores cannot reproduce it (``note`` says so)."""

    spec: Any  # g2d_bench.tasks.rescore.ScoreSpec
    frames: list["pd.DataFrame"]
    metric: str
    note: str = ""
    #: (n_resamples, seed) → the statistic on each resample: a cell's CI and its paired tests
    #: against cells of the same test set in the same row order use the same resamples, so they
    #: are computed once
    _cache: dict = field(default_factory=dict, repr=False)

    @property
    def approximate(self) -> bool:
        return bool(self.note)

    @property
    def n(self) -> int:
        return len(self.frames[0])

    def statistic(self) -> Statistic:
        """Mean over seeds of the metric on the same rows of every seed's table."""
        from g2d_bench.tasks import rescore

        frames, name = self.frames, self.metric
        spec = rescore.pinned(frames[0], self.spec, name)  # data-dependent choices fixed on the full test set
        per_frame = [rescore.on_rows(f, spec, name) for f in frames]

        def stat(rows: np.ndarray) -> float:
            return float(np.mean([fn(rows) for fn in per_frame]))

        return stat

    def strata(self) -> "np.ndarray | None":
        from g2d_bench.tasks import rescore

        return rescore.strata(self.frames[0], self.spec, self.metric)

    def sample_ids(self) -> np.ndarray:
        return self.frames[0]["sample_id"].astype(str).to_numpy()

    def resampled(self, n_resamples: int, seed: int) -> tuple[np.ndarray, float]:
        """(the statistic on each of the resamples, on the full test set), cached."""
        if (n_resamples, seed) not in self._cache:
            stat = self.statistic()
            values = _evaluate([stat], self.n, n_resamples, seed, self.strata(), False)[0]
            self._cache[(n_resamples, seed)] = (values, _point(stat, self.n, False))
        return self._cache[(n_resamples, seed)]


def cell_scores(records: Sequence[Mapping[str, Any]], metric: str) -> CellScores:
    """Load and align the scores of a cell's records (its seeds) and pick the metric to resample:
    ``metric`` if the scores reproduce it, else the family's proxy (a :class:`~g2d_bench.tasks.rescore.RescoreUnavailable`
    error when there is none)."""
    from g2d_bench.tasks import rescore

    if not records:
        raise G2DBenchError("bootstrap: a cell without records")
    spec = rescore.ScoreSpec.from_record(records[0])
    frames = align([load_scores(r) for r in records], f"{spec.task} {metric}")
    entry = rescore.scorer(spec)
    try:
        rescore.metric(frames[0], spec, metric)
        return CellScores(spec, frames, metric)
    except rescore.RescoreUnavailable:
        proxy = entry.proxies.get(metric)
        if proxy is None:
            raise
        note = entry.notes.get(proxy, f"proxy {proxy}")
        return CellScores(spec, frames, proxy, f"{proxy} in place of {metric} ({note})")


def higher_is_better(task: str | Mapping[str, Any]) -> bool:
    """Whether larger values of a task's metrics are better: the registered task spec's
    ``higher_is_better`` (a record's task description may state it too); True for unknown tasks."""
    from g2d_bench.tasks import TASKS

    name = task if isinstance(task, str) else (task.get("task") or {}).get("name") or task["key"]["task"]
    try:
        return bool(getattr(TASKS.get(name), "higher_is_better", True))
    except G2DBenchError:
        return True if isinstance(task, str) else bool((task.get("task") or {}).get("higher_is_better", True))


def cell_ci(cell: CellScores, *, n_resamples: int = N_RESAMPLES, level: float = LEVEL, seed: int = 0) -> Interval:
    """Bootstrap interval of a cell's seed-mean metric over its test images."""
    values, point = cell.resampled(n_resamples, seed)
    values = values[~np.isnan(values)]
    low, high = _percentiles(values, level)
    return Interval(point, low, high, level, n_resamples, int(values.size), seed, cell.strata() is not None)


def compare_cells(a: CellScores, b: CellScores, *, n_resamples: int = N_RESAMPLES, level: float = LEVEL, seed: int = 0,
                  higher_is_better: bool | None = None) -> PairedTest:
    """Paired bootstrap "A beats B": both cells must hold the same test images (rows are aligned
    to A's order) and resample the same metric. ``higher_is_better``: default, the task's."""
    if a.metric != b.metric or a.spec.task != b.spec.task:
        raise G2DBenchError(f"paired bootstrap: cells resample different metrics ({a.spec.task} {a.metric} vs {b.spec.task} {b.metric})")
    higher = a.spec.higher_is_better if higher_is_better is None else higher_is_better
    strata_a, strata_b = a.strata(), b.strata()
    same_strata = (strata_a is None) == (strata_b is None) and (strata_a is None or np.array_equal(strata_a, strata_b))
    if np.array_equal(a.sample_ids(), b.sample_ids()) and same_strata:  # same rows in the same order: reuse the resamples
        (va, pa), (vb, pb) = a.resampled(n_resamples, seed), b.resampled(n_resamples, seed)
        return paired_from_values(va, vb, pa, pb, higher_is_better=higher, level=level, seed=seed, stratified=strata_a is not None)
    frames = align([*a.frames, *b.frames], f"{a.spec.task} {a.metric}")
    a_aligned = CellScores(a.spec, frames[: len(a.frames)], a.metric, a.note)
    b_aligned = CellScores(b.spec, frames[len(a.frames) :], b.metric, b.note)
    strata_a, strata_b = a_aligned.strata(), b_aligned.strata()
    if (strata_a is None) != (strata_b is None) or (strata_a is not None and not np.array_equal(strata_a, strata_b)):
        raise G2DBenchError(f"paired bootstrap {a.spec.task} {a.metric}: the two runs disagree on the test labels")
    return paired_bootstrap(a_aligned.statistic(), b_aligned.statistic(), a_aligned.n, higher_is_better=higher,
                            n_resamples=n_resamples, level=level, seed=seed, strata=strata_a)


def cell_interval(records: Sequence[Mapping[str, Any]], metric: str, *, n_resamples: int = N_RESAMPLES,
                  level: float = LEVEL, seed: int = 0) -> tuple[float, float]:
    """(low, high) bootstrap interval of a cell's seed-mean ``metric`` from its records — the
    ``cell_ci(records, metric)`` hook of :func:`g2d_bench.plots.data_efficiency_figures`. Never a
    proxy's interval: raises :class:`~g2d_bench.tasks.rescore.RescoreUnavailable` when the scores
    cannot reproduce ``metric``."""
    from g2d_bench.tasks import rescore

    cell = cell_scores(records, metric)
    if cell.approximate:
        raise rescore.RescoreUnavailable(f"{cell.spec.task} {metric}: no exact interval ({cell.note})")
    ci = cell_ci(cell, n_resamples=n_resamples, level=level, seed=seed)
    return ci.low, ci.high


def cell_interval_or_none(records: Sequence[Mapping[str, Any]], metric: str) -> tuple[float, float] | None:
    """:func:`cell_interval`, or ``None`` where the scores cannot reproduce ``metric`` exactly (the
    plots then draw the seed SD band for that figure)."""
    from g2d_bench.tasks import rescore

    try:
        return cell_interval(records, metric)
    except rescore.RescoreUnavailable:
        return None
