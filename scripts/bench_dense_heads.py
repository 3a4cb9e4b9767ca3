"""Speed of the dense heads: images/s of a segmentation and a detection training step relative to
the bare frozen-encoder forward pass on the same batches.

    python scripts/bench_dense_heads.py                     # resnet50@224 and resnet18@128
    python scripts/bench_dense_heads.py --configs resnet18@64 --steps 3

For each config it times, on identical random batches (channels_last, CPU threads as set; median
over batches, the three take turns on each batch):
``encoder``: the frozen encoder alone (eval, no_grad) — the floor every dense task pays;
``seg``: U-Net step (frozen encoder under no_grad + decoder forward/backward + AdamW);
``det``: YOLOv3 step (frozen encoder + MGCA head forward/backward + YOLO loss + AdamW).
``overhead`` = step time / encoder time − 1: what the head adds, in units of the encoder's cost
(goal: ≤ 1.5 at resnet50@224).
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

    def encoder(i):
        with torch.no_grad():
            det.resnet_stages(adapter.backbone, xs[i])

    unet = seg.build_unet(adapter).to(memory_format=torch.channels_last)
    seg.set_train_mode(unet, True)
    seg_opt = torch.optim.AdamW([p for p in unet.parameters() if p.requires_grad], lr=2e-4)

    def seg_step(i):
        loss = seg.segmentation_loss(seg.forward_frozen(unet, xs[i]), masks[i])
        seg_opt.zero_grad(set_to_none=True)
        loss.backward()
        seg_opt.step()

    model = det.build_detector(adapter).to(memory_format=torch.channels_last).train()
    det_opt = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=5e-4)
    anchors = det.scaled_anchors(size)
    hp = {k: det.COMMON[k].value for k in ("ignore_threshold", "anchor_iou_plus_one", "lambda_xy", "lambda_wh", "lambda_conf", "lambda_cls", "noobj_weight")}

    def det_step(i):
        loss = sum(det.yolo_loss(m, boxes[i], anchors[k], size, hp) for k, m in enumerate(model(xs[i])))
        det_opt.zero_grad(set_to_none=True)
        loss.backward()
        det_opt.step()

    seconds = timed({"encoder": encoder, "seg": seg_step, "det": det_step}, steps, clock)
    return {name: batch / s for name, s in seconds.items()} | {
        f"{name}_overhead": seconds[name] / seconds["encoder"] - 1 for name in ("seg", "det")
    }


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--configs", nargs="+", default=["resnet50@224", "resnet18@128"], help="arch@size")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--steps", type=int, default=4, help="timed batches per measurement (after 1 warm-up)")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="wall",
                        help="cpu: process CPU time, robust to other processes on a shared machine (use with --threads 1)")
    args = parser.parse_args()
    clock = time.process_time if args.clock == "cpu" else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, batch {args.batch}, {args.clock} clock, images/s")
    print(f"{'config':<14}{'encoder':>9}{'seg':>9}{'det':>9}{'seg overhead':>14}{'det overhead':>14}")
    for config in args.configs:
        arch, size = config.split("@")
        r = bench(arch, int(size), args.batch, args.steps, clock)
        print(f"{config:<14}{r['encoder']:>9.1f}{r['seg']:>9.1f}{r['det']:>9.1f}{r['seg_overhead']:>13.2f}x{r['det_overhead']:>13.2f}x")


if __name__ == "__main__":
    main()
