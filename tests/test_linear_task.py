"""Linear-probe family on a fake context: targets and label policies, early stopping on validation
loss with the best head tested, scikit-learn metrics, and encode-once equal to MGCA's loop."""
import logging

import numpy as np
import pytest
import torch
import torchvision

from g2d_bench.adapter import MethodAdapter, Preprocess
from g2d_bench.datasets.chexpert import LABELS
from g2d_bench.errors import G2DBenchError
from g2d_bench.task import SplitArrays, TaskContext
from g2d_bench.tasks import linear


def bright_or_dark(n: int, size: int, seed: int) -> SplitArrays:
    """Noisy images; label 1 when a bright square is drawn (about half of them)."""
    rng = np.random.default_rng(seed)
    images = rng.normal(70, 20, (n, size, size)).clip(0, 255)
    y = (np.arange(n) % 2 == 0) ^ (rng.random(n) < 0.1)  # 10 % flipped so the AUC is not trivially 1
    for i in np.flatnonzero(np.arange(n) % 2 == 0):
        x0, y0 = rng.integers(2, size // 2, 2)
        images[i, y0 : y0 + size // 3, x0 : x0 + size // 3] = 200
    return SplitArrays([f"{seed}-{i}" for i in range(n)], images.astype(np.uint8), y[:, None].astype(np.float32),
                       label_names=("Pneumonia",))


def adapter() -> MethodAdapter:
    torch.manual_seed(5)
    return MethodAdapter(name="fake", arch="resnet18", backbone=torchvision.models.resnet18().eval(),
                         preprocess=Preprocess(), checkpoint_hash="1" * 64)


def fake_ctx(tmp_path, **overrides) -> TaskContext:
    data = {name: bright_or_dark(n, 32, seed) for name, n, seed in (("train", 40, 1), ("valid", 20, 2), ("test", 30, 3))}
    hp = {"image_size": 32, "max_epochs": 6, "patience": 6, "lr": 1e-2, **overrides}
    return TaskContext(spec=linear.RSNA_CLS, adapter=adapter(), data=data.__getitem__, fraction=1.0, seed=0,
                       device="cpu", workdir=tmp_path, overrides=hp, log=logging.getLogger("test"))


def test_chexpert_targets_follow_the_uncertainty_policy():
    raw = np.full((2, len(LABELS)), np.nan, np.float32)
    raw[0, [LABELS.index(n) for n in ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")]] = -1
    raw[1, LABELS.index("Edema")] = 1
    arrays = SplitArrays(["a", "b"], np.zeros((2, 8, 8), np.uint8), raw, label_names=LABELS)
    y, names = linear.targets(arrays, "chexpert-competition", "mgca")
    assert names == ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")
    # MGCA: U-ones for Atelectasis, Edema, Pleural Effusion; U-zeros for Cardiomegaly, Consolidation; blank -> 0
    assert y.tolist() == [[1, 0, 0, 1, 1], [0, 0, 0, 1, 0]]
    assert linear.targets(arrays, "chexpert-competition", "zeros")[0][0].tolist() == [0, 0, 0, 0, 0]


def test_score_matches_scikit_learn_by_hand():
    y = np.array([[1, 0], [0, 1], [1, 1], [0, 0]], np.float32)
    p = np.array([[0.9, 0.2], [0.3, 0.4], [0.6, 0.8], [0.1, 0.7]], np.float32)
    metrics, notes = linear.score(y, p, ("A", "B"), multiclass=False)
    # label A ranks both positives above both negatives: 1.0; label B: pairs (0.4, 0.8) vs (0.2, 0.7): 3 of 4
    assert metrics["auc/A"] == 1.0 and metrics["auc/B"] == 0.75 and metrics["auc"] == pytest.approx(0.875)
    constant = np.array([[1], [1]], np.float32)
    with pytest.raises(G2DBenchError, match="both classes"):
        linear.score(constant, np.array([[0.2], [0.9]]), ("A",), multiclass=False)
    acc, _ = linear.score(np.array([0, 1, 2, 2]), np.eye(3)[[0, 1, 1, 2]], ("n", "p", "c"), multiclass=True)
    assert acc["accuracy"] == 0.75


def test_early_stopping_restores_the_best_head(tmp_path):
    ctx = fake_ctx(tmp_path, max_epochs=30, patience=3, lr=0.5)  # a large lr overfits quickly
    gen = torch.Generator().manual_seed(0)
    feats = {"train": torch.randn(40, 6, generator=gen), "valid": torch.randn(20, 6, generator=gen)}
    y = {"train": (feats["train"][:, :1] > 0).float(), "valid": (torch.rand(20, 1, generator=gen) > 0.5).float()}

    def features(split, index):
        return feats[split][index]

    head, info = linear.train_head(ctx, features, y, multiclass=False)
    assert info["epochs_run"] == info["best_epoch"] + 1 + 3 < 30  # stopped 3 epochs after the best
    with torch.no_grad():
        loss = float(torch.nn.functional.binary_cross_entropy_with_logits(head(feats["valid"]), y["valid"]))
    assert loss == pytest.approx(info["best_val_loss"], rel=1e-5)  # the head tested is the best one


def test_encode_once_equals_reencoding_every_epoch(tmp_path):
    once = linear.run(fake_ctx(tmp_path, encode="once"))
    naive = linear.run(fake_ctx(tmp_path, encode="every-epoch"))
    assert abs(once.metrics["auc"] - naive.metrics["auc"]) <= 0.005
    assert once.info["best_epoch"] == naive.info["best_epoch"]
    assert 0.5 < once.metrics["auc"] <= 1.0  # the bright squares are learnable from frozen random features
