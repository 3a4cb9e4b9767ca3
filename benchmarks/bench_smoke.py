#!/usr/bin/env python
"""Wall time of the smoke grid on an empty cache — SynthCXR generation and the tiny pretraining of
every quick model included — against its 5-minute goal, and whether two runs with the same seed on
one machine give identical numbers.

    python benchmarks/bench_smoke.py [--grid smoke] [--repeats 2]

Each repeat runs ``g2d-bench sweep --grid smoke`` as a subprocess on a fresh cache and results
folder; the metric cells of every repeat are compared with the first's.
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> None:
    from g2d_bench.records import iter_records
    from g2d_bench.regress import cells

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", default="smoke")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--goal-s", type=float, default=300.0)
    args = parser.parse_args()
    first = None
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="bench-smoke-") as tmp:
            env = {**os.environ, "G2D_BENCH_CACHE": str(Path(tmp) / "cache")}
            start = time.perf_counter()
            subprocess.run([sys.executable, "-m", "g2d_bench.cli", "sweep", "--grid", args.grid, "--out", str(Path(tmp) / "runs"),
                            "--no-progress"], env=env, check=True, stdout=subprocess.DEVNULL)
            wall = time.perf_counter() - start
            found = cells(iter_records(Path(tmp) / "runs"))
        same = "" if first is None else f"; identical to run 1: {found == first} ({sum(found.get(k) == v for k, v in first.items())}/{len(first)} cells)"
        first = first or found
        print(f"run {repeat + 1}: {wall:.0f} s for {len(found)} metric cells (goal <= {args.goal_s:.0f} s: "
              f"{'met' if wall <= args.goal_s else 'missed'}){same}", flush=True)


if __name__ == "__main__":
    main()
