"""Cache benchmark: one epoch read from the preprocessed cache vs one epoch decoding the source files.

    python benchmarks/bench_cache.py [--dataset rsna] [--n 2000] [--size 256]

Generates SynthCXR (in the release's own format) into a temporary folder, builds the cache at
``--size`` px, then times both epochs in this one run and prints the ratio (goal ≥ 5×). Both
epochs produce the same uint8 arrays; the decode epoch is what a loader without the cache does
every epoch (read the file, decode DICOM/JPEG, resize).
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="rsna")
    parser.add_argument("--n", type=int, default=2000)
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--batch", type=int, default=32)
    args = parser.parse_args()

    from g2d_bench.datasets import DATASETS
    from g2d_bench.datasets.cache import CacheSpec, build_cache, preprocess_sample
    from g2d_bench.datasets.synthcxr import generate

    with tempfile.TemporaryDirectory() as tmp:
        root = generate(Path(tmp) / "synth", datasets=[args.dataset], n=args.n, size=args.size)[args.dataset]
        release = DATASETS.get(args.dataset)(root)
        samples = release.samples()
        ids = [s.sample_id for s in samples]
        spec = CacheSpec(args.dataset, "bench", args.size)
        t0 = time.perf_counter()
        cache = build_cache(release, ids, spec, Path(tmp) / "cache")
        build = time.perf_counter() - t0

        order = np.random.default_rng(0).permutation(len(ids))
        t0 = time.perf_counter()
        total = 0
        for start in range(0, len(order), args.batch):
            rows = np.sort(order[start : start + args.batch])
            total += int(np.asarray(cache.images[rows]).sum() > 0)
        cached = time.perf_counter() - t0

        t0 = time.perf_counter()
        for start in range(0, len(order), args.batch):
            batch = [preprocess_sample(release, samples[i], spec)[0] for i in order[start : start + args.batch]]
            total += int(np.stack(batch).sum() > 0)
        decoded = time.perf_counter() - t0

    print(f"{args.dataset}: {len(ids)} images at {args.size}px")
    print(f"  cache build (once):     {build:7.2f} s")
    print(f"  epoch decoding files:   {decoded:7.2f} s  ({len(ids) / decoded:8.0f} img/s)")
    print(f"  epoch from the cache:   {cached:7.3f} s  ({len(ids) / cached:8.0f} img/s)")
    print(f"  ratio (decode / cache): {decoded / cached:7.1f}x   (goal >= 5x)")


if __name__ == "__main__":
    main()
