"""Speed of the dense heads: images/s of a segmentation and a detection training step relative to
the bare frozen-encoder forward pass on the same batches.

    python benchmarks/bench_dense_heads.py                     # resnet50@224 and resnet18@128
    python benchmarks/bench_dense_heads.py --configs resnet18@64 --steps 3
    python benchmarks/bench_dense_heads.py --epoch --configs resnet18@96 resnet18@128   # whole epochs

For each config it times, on identical random batches (channels_last, CPU threads as set; median
over batches, the three take turns on each batch):
``encoder``: the frozen encoder alone (eval, no_grad) — the floor every dense task pays;
``seg``: U-Net step (frozen encoder under no_grad + decoder forward/backward + AdamW);
``det``: YOLOv3 step (frozen encoder + MGCA head forward/backward + YOLO loss + AdamW);
``det cached``: the same step on stored encoder outputs (the task's feature cache: detection's
training images are never augmented, so the encoder runs once per run, not per step).
``overhead`` = step time / encoder time − 1: what the head adds, in units of the encoder's cost
(goal: ≤ 1.5 at resnet50@224).

``--epoch`` times the tasks' own ``run`` instead (``siim-seg`` and ``rsna-det`` settings: batch 8
and 16, MGCA head widths) on synthetic data (``--n-train``/``--n-valid`` images) for ``--epochs``
epochs, once with the frozen-encoder feature cache off (``feature_cache_mb=0``) and once on:
``setup`` = everything before the first epoch (model, building the cache), then each epoch's
``train`` and ``valid`` seconds. It also runs against older versions of the tasks (which ignore
``feature_cache_mb``), for before/after comparisons.
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def make_adapter(arch: str, size: int, batch: int):
    import torch
    import torchvision

    from g2d_bench.adapter import MethodAdapter, Preprocess

    torch.manual_seed(0)
    net = getattr(torchvision.models, arch)()
    # calibrate BN on a few batches: a fresh ResNet in eval mode explodes and runs slow (ENVIRONMENT.md)
    net.train()
    with torch.no_grad():
        for _ in range(2):
            net(torch.randn(batch, 3, size, size))
    net.eval().to(memory_format=torch.channels_last)
    return MethodAdapter(name="bench", arch=arch, backbone=net, preprocess=Preprocess(), checkpoint_hash="0" * 64)


def timed(fns: dict, steps: int, clock=time.perf_counter) -> dict[str, float]:
    """Median seconds per batch of each ``fn(i)``. The functions take turns on each batch, so load
    from other processes hits all of them alike (the machines are shared); batch 0 is a warm-up."""
    times: dict[str, list[float]] = {name: [] for name in fns}
    for i in range(steps + 1):
        for name, fn in fns.items():
            start = clock()
            fn(i)
            if i:
                times[name].append(clock() - start)
    return {name: float(np.median(t)) for name, t in times.items()}


def bench(arch: str, size: int, batch: int, steps: int, clock=time.perf_counter) -> dict[str, float]:
    import torch

    from g2d_bench.tasks import detection as det
    from g2d_bench.tasks import segmentation as seg

    adapter = make_adapter(arch, size, batch)
    rng = np.random.default_rng(0)
    xs = [adapter.normalize(torch.rand(batch, 1, size, size)).contiguous(memory_format=torch.channels_last) for _ in range(steps + 1)]
    masks = [torch.from_numpy((rng.random((batch, 1, size, size)) > 0.9).astype(np.float32)) for _ in xs]
    boxes = [[torch.tensor([[size * 0.2, size * 0.3, size * 0.6, size * 0.7]])] * batch for _ in xs]

    frozen = adapter.trainable_encoder().eval().to(memory_format=torch.channels_last)

    def encoder(i):
        with torch.no_grad():
            det.head_stages(frozen, xs[i])

    unet = seg.build_unet(adapter).to(memory_format=torch.channels_last)
    seg.set_train_mode(unet, True)
    seg_opt = torch.optim.AdamW([p for p in unet.parameters() if p.requires_grad], lr=2e-4)

    def seg_step(i):
        loss = seg.segmentation_loss(seg.forward_frozen(unet, xs[i]), masks[i])
        seg_opt.zero_grad(set_to_none=True)
        loss.backward()
        seg_opt.step()

    model = det.build_detector(adapter).train()  # encoder channels_last, head NCHW (faster on CPU)
    det_opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-4)
    anchors = det.scaled_anchors(size)
    hp = {k: det.COMMON[k].value for k in ("ignore_threshold", "anchor_iou_plus_one", "lambda_xy", "lambda_wh", "lambda_conf", "lambda_cls", "noobj_weight")}

    def det_step(i, features=None):
        maps = model(xs[i]) if features is None else model.head(features[i])
        loss = sum(det.yolo_loss(m, boxes[i], anchors[k], size, hp) for k, m in enumerate(maps))
        det_opt.zero_grad(set_to_none=True)
        loss.backward()
        det_opt.step()

    with torch.no_grad():  # what the feature cache holds (detection: training images are not augmented)
        stored = [det.head_stages(model.encoder.eval(), x) for x in xs]
    model.train()
    seconds = timed({"encoder": encoder, "seg": seg_step, "det": det_step, "det_cached": lambda i: det_step(i, stored)}, steps, clock)
    return {name: batch / s for name, s in seconds.items()} | {
        f"{name}_overhead": seconds[name] / seconds["encoder"] - 1 for name in ("seg", "det", "det_cached")
    }


def synthetic_ctx(task: str, adapter, size: int, n_train: int, n_valid: int, cache_mb: int, epochs: int):
    """A TaskContext over random images with one bright square (mask and box) in every other one
    (8 test images: the test pass is not timed)."""
    import logging
    import tempfile
    from pathlib import Path

    from g2d_bench.task import SplitArrays, TaskContext
    from g2d_bench.tasks import detection as det
    from g2d_bench.tasks import segmentation as seg

    def split(n: int, seed: int) -> SplitArrays:
        rng = np.random.default_rng(seed)
        images = rng.normal(60, 10, (n, size, size)).clip(0, 255).astype(np.uint8)
        masks, boxes = np.zeros((n, size, size), np.uint8), []
        for i in range(n):
            side = int(rng.integers(size // 6, size // 3))
            x, y = rng.integers(0, size - side, 2)
            if i % 2:
                boxes.append(np.zeros((0, 4), np.float32))
                continue
            images[i, y : y + side, x : x + side], masks[i, y : y + side, x : x + side] = 200, 1
            boxes.append(np.array([[x, y, x + side, y + side]], np.float32))
        return SplitArrays([f"{seed}-{i}" for i in range(n)], images, None, masks, boxes)

    data = {"train": split(n_train, 1), "valid": split(n_valid, 2), "test": split(8, 3)}
    spec = seg.SIIM_SEG if task == "seg" else det.RSNA_DET
    hp = {"max_epochs": epochs, "patience": epochs, "image_size": size, "feature_cache_mb": cache_mb}
    return TaskContext(spec=spec, adapter=adapter, data=data.__getitem__, fraction=1.0, seed=0, device="cpu",
                       workdir=Path(tempfile.gettempdir()), overrides=hp, log=logging.getLogger("bench"))


def bench_epochs(arch: str, size: int, task: str, cache_mb: int, n_train: int, n_valid: int, epochs: int,
                 clock=time.perf_counter) -> dict[str, list[float]]:
    """Seconds of ``setup`` (the task's ``run`` up to its first epoch: model, feature cache) and of
    each epoch's ``train`` and ``valid``, measured by wrapping the callbacks the task hands to
    ``segmentation.fit_head``; the task builds its model itself, as in a real run."""
    import segmentation_models_pytorch  # noqa: F401  (imported here, not inside the timed setup)

    from g2d_bench.tasks import detection as det
    from g2d_bench.tasks import segmentation as seg

    ctx = synthetic_ctx(task, make_adapter(arch, size, 8), size, n_train, n_valid, cache_mb, epochs)
    times: dict[str, list[float]] = {"setup": [], "train": [], "valid": []}

    def timer(name, fn):
        def wrapped(*args):
            start = clock()
            out = fn(*args)
            times[name].append(clock() - start)
            return out
        return wrapped

    fit_head = seg.fit_head

    def timed_fit_head(ctx, model, train_epoch, validate, *args, **kwargs):
        times["setup"].append(clock() - begin)
        return fit_head(ctx, model, timer("train", train_epoch), timer("valid", validate), *args, **kwargs)

    seg.fit_head = det.fit_head = timed_fit_head  # (older versions of detection import it at call time)
    try:
        begin = clock()
        (seg if task == "seg" else det).run(ctx)
    finally:
        seg.fit_head = det.fit_head = fit_head
    return times


def main_epochs(args, clock) -> None:
    print(f"{args.n_train} train / {args.n_valid} valid images, seconds; 'first' = setup + epoch 1, 'later' = mean of the other epochs")
    print(f"{'config':<14}{'task':<5}{'cache':<6}{'setup':>8}{'train':>8}{'valid':>8}{'first':>8}{'later':>8}")
    for config in args.configs:
        arch, size = config.split("@")
        for task in ("seg", "det"):
            for cache_mb in (0, 4096):
                t = bench_epochs(arch, int(size), task, cache_mb, args.n_train, args.n_valid, args.epochs, clock)
                epoch = [a + b for a, b in zip(t["train"], t["valid"])]
                later = float(np.mean(epoch[1:])) if len(epoch) > 1 else float("nan")
                print(f"{config:<14}{task:<5}{'on' if cache_mb else 'off':<6}{t['setup'][0]:>8.1f}{np.mean(t['train'][1:] or t['train']):>8.1f}"
                      f"{np.mean(t['valid'][1:] or t['valid']):>8.1f}{t['setup'][0] + epoch[0]:>8.1f}{later:>8.1f}", flush=True)


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["resnet50@224", "resnet18@128"], help="arch@size")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4, help="timed batches per measurement (after 1 warm-up)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: process CPU time, robust to other processes on a shared machine (use with --threads 1)")
    parser.add_argument("--epoch", action="store_true", help="time whole training epochs of the tasks, cache off and on")
    parser.add_argument("--n-train", type=int, default=128, help="--epoch: training images")
    parser.add_argument("--n-valid", type=int, default=32, help="--epoch: validation images")
    parser.add_argument("--epochs", type=int, default=2, help="--epoch: epochs per run")
    args = parser.parse_args()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.epoch:
        print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, {args.clock} clock")
        return main_epochs(args, clock)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, {args.clock} clock, images/s")
    print(f"{'config':<14}{'encoder':>9}{'seg':>9}{'det':>9}{'det cached':>12}{'seg overhead':>14}{'det overhead':>14}{'det cached ovh':>16}")
    for config in args.configs:
        arch, size = config.split("@")
        r = bench(arch, int(size), args.batch, args.steps, clock)
        print(f"{config:<14}{r['encoder']:>9.1f}{r['seg']:>9.1f}{r['det']:>9.1f}{r['det_cached']:>12.1f}"
              f"{r['seg_overhead']:>13.2f}x{r['det_overhead']:>13.2f}x{r['det_cached_overhead']:>15.2f}x")


if __name__ == "__main__":
    main()
