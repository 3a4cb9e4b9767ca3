#!/usr/bin/env python
"""Seed-to-seed and run-to-run spread of a grid's metric cells, per metric family: the measurements
behind results/reference/tolerances.yaml.

    python scripts/smoke_spread.py --reference RUNS_SEED0 --repeat RUNS_SEED0_AGAIN --seeds RUNS_SEED1 RUNS_SEED2

For each metric family (``auc/Edema`` counts as ``auc``) it prints: the number of cells, the largest
|Δ| between two runs with the same seed (run-to-run), and the median, 90th percentile and maximum of
|Δ| between the reference seed and each other seed (the same cell otherwise).
"""
from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np


def main() -> None:
    from g2d_bench.records import iter_records
    from g2d_bench.regress import cells

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--repeat", type=Path)
    parser.add_argument("--seeds", type=Path, nargs="+", required=True)
    args = parser.parse_args()
    ref = cells(iter_records(args.reference))
    repeat = cells(iter_records(args.repeat)) if args.repeat else {}
    others = [cells(iter_records(p)) for p in args.seeds]
    families: dict[str, dict[str, list[float]]] = {}
    for key, value in ref.items():
        family = key[3].split("/", 1)[0]
        entry = families.setdefault(family, {"run": [], "seed": []})
        if key in repeat:
            entry["run"].append(abs(repeat[key] - value))
        for other in others:
            twin = next((v for k, v in other.items() if k[:5] == key[:5] and k[6:] == key[6:]), None)  # all but the seed
            if twin is not None and not (math.isnan(twin) or math.isnan(value)):
                entry["seed"].append(abs(twin - value))
    print(f"{'metric':14s} {'cells':>5s} {'run max':>8s} {'seed med':>8s} {'seed p90':>8s} {'seed max':>8s}")
    for family, entry in sorted(families.items()):
        seed = np.array(entry["seed"]) if entry["seed"] else np.array([np.nan])
        run = max(entry["run"], default=float("nan"))
        n = sum(1 for k in ref if k[3].split("/", 1)[0] == family)
        print(f"{family:14s} {n:5d} {run:8.4f} {np.median(seed):8.4f} {np.percentile(seed, 90):8.4f} {seed.max():8.4f}")


if __name__ == "__main__":
    main()
