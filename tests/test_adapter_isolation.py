"""Runs of a sweep share one adapter per method and never change it: a task that trains encoder
weights (fine-tuning) works on its own copy, so a linear probe after it gives the number it gave
before (issue: "runs do not share mutable adapters")."""
import json

import pytest
import torch

from g2d_bench.runner import RunConfig, build_adapter, run
from g2d_bench.task import Hyper, TaskContext, TaskResult, TaskSpec
from g2d_bench.tasks import TASKS


def fine_tune_like(ctx: TaskContext) -> TaskResult:
    """Everything a fine-tuning task does to an encoder, to its own copy: train mode, big optimizer
    steps on every weight, BatchNorm statistics updated by forward passes."""
    import pandas as pd

    encoder = ctx.adapter.trainable_encoder().train()
    optimizer = torch.optim.SGD(encoder.parameters(), lr=1.0)
    x = ctx.adapter.normalize(torch.rand(4, 1, 64, 64))
    for _ in range(2):
        loss = sum(f.square().mean() for f in encoder(x)[1:])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return TaskResult(metrics={"score": 0.5}, per_sample=pd.DataFrame({"sample_id": ["a"], "score": [0.5]}))


FINE_TUNE_LIKE = TaskSpec(name="fine-tune-like", version=1, family="test", dataset="rsna", split="g2d", protocol="test",
                          metrics=("score",), primary="score", run=f"{__name__}:fine_tune_like",
                          hparams={"image_size": Hyper(64, "test")})


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("G2D_BENCH_SYNTH_N", "120")
    return tmp_path / "cache"


def test_a_fine_tune_between_two_linear_runs_leaves_the_second_unchanged(home, tmp_path):
    torch.set_num_threads(1)
    base = RunConfig(method="random", task="rsna-cls", fraction=1.0, arch="resnet18", image_size=64, overrides={"max_epochs": 3},
                     out=tmp_path / "runs", home=home, progress=False, device="cpu")
    adapter = build_adapter(base, "cpu")
    weights = {k: v.clone() for k, v in adapter.backbone.state_dict().items()}
    first = json.loads(run(base).read_text())["metrics"]
    with TASKS.temporarily("fine-tune-like", FINE_TUNE_LIKE):
        from dataclasses import replace

        run(replace(base, task="fine-tune-like", overrides={}, out=tmp_path / "other"))
    assert build_adapter(base, "cpu") is adapter  # the sweep's shared adapter ...
    assert not adapter.backbone.training  # ... still in eval mode
    for key, value in adapter.backbone.state_dict().items():  # ... with its weights and BN statistics
        assert torch.equal(value, weights[key]), key
    second = json.loads(run(base).read_text())["metrics"]
    assert second == first
