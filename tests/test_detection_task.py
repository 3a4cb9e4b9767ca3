"""YOLOv3 (mgca-yolov3) detection family: head shapes, targets, loss, decoding, end-to-end run."""
import logging
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torchvision

from g2d_bench.adapter import MethodAdapter, Preprocess
from g2d_bench.errors import G2DBenchError
from g2d_bench.task import SplitArrays, TaskContext
from g2d_bench.tasks import detection as det

HP = {k: det.COMMON[k].value for k in ("ignore_threshold", "anchor_iou_plus_one", "lambda_xy", "lambda_wh", "lambda_conf", "lambda_cls", "noobj_weight")}


def squares(n: int, size: int, seed: int) -> SplitArrays:
    """Dark noisy images; every other one holds one bright square and its box."""
    rng = np.random.default_rng(seed)
    images = rng.normal(60, 10, (n, size, size)).clip(0, 255)
    boxes = []
    for i in range(n):
        if i % 2:
            boxes.append(np.zeros((0, 4), np.float32))
            continue
        side = int(rng.integers(size // 4, size // 2))
        x, y = rng.integers(0, size - side, 2)
        images[i, y : y + side, x : x + side] = 200
        boxes.append(np.array([[x, y, x + side, y + side]], np.float32))
    return SplitArrays([f"{seed}-{i}" for i in range(n)], images.astype(np.uint8), None, None, boxes)


def adapter() -> MethodAdapter:
    torch.manual_seed(123)
    return MethodAdapter(name="fake", arch="resnet18", backbone=torchvision.models.resnet18().eval(),
                         preprocess=Preprocess(), checkpoint_hash="0" * 64)


def fake_ctx(tmp_path: Path, seed: int = 0, size: int = 64, rows: tuple[int, int, int] = (8, 4, 6), **overrides) -> TaskContext:
    data = {name: squares(n, size, i + 1) for i, (name, n) in enumerate(zip(("train", "valid", "test"), rows))}
    hp = {"max_epochs": 3, "batch_size": 8, "image_size": size, "head_width": 0.25, **overrides}
    return TaskContext(spec=det.RSNA_DET, adapter=adapter(), data=data.__getitem__, fraction=1.0, seed=seed,
                       device="cpu", workdir=tmp_path, overrides=hp, log=logging.getLogger("test"))


def test_specs_cite_mgca():
    assert det.RSNA_DET.protocol == det.OBJCXR_DET.protocol == "mgca-yolov3"
    assert det.OBJCXR_DET.dataset == "object-cxr" and det.RSNA_DET.needs == frozenset({"boxes"})
    assert all(h.source for h in det.COMMON.values())
    assert det.COMMON["conf_thres"].value == 0.5 and det.COMMON["nms_thres"].value == 0.5


def test_anchors_scale_with_image_size():
    anchors = det.scaled_anchors(224)
    assert anchors.shape == (3, 3, 2)
    assert anchors[0, 0].tolist() == pytest.approx([116 * 224 / 416, 90 * 224 / 416])
    assert det.scaled_anchors(128)[2, 0].tolist() == pytest.approx([10 * 128 / 416, 13 * 128 / 416])


def test_head_on_frozen_stages_shapes_and_grads():
    model = det.build_detector(adapter())
    assert sum(p.numel() for p in model.head.parameters()) > 20e6  # MGCA's widths on ResNet-18 stages
    maps = model(torch.randn(2, 3, 96, 96))
    assert [tuple(m.shape) for m in maps] == [(2, 18, 3, 3), (2, 18, 6, 6), (2, 18, 12, 12)]
    sum(m.sum() for m in maps).backward()
    assert all(p.grad is None and not p.requires_grad for p in model.encoder.parameters())
    assert all(p.grad is not None for p in model.head.parameters())
    model.train()
    assert not model.encoder.training and model.head.training


def test_targets_follow_mgca_assignment():
    # 64 px, stride 32 (2×2 grid): box centre (48, 20) -> cell (j=0, i=1), size 24×32 px = 0.75×1.0 cells,
    # which matches anchor 1 (156×198 × 64/416 px = 0.75×0.95 cells) best
    anchors = det.scaled_anchors(64)[0]
    t = det.build_targets([torch.tensor([[36.0, 4.0, 60.0, 36.0]])], anchors, grid=2, image_size=64, ignore_threshold=0.5, plus_one=True)
    assert t["mask"].sum() == 1 and t["mask"][0, 1, 0, 1] == 1
    assert float(t["tx"][0, 1, 0, 1]) == pytest.approx(0.5) and float(t["ty"][0, 1, 0, 1]) == pytest.approx(0.625)
    assert float(t["tw"][0, 1, 0, 1]) == pytest.approx(0.0, abs=1e-6)
    assert float(t["th"][0, 1, 0, 1]) == pytest.approx(math.log(32 / (198 * 64 / 416)), rel=1e-5)
    assert t["noobj"][0, 1, 0, 1] == 0 and t["noobj"].sum() == 3 * 4 - (t["noobj"] == 0).sum()


def test_loss_without_objects_is_the_noobj_term():
    torch.manual_seed(0)
    out = torch.randn(2, 18, 2, 2)
    loss = det.yolo_loss(out, [torch.zeros(0, 4), torch.zeros(0, 4)], det.scaled_anchors(64)[0], 64, HP)
    obj = out.view(2, 3, 6, 2, 2)[:, :, 4]
    assert float(loss) == pytest.approx(float(0.5 * torch.nn.functional.softplus(obj).mean()), rel=1e-6)


def test_decode_and_nms():
    anchors = det.scaled_anchors(64)[0]
    out = torch.full((1, 3, 6, 2, 2), -10.0)
    out[0, 1, :4, 0, 1] = 0.0  # σ(0) = .5: centre of cell (0, 1); exp(0): anchor size
    out[0, 1, 4:, 0, 1] = 5.0
    decoded = det.decode(out.view(1, 18, 2, 2), anchors, 64)
    assert decoded.shape == (1, 12, 6)
    best = decoded[0, decoded[0, :, 4].argmax()]
    assert best[:4].tolist() == pytest.approx([48.0, 16.0, *anchors[1].tolist()])
    boxes = torch.tensor([[[20, 20, 10, 10, 0.9, 1.0], [21, 20, 10, 10, 0.8, 1.0], [50, 50, 10, 10, 0.7, 1.0], [5, 5, 4, 4, 0.4, 1.0]]])
    (kept, scores), = det.postprocess(boxes, conf_thres=0.5, nms_thres=0.5)
    assert scores.tolist() == pytest.approx([0.9, 0.7])
    assert kept[0].tolist() == pytest.approx([15, 15, 25, 25])


def test_run_end_to_end(tmp_path):
    # an easy set: one full batch per epoch of bright squares on dark noise
    ctx = fake_ctx(tmp_path, size=32, max_epochs=5)
    before = {k: v.clone() for k, v in ctx.adapter.backbone.state_dict().items()}
    result = det.run(ctx)
    losses = [h["train_loss"] for h in result.info["history"]]
    assert len(losses) == 5 and losses[-1] < losses[0]
    assert 0.0 <= result.metrics["map"] <= 1.0 and 0.0 <= result.metrics["ap50"] <= 1.0
    assert list(result.per_sample.columns) == ["sample_id", "n_pred", "n_gt", "best_iou", "max_score", "pred_boxes", "pred_scores", "gt_boxes"]
    assert result.per_sample["n_gt"].tolist() == [1, 0, 1, 0, 1, 0]
    assert result.info["n_scored"] == 6
    assert all(torch.equal(before[k], v) for k, v in ctx.adapter.backbone.state_dict().items())


def test_run_is_deterministic(tmp_path):
    first = det.run(fake_ctx(tmp_path, size=32, max_epochs=1))
    again = det.run(fake_ctx(tmp_path, size=32, max_epochs=1))
    assert first.per_sample["n_pred"].sum() > 0  # something to compare
    assert again.metrics == first.metrics and again.per_sample.equals(first.per_sample)


def test_encoder_bn_train_mode_leaves_adapter_alone():
    a = adapter()
    before = a.backbone.bn1.running_mean.clone()
    model = det.build_detector(a, encoder_bn="train").train()
    model(torch.randn(2, 3, 64, 64))
    assert not torch.equal(model.encoder.bn1.running_mean, before)
    assert torch.equal(a.backbone.bn1.running_mean, before)


def test_run_rejects_bad_input(tmp_path):
    with pytest.raises(G2DBenchError, match="multiple of 32"):
        det.run(fake_ctx(tmp_path, size=48))
    with pytest.raises(G2DBenchError, match="map_mode"):
        det.run(fake_ctx(tmp_path, map_mode="skip"))


def count_encoded_rows(monkeypatch) -> list[int]:
    """Patch ``build_detector`` so that every row its frozen encoder processes is counted."""
    counts, build = [], det.build_detector

    def counting_build(*args, **kwargs):
        model = build(*args, **kwargs)
        model.encoder.layer4.register_forward_hook(lambda module, inputs, output: counts.append(len(inputs[0])))
        return model

    monkeypatch.setattr(det, "build_detector", counting_build)
    return counts


def test_feature_cache_gives_the_same_run(tmp_path, monkeypatch):
    # 10 train rows in shuffled batches of 4 (cached rows are gathered; the cache encodes rows 0-3,
    # 4-7 and 6-9, every row in a batch of 4 like training), 10 valid rows in batches 4, 4, 2
    settings = dict(size=64, rows=(10, 10, 6), batch_size=4, max_epochs=3, patience=10, lr=1e-3)
    counts = count_encoded_rows(monkeypatch)
    plain = det.run(fake_ctx(tmp_path, feature_cache_mb=0, **settings))
    assert counts == 3 * ([4, 4] + [4, 4, 2]) + [4, 2]  # 3 × (train + valid batches), then test
    counts[:] = []
    cached = det.run(fake_ctx(tmp_path, **settings))
    assert counts == [4, 4, 2] + [4, 4, 4] + [4, 2]  # valid and train once, then test
    # 10 rows × (128·8² + 256·4² + 512·2²) float32 each
    assert cached.info["feature_cache"] == {"valid": "encoded once, 0.5 MB", "train": "encoded once, 0.5 MB"}
    assert plain.info["feature_cache"]["train"].startswith("encoded every epoch (feature_cache_mb=0")
    assert plain.per_sample["n_pred"].sum() > 0  # something to compare
    assert cached.info["history"] == plain.info["history"]  # losses and val mAP, bit for bit
    assert cached.metrics == plain.metrics and cached.per_sample.equals(plain.per_sample)


def test_feature_cache_budget_and_bn_train(tmp_path, monkeypatch):
    counts = count_encoded_rows(monkeypatch)
    # 0.6 MB holds the valid split (10 × 57 kB) but not the train split next to it
    result = det.run(fake_ctx(tmp_path, size=64, rows=(10, 10, 2), batch_size=4, max_epochs=2, feature_cache_mb=0.6))
    assert result.info["feature_cache"]["valid"].startswith("encoded once")
    assert result.info["feature_cache"]["train"].startswith("encoded every epoch (needs 0.5 MB, feature_cache_mb=0.6)")
    assert counts == [4, 4, 2] + [4] + 2 * [4, 4] + [2]  # valid once, a wasted sizing batch, train per epoch, test
    counts[:] = []
    result = det.run(fake_ctx(tmp_path, encoder_bn="train", rows=(8, 4, 2), max_epochs=2))
    assert set(result.info["feature_cache"]) == {"valid", "train"}
    assert all(note.startswith("encoded every epoch (encoder_bn='train'") for note in result.info["feature_cache"].values())
    assert counts == 2 * [8, 4] + [2]
