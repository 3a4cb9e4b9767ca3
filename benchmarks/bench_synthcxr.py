#!/usr/bin/env python
"""SynthCXR generation throughput and, optionally, its difficulty probes.

    python benchmarks/bench_synthcxr.py                       # 2,000 RSNA images at 256 px (DICOM: the slowest)
    python benchmarks/bench_synthcxr.py --datasets all --n 500
    python benchmarks/bench_synthcxr.py --probe --probe-n 3000 # histogram / raw-pixel probe AUCs per finding

Throughput is wall time of ``generate`` per dataset (drawing, encoding, label files and the truth
sidecar), on whatever CPU this runs on; the docs quote the numbers measured on the project's
2-core machines.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path


def _args(argv: list[str] | None) -> argparse.Namespace:
    from g2d_bench.datasets.synthcxr import DATASET_NAMES

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--datasets", nargs="+", default=["rsna"], help=f"'all' or some of {', '.join(DATASET_NAMES)}")
    parser.add_argument("--n", type=int, default=2000, help="images per dataset")
    parser.add_argument("--size", type=int, default=256, help="image side in pixels")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=1, help="drawing processes (the output is the same)")
    parser.add_argument("--out", type=Path, default=None, help="output folder (default: a temporary one, deleted)")
    parser.add_argument("--probe", action="store_true", help="also run the difficulty probes")
    parser.add_argument("--probe-n", type=int, default=3000, help="images of the probe population")
    parser.add_argument("--probe-size", type=int, default=64)
    args = parser.parse_args(argv)
    if args.datasets == ["all"]:
        args.datasets = list(DATASET_NAMES)
    return args


def bench_generation(args: argparse.Namespace, out: Path) -> None:
    from g2d_bench.datasets.synthcxr import generate

    print(f"{'dataset':<12} {'images':>7} {'size':>5} {'workers':>7} {'seconds':>8} {'img/s':>7} {'MB':>7}")
    for name in args.datasets:
        start = time.perf_counter()
        root = generate(out, [name], n=args.n, size=args.size, seed=args.seed, workers=args.workers)[name]
        seconds = time.perf_counter() - start
        megabytes = sum(p.stat().st_size for p in root.rglob("*") if p.is_file()) / 1e6
        print(f"{name:<12} {args.n:>7} {args.size:>5} {args.workers:>7} {seconds:>8.1f} {args.n / seconds:>7.1f} "
              f"{megabytes:>7.1f}", flush=True)


def bench_probes(args: argparse.Namespace) -> None:
    import numpy as np

    from g2d_bench.datasets.synthcxr import probes
    from g2d_bench.datasets.synthcxr.population import GATE_FINDINGS, HARD_FINDINGS

    start = time.perf_counter()
    images, truth = probes.render_population("gate", args.probe_n, size=args.probe_size, seed=args.seed)
    hist = probes.probe_aucs(probes.histogram_features(images), truth, GATE_FINDINGS, c=1.0)
    raw = probes.probe_aucs(probes.pixel_features(images), truth, GATE_FINDINGS, c=0.01)
    print(f"\nprobes: {args.probe_n} gate-population images at {args.probe_size} px, 5-fold CV AUC "
          f"({time.perf_counter() - start:.0f} s)")
    print(f"{'finding':<15} {'prevalence':>10} {'histogram':>9} {'raw pixels':>10}")
    for name in GATE_FINDINGS:
        prevalence = np.mean([name in t for t in truth])
        print(f"{name:<15} {prevalence:>10.3f} {hist[name]:>9.3f} {raw[name]:>10.3f}")
    print(f"{'macro (all)':<15} {'':>10} {np.mean(list(hist.values())):>9.3f} {np.mean(list(raw.values())):>10.3f}")
    hard = [raw[k] for k in HARD_FINDINGS]
    print(f"{'macro (hard)':<15} {'':>10} {np.mean([hist[k] for k in HARD_FINDINGS]):>9.3f} {np.mean(hard):>10.3f}")


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("OMP_NUM_THREADS", "2")
    args = _args(argv)
    if args.out is None:
        with tempfile.TemporaryDirectory(prefix="synthcxr-bench-") as tmp:
            bench_generation(args, Path(tmp))
    else:
        bench_generation(args, args.out)
    if args.probe:
        bench_probes(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
