"""U-Net segmentation family on a fake context: frozen encoder, MGCA loss, end-to-end run."""
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from g2d_bench.adapter import Capability, MethodAdapter, Preprocess
from g2d_bench.errors import G2DBenchError
from g2d_bench.task import SplitArrays, TaskContext
from g2d_bench.tasks import segmentation as seg


def blobs(n: int, size: int, seed: int) -> SplitArrays:
    """Dark noisy images; every other one holds a bright disc, its mask and its box."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images = rng.normal(60, 10, (n, size, size)).clip(0, 255)
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(0, n, 2):
        r = int(rng.integers(size // 8, size // 5))
        cx, cy = rng.integers(r, size - r, 2)
        masks[i] = (xx - cx) ** 2 + (yy - cy) ** 2 <= r * r
        images[i][masks[i] > 0] = 200
    return SplitArrays([f"{seed}-{i}" for i in range(n)], images.astype(np.uint8), None, masks, None)


def adapter(capabilities=frozenset()) -> MethodAdapter:
    torch.manual_seed(123)
    return MethodAdapter(name="fake", arch="resnet18", backbone=torchvision.models.resnet18().eval(),
                         preprocess=Preprocess(), checkpoint_hash="0" * 64, capabilities=capabilities)


def fake_ctx(tmp_path: Path, seed: int = 0, size: int = 32, rows: tuple[int, int, int] = (8, 4, 6), **overrides) -> TaskContext:
    data = {name: blobs(n, size, i + 1) for i, (name, n) in enumerate(zip(("train", "valid", "test"), rows))}
    # an easy set: one full batch per epoch, no augmentation, a brisk learning rate
    hp = {"max_epochs": 4, "batch_size": 8, "image_size": size, "aug_p": 0.0, "lr": 1e-3, **overrides}
    return TaskContext(spec=seg.SIIM_SEG, adapter=adapter(), data=data.__getitem__, fraction=1.0, seed=seed,
                       device="cpu", workdir=tmp_path, overrides=hp, log=logging.getLogger("test"))


def test_specs():
    assert seg.SIIM_SEG.hparams["batch_size"].value == 8 and seg.RSNA_SEG.hparams["batch_size"].value == 16
    assert seg.SIIM_SEG.dataset == "siim" and seg.RSNA_SEG.dataset == "rsna"
    assert all(h.source for h in seg.SIIM_SEG.hparams.values())
    assert seg.SIIM_SEG.hparams["lr"].value == 2e-4 and seg.SIIM_SEG.hparams["weight_decay"].value == 0.05


def test_loss_is_mgca_mixed_loss():
    torch.manual_seed(0)
    logits = torch.randn(2, 1, 8, 8) * 3
    target = (torch.rand(2, 1, 8, 8) > 0.7).float()
    # MGCA's FocalLoss written out: BCE · exp(γ · logsigmoid(−x(2t − 1))), mean over pixels
    bce = torch.nn.functional.binary_cross_entropy_with_logits(logits, target, reduction="none")
    focal = (bce * torch.exp(2.0 * torch.nn.functional.logsigmoid(-logits * (2 * target - 1)))).mean()
    p = torch.sigmoid(logits)
    dice = (2 * (p * target).sum() + 1) / (p.sum() + target.sum() + 1)
    expected = 10 * focal - torch.log(dice)
    assert float(seg.segmentation_loss(logits, target)) == pytest.approx(float(expected), rel=1e-5)


def test_unet_gets_frozen_backbone_weights():
    a = adapter()
    unet = seg.build_unet(a)
    for key, value in a.backbone.state_dict().items():
        if not key.startswith("fc."):
            assert torch.equal(unet.encoder.state_dict()[key], value), key
    assert not any(p.requires_grad for p in unet.encoder.parameters())
    seg.set_train_mode(unet, True)
    assert not unet.encoder.training and unet.decoder.training
    x = torch.rand(2, 1, 64, 64)
    logits = seg.forward_frozen(unet, a.normalize(x))
    assert logits.shape == (2, 1, 64, 64)
    logits.sum().backward()
    assert all(p.grad is None for p in unet.encoder.parameters())
    assert all(p.grad is not None for p in unet.decoder.parameters())


def test_encoder_decoder_transfer():
    with pytest.raises(G2DBenchError, match="no pretrained decoder"):
        seg.build_unet(adapter(), transfer="encoder-decoder")
    donor = seg.build_unet(adapter())
    torch.nn.init.constant_(donor.segmentation_head[0].bias, 0.25)
    with_decoder = adapter(frozenset({Capability.DECODER}))
    with_decoder.decoder_state_dict = lambda: {k: v for k, v in donor.state_dict().items() if not k.startswith("encoder.")}
    unet = seg.build_unet(with_decoder, transfer="encoder-decoder")
    assert float(unet.segmentation_head[0].bias.detach()) == 0.25


def test_joint_augmentation_keeps_image_and_mask_aligned():
    torch.manual_seed(0)
    augment = seg.make_augment(p=1.0, degrees=10, scale=(0.9, 1.1))
    mask = torch.zeros(1, 64, 64)
    mask[:, 20:40, 10:50] = 1
    image, out = augment(mask.clone(), mask.clone())
    assert set(out.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(out, mask)  # something moved
    overlap = ((image > 0.5) & (out > 0.5)).sum() / ((image > 0.5) | (out > 0.5)).sum()
    assert overlap > 0.9


def test_run_end_to_end(tmp_path):
    ctx = fake_ctx(tmp_path)
    before = {k: v.clone() for k, v in ctx.adapter.backbone.state_dict().items()}
    result = seg.run(ctx)
    losses = [h["train_loss"] for h in result.info["history"]]
    assert losses[-1] < losses[0]
    assert 0.0 <= result.metrics["dice"] <= 1.0 and 0.0 <= result.metrics["dice_pos"] <= 1.0
    assert list(result.per_sample.columns) == ["sample_id", "dice", "gt_pixels", "pred_pixels"]
    assert len(result.per_sample) == 6 and result.per_sample["dice"].between(0, 1).all()
    assert result.metrics["dice"] == pytest.approx(result.per_sample["dice"].mean())
    assert 0 <= result.info["best_epoch"] < result.info["epochs_run"] <= 4
    assert all(torch.equal(before[k], v) for k, v in ctx.adapter.backbone.state_dict().items())
    again = seg.run(fake_ctx(tmp_path))
    assert again.metrics == result.metrics
    assert again.per_sample.equals(result.per_sample)


def test_run_rejects_bad_sizes_and_settings(tmp_path):
    with pytest.raises(G2DBenchError, match="multiple of 32"):
        seg.run(fake_ctx(tmp_path, size=40))
    with pytest.raises(G2DBenchError, match="dice_reduction"):
        seg.run(fake_ctx(tmp_path, dice_reduction="macro"))
    with pytest.raises(G2DBenchError, match="no pretrained decoder"):
        seg.run(fake_ctx(tmp_path, transfer="encoder-decoder"))
    with pytest.raises(G2DBenchError, match="feature_cache_mb must be a number"):
        seg.run(fake_ctx(tmp_path, feature_cache_mb="lots"))


def test_encoder_bn_modes():
    x = adapter().normalize(torch.rand(4, 1, 32, 32))
    for mode, changes in (("eval", False), ("train", True)):
        unet = seg.build_unet(adapter(), encoder_bn=mode)
        before = unet.encoder.bn1.running_mean.clone()
        seg.set_train_mode(unet, True)
        seg.forward_frozen(unet, x)
        assert (not torch.equal(before, unet.encoder.bn1.running_mean)) == changes, mode


def test_fit_head_early_stops_and_restores_best(tmp_path):
    ctx = fake_ctx(tmp_path, max_epochs=10, patience=2)
    model = torch.nn.Linear(1, 1, bias=False)
    scores = iter([0.5, 0.3, 0.4, 0.3, 0.2, 0.1])  # best at epoch 1, then two epochs without strict improvement

    def train_epoch(epoch):
        torch.nn.init.constant_(model.weight, float(epoch))
        return 1.0

    info = seg.fit_head(ctx, model, train_epoch, lambda: {"val_loss": next(scores)}, "val_loss", higher_is_better=False)
    assert info["epochs_run"] == 4 and info["best_epoch"] == 1 and info["best_val_loss"] == 0.3
    assert float(model.weight.detach()) == 1.0  # the best epoch's state is back
    nan_scores = iter([float("nan")] * 3)
    info = seg.fit_head(ctx, model, train_epoch, lambda: {"val_map": next(nan_scores)}, "val_map", higher_is_better=True)
    assert info["best_epoch"] == -1 and info["epochs_run"] == 2 and float(model.weight.detach()) == 1.0


def count_encoded_rows(monkeypatch) -> list[int]:
    """Patch ``build_unet`` so that every row the U-Net's encoder processes is counted."""
    counts, build = [], seg.build_unet

    def counting_build(*args, **kwargs):
        unet = build(*args, **kwargs)
        unet.encoder.register_forward_hook(lambda module, inputs, output: counts.append(len(inputs[0])))
        return unet

    monkeypatch.setattr(seg, "build_unet", counting_build)
    return counts


def test_feature_cache_gives_the_same_run(tmp_path, monkeypatch):
    # 10 valid rows in batches of 4 (a short last batch), augmentation on: the cached run must see
    # the same augmentation draws and compute the same numbers
    settings = dict(size=64, rows=(10, 10, 6), batch_size=4, max_epochs=3, patience=10, aug_p=0.5)
    counts = count_encoded_rows(monkeypatch)
    plain = seg.run(fake_ctx(tmp_path, feature_cache_mb=0, **settings))
    plain_rows, counts[:] = sum(counts), []
    cached = seg.run(fake_ctx(tmp_path, **settings))
    assert cached.info["feature_cache"] == {"valid": "encoded once, 3.7 MB"}  # 10 × 96,256 float32
    assert plain.info["feature_cache"]["valid"].startswith("encoded every epoch (feature_cache_mb=0")
    assert sum(counts) == plain_rows - 2 * 10  # the valid split is encoded once, not three times
    assert cached.info["history"] == plain.info["history"]  # losses and val Dice, bit for bit
    assert cached.metrics == plain.metrics and cached.per_sample.equals(plain.per_sample)
    assert cached.info["test_loss"] == plain.info["test_loss"]


def test_feature_cache_over_budget_encodes_every_epoch(tmp_path, monkeypatch, caplog):
    counts = count_encoded_rows(monkeypatch)
    with caplog.at_level(logging.INFO, logger="test"):
        result = seg.run(fake_ctx(tmp_path, size=64, max_epochs=2, feature_cache_mb=1, rows=(8, 16, 6)))
    assert result.info["feature_cache"]["valid"].startswith("encoded every epoch (needs 5.9 MB")  # 16 × 96,256 float32
    assert "raise feature_cache_mb" in caplog.text
    # the first valid batch (which told the size, then was thrown away), 2 × (train + 2 valid batches), test
    assert counts == [8] + 2 * [8, 8, 8] + [6]


def test_feature_cache_is_off_when_encoder_bn_trains(tmp_path, monkeypatch):
    counts = count_encoded_rows(monkeypatch)
    result = seg.run(fake_ctx(tmp_path, encoder_bn="train", max_epochs=2))
    assert result.info["feature_cache"]["valid"].startswith("encoded every epoch (encoder_bn='train'")
    assert sum(counts) == 2 * (8 + 4) + 6  # train and valid rows every epoch, then the test rows


def test_feature_cache_rows_keep_the_encoder_layout(tmp_path):
    unet = seg.build_unet(adapter()).to(memory_format=torch.channels_last)
    data = blobs(7, 64, 0)
    ctx = fake_ctx(tmp_path, feature_cache_mb=16)
    cache = seg.FeatureCache(ctx, lambda x: unet.encoder.eval()(x)[1:], seg._normalized_images(ctx))
    assert cache.add("train", data, batch_size=3, training_rows=True)  # groups 0-2, 3-5, 4-6
    with torch.no_grad():
        fresh = unet.encoder(seg._normalized_images(ctx)(data, np.array([1, 4, 6])))[1:]
    for index in (np.array([1, 4, 6]), np.array([4, 5, 6])):  # a gather and a slice
        for got, want in zip(cache.rows("train", index), fresh):
            assert got.shape == want.shape and got.stride() == want.stride()
    assert all(torch.equal(a, b) for a, b in zip(cache.rows("train", np.array([1, 4, 6])), fresh))
    assert cache.rows("valid", np.array([0])) is None


def test_epoch_batches_pass_over_the_data_until_the_minimum_of_steps():
    gen = torch.Generator().manual_seed(0)
    one = seg.epoch_batches(14, 8, gen, drop_last=True)  # 14 rows, batch 8: the short batch is dropped
    assert [len(b) for b in one] == [8]
    many = seg.epoch_batches(14, 8, gen, drop_last=True, min_steps=10)
    assert [len(b) for b in many] == [8] * 10
    # every pass is a fresh shuffle of all rows (drop_last drops 6 of them per pass)
    assert len({tuple(sorted(b)) for b in many}) > 1 and all(len(set(b)) == 8 for b in many)
    assert [len(b) for b in seg.epoch_batches(20, 8, gen, drop_last=True, min_steps=3)] == [8, 8, 8, 8]
    assert [len(b) for b in seg.epoch_batches(20, 8, None, drop_last=False)] == [8, 8, 4]


def test_min_steps_per_epoch_trains_more_steps(tmp_path, monkeypatch):
    steps = []
    original = torch.optim.AdamW.step
    monkeypatch.setattr(torch.optim.AdamW, "step", lambda self, *a, **k: steps.append(1) or original(self, *a, **k))
    seg.run(fake_ctx(tmp_path, max_epochs=2, patience=5))
    base = len(steps)
    steps.clear()
    seg.run(fake_ctx(tmp_path, max_epochs=2, patience=5, min_steps_per_epoch=3))
    assert base == 2 and len(steps) == 6  # 8 rows, batch 8: 1 step per epoch, or 3 with the floor
