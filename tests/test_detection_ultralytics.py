"""Ultralytics protocol: YAML + weight renaming (fast), one tiny offline training epoch."""
import logging

import numpy as np
import pytest
import torch
import torchvision

# ultralytics (a test dependency) is not imported here: yolo_env sets its config folder first
from g2d_bench.adapter import MethodAdapter, Preprocess
from g2d_bench.errors import G2DBenchError
from g2d_bench.task import SplitArrays, TaskContext
from g2d_bench.tasks import detection_ultralytics as dul


def squares(n: int, size: int, seed: int) -> SplitArrays:
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
    return SplitArrays([f"{seed}/{i}" for i in range(n)], images.astype(np.uint8), None, None, boxes)


def adapter() -> MethodAdapter:
    torch.manual_seed(123)
    return MethodAdapter(name="fake", arch="resnet18", backbone=torchvision.models.resnet18().eval(),
                         preprocess=Preprocess(), checkpoint_hash="0" * 64)


@pytest.fixture
def yolo_env(tmp_path, monkeypatch):
    """Ultralytics settings and font in a private folder (read when ultralytics is first imported)."""
    monkeypatch.setenv("YOLO_CONFIG_DIR", str(tmp_path / "yolo-config"))
    monkeypatch.setenv("YOLO_OFFLINE", "1")
    return dul.offline_ultralytics(tmp_path / "yolo-config")


def test_backbone_keys_are_renamed_to_module_indices():
    renamed = dul.backbone_state_dict(adapter().backbone.state_dict())
    assert "model.0.m.0.weight" in renamed and "model.0.m.1.running_var" in renamed
    assert "model.0.m.6.1.conv2.weight" in renamed  # layer3 = child 6 of the unwrapped ResNet
    assert not any(".fc." in k or k.endswith("fc.weight") for k in renamed)
    with pytest.raises(G2DBenchError, match="not a torchvision ResNet key"):
        dul.backbone_state_dict({"proj.weight": torch.zeros(1)})


def test_yaml_model_carries_weights_and_normalises_input(yolo_env):
    a = adapter()
    cfg = dul.model_yaml("resnet18", (128, 256, 512), scale="n")
    model = dul.build_model(cfg, a).eval()
    for key, value in a.backbone.state_dict().items():
        if not key.startswith("fc."):
            head, _, rest = key.partition(".")
            assert torch.equal(model.state_dict()[f"model.0.m.{dul._CHILD[head]}.{rest}"], value), key
    # the Index layers hand ultralytics exactly the adapter's layer2/3/4 of the normalised image
    gray = torch.rand(1, 1, 64, 64)
    outputs = model.model[0](gray.expand(-1, 3, -1, -1))
    expected = a.stage_features(gray)
    for index, stage in zip(dul.STAGE_INDEX.values(), expected[1:]):
        torch.testing.assert_close(outputs[index], stage)
    assert [int(s) for s in model.stride] == [8, 16, 32]
    with pytest.raises(G2DBenchError, match="head_scale"):
        dul.model_yaml("resnet18", (128, 256, 512), scale="q")


def test_one_tiny_epoch_offline(tmp_path, yolo_env, monkeypatch):
    a = adapter()
    before = {k: v.clone() for k, v in a.backbone.state_dict().items()}
    data = {"train": squares(8, 64, 1), "valid": squares(4, 64, 2), "test": squares(4, 64, 3)}
    ctx = TaskContext(spec=dul.RSNA_DET_ULTRALYTICS, adapter=a, data=data.__getitem__, fraction=1.0, seed=0, device="cpu",
                      workdir=tmp_path / "run", overrides={"max_epochs": 1, "batch_size": 4, "image_size": 64, "head_scale": "n"},
                      log=logging.getLogger("test"))
    ctx.workdir.mkdir()
    trainers = []
    make = dul.make_trainer
    monkeypatch.setattr(dul, "make_trainer", lambda *args: trainers.append(make(*args)) or trainers[-1])
    result = dul.run(ctx)
    trainer = trainers[0]
    # the backbone survived trainer.train(): frozen weights and BatchNorm statistics are the adapter's
    trained = trainer.model.state_dict()
    for key, value in before.items():
        if not key.startswith("fc."):
            head, _, rest = key.partition(".")
            assert torch.equal(trained[f"model.0.m.{dul._CHILD[head]}.{rest}"], value), key
    assert trainer.best_state is not None and trainer.best_epoch == 0
    params = dict(trainer.model.named_parameters())
    assert not any(p.requires_grad for k, p in params.items() if k.startswith("model.0."))  # freeze=1
    assert all(p.requires_grad for k, p in params.items() if not k.startswith("model.0.") and ".dfl" not in k)
    assert 0.0 <= result.metrics["map"] <= 1.0 and result.info["epochs_run"] == 1
    assert result.per_sample["n_gt"].tolist() == [1, 0, 1, 0]
    assert (ctx.workdir / "yolo-data" / "labels" / "train" / "000000.txt").read_text().startswith("0 ")
    assert (ctx.workdir / "yolo-data" / "labels" / "train" / "000001.txt").read_text() == ""
    assert all(torch.equal(before[k], v) for k, v in a.backbone.state_dict().items())
    assert not torch.are_deterministic_algorithms_enabled()
