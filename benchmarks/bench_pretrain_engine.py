#!/usr/bin/env python
"""Pretraining engine speed per recipe: images/s of ``g2d-bench pretrain``'s loop vs a bare
forward/backward/optimizer-step loop of the same model on the same batch size (goal ≥ 0.9×).

    python benchmarks/bench_pretrain_engine.py [--methods g2d,convirt,gloria,mgca] [--steps 20] [--warmup 5] [--batch 32]

Both run in this process, on SynthCXR's MIMIC-format copy at CPU scale (ResNet-18, 96 px), the
scratch BERT without its MLM warm-up (``scratch_mlm_steps=0``: model build time is not step time).
The engine's step times come from its ``after_step`` hook (wall time between consecutive steps,
so data loading, augmentation, tokenisation, logging and the LR schedule are inside); the bare loop
reuses one pre-augmented, pre-tokenised batch (texts through the recipe's ``text_transform``, as the
engine feeds them). Each method is measured ``--repeats`` times in turns
(engine, bare, engine, bare …) and the median ratio printed.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path


def engine_rate(method: str, steps: int, warmup: int, batch: int, home: Path) -> float:
    """Images/s of the engine's steps after ``warmup`` steps."""
    from g2d_bench.methods import METHODS
    from g2d_bench.pretrain import PretrainConfig, pretrain

    recipe = METHODS.get(method).get_recipe()
    stamps: list[float] = []
    had = "after_step" in vars(recipe)
    previous = getattr(recipe, "after_step", None)

    def after_step(model, step, epoch):
        if previous is not None:
            previous(model, step, epoch)
        stamps.append(time.perf_counter())

    recipe.after_step = after_step
    try:
        with tempfile.TemporaryDirectory() as out:
            pretrain(PretrainConfig(method=method, out=Path(out), scale="cpu", batch_size=batch, max_steps=warmup + steps,
                                    checkpoint_every=10**9, progress=False, method_overrides={"scratch_mlm_steps": 0}), home)
    finally:
        if had:
            recipe.after_step = previous
        else:
            del recipe.after_step
    gaps = [b - a for a, b in zip(stamps[warmup:], stamps[warmup + 1:])]
    return batch / statistics.median(gaps)


def bare_rate(method: str, steps: int, warmup: int, batch: int, home: Path) -> float:
    """Images/s of forward/backward/step on one fixed batch of the same model and optimiser."""
    import torch

    from g2d_bench.methods import METHODS
    from g2d_bench.pretrain import PretrainConfig, load_pairs, make_optimizer

    recipe = METHODS.get(method).get_recipe()
    config = recipe.make_config("paper", "cpu", {"scratch_mlm_steps": 0})
    opt = recipe.optimisation(config)
    images, reports, _ = load_pairs(PretrainConfig(method=method, scale="cpu", progress=False), opt["cache_size"], home)
    torch.manual_seed(0)
    model = recipe.build(config, reports).to(memory_format=torch.channels_last).train()
    transform = recipe.augmentations(config)
    x = torch.stack([transform(torch.from_numpy(images[i][None].copy())) for i in range(batch)]).contiguous(memory_format=torch.channels_last)
    # the texts the engine feeds: the recipe's text transform (GLoRIA and ConVIRT sample one sentence
    # per report) applied once, so the bare loop runs the same sequence lengths
    text_transform = getattr(recipe, "text_transform", None)
    sample = text_transform(config) if text_transform is not None else None
    texts = reports[:batch] if sample is None else [sample(r) or r for r in reports[:batch]]
    tokens = model.tokenize(texts)
    optimizer = make_optimizer(recipe, model, opt, opt["lr"])
    after_backward = getattr(recipe, "after_backward", None)
    times = []
    for step in range(warmup + steps):
        start = time.perf_counter()
        out = model(x, **tokens, step=10_000, epoch=10)
        optimizer.zero_grad(set_to_none=True)
        out["loss"].backward()
        if after_backward is not None:  # part of the method's step (GLoRIA clips gradients), not engine overhead
            after_backward(model, step, 10)
        optimizer.step()
        times.append(time.perf_counter() - start)
    return batch / statistics.median(times[warmup:])


def main() -> None:
    from g2d_bench.data import cache_home
    from g2d_bench.methods import pretrainable

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--methods", default=",".join(pretrainable()))
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    home = cache_home()
    print(f"{'method':10s} {'engine img/s':>13s} {'bare img/s':>11s} {'engine/bare':>12s}")
    for method in args.methods.split(","):
        engine, bare = [], []
        for _ in range(args.repeats):
            engine.append(engine_rate(method, args.steps, args.warmup, args.batch, home))
            bare.append(bare_rate(method, args.steps, args.warmup, args.batch, home))
        ratios = [e / b for e, b in zip(engine, bare)]
        print(f"{method:10s} {statistics.median(engine):13.1f} {statistics.median(bare):11.1f} {statistics.median(ratios):12.2f}"
              f"   (ratios {', '.join(f'{r:.2f}' for r in ratios)})", flush=True)


if __name__ == "__main__":
    main()
