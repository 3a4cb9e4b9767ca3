"""The pretraining engine with a tiny stand-in method: schedules, exact resume, NaN guard, checkpoints."""
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch

import g2d_bench.pretrain as engine
from g2d_bench.errors import G2DBenchError
from g2d_bench.method import MethodEntry
from g2d_bench.methods import METHODS
from g2d_bench.pretrain import PretrainConfig, lr_factor, pretrain


@dataclass
class TinyConfig:
    dim: int = 8
    nan_at: int = -1
    nan_rank: int = -1  # -1: every rank; else only this torch.distributed rank


class TinyModel(torch.nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.conv = torch.nn.Conv2d(1, config.dim, 3, stride=4)
        self.words = torch.nn.EmbeddingBag(50, config.dim)
        self.drop = torch.nn.Dropout(0.5)

    def tokenize(self, texts):
        # a stable hash (Python's str hash differs between processes)
        ids = torch.tensor([[sum(map(ord, w)) % 50 for w in (t.split() + ["pad"] * 4)[:4]] for t in texts])
        return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}

    def forward(self, images, input_ids, attention_mask, step, epoch=0):
        img = torch.nn.functional.normalize(self.drop(self.conv(images).mean((2, 3))), dim=1)
        txt = torch.nn.functional.normalize(self.words(input_ids), dim=1)
        logits = img @ txt.T / 0.07
        loss = torch.nn.functional.cross_entropy(logits, torch.arange(len(img)))
        if step == self.config.nan_at and self.config.nan_rank in (-1, _rank()):
            loss = loss * float("nan")
        return {"loss": loss}


def _rank() -> int:
    import torch.distributed as dist

    return dist.get_rank() if dist.is_initialized() else 0


class TinyRecipe:
    name = "tiny"
    quick = None
    tiny: dict = {}
    contrastive_loss = "loss"

    def make_config(self, profile, scale, overrides):
        return TinyConfig(**overrides)

    def build(self, config, corpus):
        return TinyModel(config)

    def augmentations(self, config):
        def transform(x):
            x = x.float() / 255
            return torch.flip(x, dims=[2]) if torch.rand(()) < 0.5 else x
        return transform

    def optimisation(self, config):
        return {"lr": 1e-2, "weight_decay": 1e-4, "schedule": "warmup-cosine", "warmup_steps": 2, "restart_steps": 0,
                "epochs": 2, "batch_size": 4, "cache_size": 16}

    def save_extra(self, model, folder):
        (folder / "extra.txt").write_text("tiny")


def _no_adapter(checkpoint, **_):
    raise NotImplementedError


def tiny_entry(recipe=None) -> MethodEntry:
    """A method entry for the tiny stand-in (registered only for the duration of a test)."""
    return MethodEntry("tiny", _no_adapter, recipe=recipe or TinyRecipe())


@pytest.fixture(autouse=True)
def tiny(monkeypatch):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 255, (20, 16, 16), dtype=np.uint8)
    reports = [f"finding {i % 5} side {i % 3}" for i in range(20)]
    monkeypatch.setattr(engine, "load_pairs", lambda config, size, home=None: (images, reports, {"fake": True}))
    with METHODS.temporarily("tiny", tiny_entry()):
        yield
    assert "tiny" not in METHODS


def config(out, **kw):
    return PretrainConfig(method="tiny", out=out, progress=False, channels_last=False, **kw)


def weights(folder):
    return torch.load(Path(folder) / "last.pt", weights_only=True)["model"]


def test_resume_equals_uninterrupted_run(tmp_path, monkeypatch):
    pretrain(config(tmp_path / "straight", max_steps=9, checkpoint_every=2))
    original = engine.save_checkpoint

    def save_then_die(folder, model, optimizer, scaler, state, *rest):
        original(folder, model, optimizer, scaler, state, *rest)
        if state["step"] == 4:
            raise KeyboardInterrupt  # killed mid-epoch (5 steps per epoch)

    monkeypatch.setattr(engine, "save_checkpoint", save_then_die)
    with pytest.raises(KeyboardInterrupt):
        pretrain(config(tmp_path / "split", max_steps=9, checkpoint_every=2))
    assert torch.load(tmp_path / "split" / "last.pt", weights_only=True)["step"] == 4
    monkeypatch.setattr(engine, "save_checkpoint", original)
    pretrain(config(tmp_path / "split", max_steps=9, checkpoint_every=2))
    a, b = weights(tmp_path / "straight"), weights(tmp_path / "split")
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key
    assert (tmp_path / "split" / "weights.safetensors").exists() and (tmp_path / "split" / "extra.txt").exists()
    # the loss log of the resumed run is the uninterrupted run's, one row per step
    straight, split = ((tmp_path / name / engine.LOG_NAME).read_text() for name in ("straight", "split"))
    assert straight == split
    rows = engine._read_history(tmp_path / "split" / engine.LOG_NAME, 10**9)
    assert [row["step"] for row in rows] == list(range(1, 10))
    assert all(np.isfinite(row["loss"]) and row["lr"] > 0 for row in rows)


def test_contrastive_plateau_flags_only_a_loss_at_ln_batch():
    at_ln = [{"step": i, "vla": np.log(32) + 0.001 * (-1) ** i} for i in range(1, 101)]
    assert engine.contrastive_plateau(at_ln, 32) == pytest.approx(np.log(32), abs=1e-3)
    learning = [{"step": i, "vla": 3.4 - 0.02 * i} for i in range(1, 101)]
    assert engine.contrastive_plateau(learning, 32) is None
    assert engine.contrastive_plateau([{"step": 1, "loss": 3.0}], 32) is None  # no contrastive column


def test_different_seeds_differ(tmp_path):
    pretrain(config(tmp_path / "a", max_steps=3, seed=0))
    pretrain(config(tmp_path / "b", max_steps=3, seed=1))
    assert not torch.equal(weights(tmp_path / "a")["conv.weight"], weights(tmp_path / "b")["conv.weight"])


def test_gradient_accumulation_matches_big_batch_without_dropout(tmp_path, monkeypatch):
    monkeypatch.setattr(TinyModel, "forward", _forward_no_dropout_mean)
    pretrain(config(tmp_path / "big", max_steps=3))
    pretrain(config(tmp_path / "acc", max_steps=3, grad_accum=2))
    for key, value in weights(tmp_path / "big").items():
        assert torch.allclose(value, weights(tmp_path / "acc")[key], atol=1e-6), key


def _forward_no_dropout_mean(self, images, input_ids, attention_mask, step, epoch=0):
    # per-sample loss (no in-batch negatives), so 2 × half-batch accumulation equals the full batch
    img = self.conv(images).mean((2, 3))
    txt = self.words(input_ids)
    return {"loss": ((img - txt) ** 2).mean()}


def test_nan_loss_stops_with_step_and_keeps_last_checkpoint(tmp_path):
    out = tmp_path / "nan"
    with pytest.raises(G2DBenchError, match="at step 5"):
        pretrain(config(out, max_steps=9, checkpoint_every=2, method_overrides={"nan_at": 5}))
    assert torch.load(out / "last.pt", weights_only=True)["step"] == 4


def test_checkpoint_loads_without_unpickling_code(tmp_path):
    pretrain(config(tmp_path / "c", max_steps=2))
    torch.load(tmp_path / "c" / "last.pt", weights_only=True)  # raises if anything but tensors/containers


def test_schedules():
    warm = [lr_factor(s, 100, "warmup-cosine", 10, 0) for s in range(100)]
    assert warm[0] == pytest.approx(0.1) and warm[9] == pytest.approx(1.0)
    assert warm[10] == pytest.approx(1.0) and warm[99] < 0.01
    assert all(a >= b for a, b in zip(warm[10:], warm[11:]))
    restarts = [lr_factor(s, 1000, "cosine-restarts", 0, 200) for s in range(600)]
    assert restarts[0] == 1.0 and restarts[200] == 1.0 and restarts[400] == 1.0 and restarts[199] < 0.001


def test_sync_bn_needs_several_cuda_processes(tmp_path):
    with pytest.raises(G2DBenchError, match="--sync-bn needs several CUDA processes"):
        pretrain(config(tmp_path / "s", max_steps=1, sync_bn=True, device="cpu"))


def test_contrastive_summary_reads_the_log_of_a_checkpoint(tmp_path):
    assert engine.contrastive_summary(tmp_path) is None  # no log
    engine._write_history(tmp_path / engine.LOG_NAME, [{"step": i, "loss": 4.0, "vla": float(np.log(8))} for i in range(1, 61)])
    (tmp_path / "run.json").write_text('{"engine": {"batch_size": 8}, "optimisation": {}}')
    line = engine.contrastive_summary(tmp_path)
    assert "steps 11-60" in line and "2.079" in line and "collapsed" in line
    # a column present on some steps only (empty cells elsewhere) reads back without it
    engine._write_history(tmp_path / engine.LOG_NAME, [{"step": i, "vla": 1.0} | ({"pa": 0.5} if i > 30 else {}) for i in range(1, 61)])
    rows = engine._read_history(tmp_path / engine.LOG_NAME, 10**9)
    assert "pa" not in rows[0] and rows[-1]["pa"] == 0.5
    assert "below it: aligning" in engine.contrastive_summary(tmp_path)
    engine._write_history(tmp_path / engine.LOG_NAME, [{"step": i, "vla": 3.0} for i in range(1, 61)])
    assert "above it: not aligned" in engine.contrastive_summary(tmp_path)
