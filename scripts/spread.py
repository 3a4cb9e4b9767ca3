#!/usr/bin/env python
"""Seed-to-seed, run-to-run and thread-count spread of a grid's metric cells: the measurements behind
results/reference/tolerances.yaml (smoke grid) and reference_tolerances.yaml (reference grid).

    python scripts/spread.py --reference RUNS_SEED0 [--repeat RUNS_SEED0_AGAIN] [--threads RUNS_PERTURBED]
                             [--seeds RUNS_SEED1 ...] [--by family|task] [--write-tolerances FILE]

For each metric family (``auc/Edema`` counts as ``auc``; ``--by task``: each task:metric) it prints the
number of reference cells, the largest |Δ| between two runs with the same seed (run-to-run), the
largest |Δ| against the thread-count-perturbed runs (another CPU's kernels reduce in other orders;
no second CPU kind is reachable here, so a changed thread count stands in), and the median, 90th
percentile and maximum |Δ| against each other task seed (the same cell otherwise).

``--write-tolerances`` writes the rule both reference files use, per task:metric:
``max(2 × threads max, seeds max, 0.01)``, rounded up to 3 decimals; per-class metrics
(``auc/<class>``) are left unguarded (null). A task:metric with no measured spread gets no entry
(the file's ``default`` covers it) and is listed on stderr.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np


def _unseeded(key: tuple) -> tuple:
    """A cell's key without its seed (KEY index 5): a cell and its twin under another seed share it."""
    return key[:5] + key[6:]


def spreads(ref: dict, repeat: dict, threads: dict, seeds: list[dict], by: str) -> dict[str, dict[str, list[float]]]:
    groups: dict[str, dict[str, list[float]]] = {}
    twins = []  # per seed folder: unseeded key -> value, the first cell of a key kept
    for other in seeds:
        twins.append({})
        for k, v in other.items():
            twins[-1].setdefault(_unseeded(k), v)
    for key, value in ref.items():
        family = key[3].split("/", 1)[0] if by == "family" else f"{key[1]}:{key[3]}"
        entry = groups.setdefault(family, {"n": [], "run": [], "threads": [], "seed": []})
        entry["n"].append(1)
        if math.isnan(value):
            continue
        if key in repeat and not math.isnan(repeat[key]):
            entry["run"].append(abs(repeat[key] - value))
        if key in threads and not math.isnan(threads[key]):
            entry["threads"].append(abs(threads[key] - value))
        for other in twins:
            twin = other.get(_unseeded(key))
            if twin is not None and not math.isnan(twin):
                entry["seed"].append(abs(twin - value))
    return groups


def tolerances(groups: dict[str, dict[str, list[float]]]) -> dict[str, dict]:
    out = {}
    for name, entry in sorted(groups.items()):
        if "/" in name:
            continue
        if not entry["threads"] and not entry["seed"]:
            print(f"no spread measured for {name}: left to the file's default", file=sys.stderr)
            continue
        threads = max(entry["threads"], default=0.0)
        seed = max(entry["seed"], default=0.0)
        value = math.ceil(round(max(2 * threads, seed, 0.01) * 1000, 6)) / 1000  # round first: 0.06 stays 0.06
        why = (f"threads max |d| {threads:.4f} ({len(entry['threads'])} cells), "
               f"seeds max |d| {seed:.4f} ({len(entry['seed'])} cells)")
        out[name] = {"value": value, "why": why}
    return out


def main() -> None:
    from g2d_bench.records import iter_records
    from g2d_bench.regress import cells

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--repeat", type=Path)
    parser.add_argument("--threads", type=Path)
    parser.add_argument("--seeds", type=Path, nargs="*", default=[])
    parser.add_argument("--by", choices=["family", "task"], default="family")
    parser.add_argument("--write-tolerances", type=Path)
    args = parser.parse_args()
    ref = cells(iter_records(args.reference))
    repeat = cells(iter_records(args.repeat)) if args.repeat else {}
    threads = cells(iter_records(args.threads)) if args.threads else {}
    groups = spreads(ref, repeat, threads, [cells(iter_records(p)) for p in args.seeds], args.by)
    print(f"{'metric':28s} {'cells':>5s} {'run max':>8s} {'thr max':>8s} {'seed med':>8s} {'seed p90':>8s} {'seed max':>8s}")
    for name, entry in sorted(groups.items()):
        seed = np.array(entry["seed"]) if entry["seed"] else np.array([np.nan])
        run = max(entry["run"], default=float("nan"))
        thr = max(entry["threads"], default=float("nan"))
        print(f"{name:28s} {len(entry['n']):5d} {run:8.4f} {thr:8.4f} {np.median(seed):8.4f} {np.percentile(seed, 90):8.4f} {seed.max():8.4f}")
    if args.write_tolerances:
        import yaml

        if args.by != "task":
            parser.error("--write-tolerances needs --by task")
        args.write_tolerances.write_text(yaml.safe_dump({"tolerances": tolerances(groups)}, sort_keys=True, width=200))
        print(f"wrote {args.write_tolerances}")


if __name__ == "__main__":
    main()
