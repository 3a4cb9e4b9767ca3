"""Every pretraining recipe under DDP: two gloo processes, each with half the batch, give the loss
and (after DDP's gradient averaging) the gradients of one process on the union batch — the
contrastive negatives are gathered exactly (methods/common/contrastive.py).

Models run in eval mode: BatchNorm then normalises each sample with running statistics and dropout
is off, so every term that does not couple the samples is per-sample, and what is left to differ
between one and two processes is exactly what the gathering must get right (the engine's docstring:
per-rank BatchNorm in training mode is the official codes' behaviour and is not equal)."""
import socket

import numpy as np
import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from g2d_bench.methods import METHODS, pretrainable

WORLD = 2
REPORTS = ["FINDINGS: small right pneumothorax. IMPRESSION: pneumothorax.", "FINDINGS: no effusion. IMPRESSION: normal chest.",
           "FINDINGS: left lower lobe opacity. IMPRESSION: pneumonia.", "FINDINGS: heart is enlarged. IMPRESSION: cardiomegaly."]


def _setup(name: str):
    """The recipe's tiny model (same weights in every process), the union batch and its tokens."""
    recipe = METHODS.get(name).get_recipe()
    config = recipe.make_config("paper", "cpu", recipe.tiny)
    torch.manual_seed(0)
    model = recipe.build(config, REPORTS * 4).eval()
    size = getattr(config, "image_size", 64)
    images = torch.from_numpy(np.random.default_rng(0).random((4, 1, size, size), dtype=np.float32))
    return model, images, model.tokenize(REPORTS)


def _loss(model, images, tokens):
    out = model(images, **tokens, step=10_000, epoch=10)  # past every warm-up and freeze
    return out["loss"]


def _worker(rank: int, port: int, out: str, names: list[str]) -> None:
    from torch.nn.parallel import DistributedDataParallel as DDP

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    results = {}
    for name in names:
        model, images, tokens = _setup(name)
        half = slice(rank * 2, rank * 2 + 2)
        ddp = DDP(model, find_unused_parameters=True)
        loss = ddp(images[half], **{k: v[half] for k, v in tokens.items()}, step=10_000, epoch=10)["loss"]
        loss.backward()
        results[name] = {"loss": loss.detach(), "grads": {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}}
    torch.save(results, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ranks(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(out), pretrainable()), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


@pytest.mark.parametrize("name", pretrainable())
def test_two_processes_equal_one_process_on_the_union_batch(ranks, name):
    torch.set_num_threads(1)
    model, images, tokens = _setup(name)
    loss = _loss(model, images, tokens)
    loss.backward()
    grads = {n: p.grad for n, p in model.named_parameters() if p.grad is not None}
    assert grads, "no parameter got a gradient"
    # per-sample terms are means over each rank's half (the two halves average to the union's);
    # the gathered contrastive terms are the union's on every rank
    assert sum(rank[name]["loss"].item() for rank in ranks) / len(ranks) == pytest.approx(loss.item(), rel=1e-4, abs=1e-5)
    for rank in ranks:
        got = rank[name]
        assert set(got["grads"]) == set(grads)
        for key, grad in grads.items():
            torch.testing.assert_close(got["grads"][key], grad, atol=1e-5, rtol=1e-3, msg=lambda m: f"{key}: {m}")
