"""Two gloo processes on CPU, each with half a batch, reproduce the single-process loss and the
single-process gradient on the union batch (after DDP's gradient averaging)."""
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn
from torch.nn.parallel import DistributedDataParallel as DDP

from g2d_bench.methods.g2d.losses import pa_loss, vla_loss

N, WORLD = 8, 2
SETTINGS = [("mean", "all"), ("sum", "all"), ("mean", "local")]


class _Tiny(nn.Module):
    """Image/text projections and a one-conv 'decoder': VLA + PA like G2D's forward."""

    def __init__(self, reduction: str, gather: str) -> None:
        super().__init__()
        self.img, self.txt = nn.Linear(6, 4), nn.Linear(5, 4)
        self.seg = nn.Conv2d(1, 1, 3, padding=1)
        self.reduction, self.gather = reduction, gather

    def forward(self, x, y, maps, masks):
        vla = vla_loss(self.img(x), self.txt(y), 0.07, self.reduction, self.gather)
        return vla + pa_loss(self.seg(maps), masks), vla


def _data():
    gen = torch.Generator().manual_seed(1)
    return (torch.randn(N, 6, generator=gen), torch.randn(N, 5, generator=gen),
            torch.randn(N, 1, 6, 6, generator=gen), (torch.rand(N, 1, 6, 6, generator=gen) > 0.7).float())


def _model(reduction: str, gather: str) -> _Tiny:
    torch.manual_seed(0)
    return _Tiny(reduction, gather)


def _worker(rank: int, port: int, out: str) -> None:
    torch.set_num_threads(1)  # two processes on a 2-core machine
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=WORLD)
    data = [t[rank * N // WORLD:(rank + 1) * N // WORLD] for t in _data()]
    results = {}
    for reduction, gather in SETTINGS:
        model = _model(reduction, gather)
        ddp = DDP(model)  # keep a reference: its reducer averages the gradients in backward
        loss, vla = ddp(*data)
        loss.backward()
        results[(reduction, gather)] = {"vla": vla.detach(), "grads": {n: p.grad.clone() for n, p in model.named_parameters()}}
    torch.save(results, f"{out}/rank{rank}.pt")
    dist.destroy_process_group()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def ddp_results(tmp_path_factory):
    out = tmp_path_factory.mktemp("ddp")
    mp.spawn(_worker, args=(_free_port(), str(out)), nprocs=WORLD, join=True)
    return [torch.load(out / f"rank{r}.pt", weights_only=True) for r in range(WORLD)]


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_gather_all_equals_single_process_union_batch(ddp_results, reduction):
    model = _model(reduction, "all")
    loss, vla = model(*_data())
    loss.backward()
    for rank in ddp_results:
        got = rank[(reduction, "all")]
        assert got["vla"].item() == pytest.approx(vla.item(), abs=1e-5)  # every rank: the full loss
        for name, p in model.named_parameters():
            torch.testing.assert_close(got["grads"][name], p.grad, atol=1e-5, rtol=1e-5)


def test_gather_local_is_the_mean_of_per_rank_losses(ddp_results):
    model = _model("mean", "local")
    data = _data()
    halves = [model(*[t[r * N // WORLD:(r + 1) * N // WORLD] for t in data]) for r in range(WORLD)]
    (sum(h[0] for h in halves) / WORLD).backward()
    for r, rank in enumerate(ddp_results):
        got = rank[("mean", "local")]
        assert got["vla"].item() == pytest.approx(halves[r][1].item(), abs=1e-5)
        for name, p in model.named_parameters():
            torch.testing.assert_close(got["grads"][name], p.grad, atol=1e-5, rtol=1e-5)
    # and local negatives are not the union-batch loss
    union = _model("mean", "local")(*data)[1].item()
    assert abs(sum(h[1].item() for h in halves) / WORLD - union) > 1e-3
