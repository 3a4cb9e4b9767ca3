"""Zero-shot grounding: hand-made pointing game, thresholds, IoU / Dice, pixel AUROC against
scikit-learn, only positive images scored, the runner on SynthCXR (text methods run, others are
skipped) and the grounding figure."""
import json
import logging

import numpy as np
import pytest
import torch

from g2d_bench.adapter import Capability, MethodAdapter, Preprocess
from g2d_bench.errors import G2DBenchError
from g2d_bench.runner import RunConfig, run
from g2d_bench.task import SplitArrays, TaskContext
from g2d_bench.tasks import grounding


# -- metrics by hand ------------------------------------------------------------------------------
def test_pointing_game_hit_miss_and_ties():
    gt = np.zeros((4, 4), bool)
    gt[1:3, 1:3] = True
    heat = np.zeros((4, 4))
    heat[2, 2] = 1.0
    assert grounding.pointing_game(heat, gt) == 1.0
    heat[0, 3] = 2.0
    assert grounding.pointing_game(heat, gt) == 0.0
    heat[1, 1] = 2.0  # two maxima, one inside
    assert grounding.pointing_game(heat, gt) == 0.5
    assert grounding.pointing_game(np.ones((4, 4)), gt) == 4 / 16  # a constant map scores the lesion's area (chance)


def test_threshold_rules_by_hand():
    heat = np.arange(16, dtype=float).reshape(4, 4)  # 0 … 15
    # 75th percentile of 0..15 (linear interpolation) = 11.25: pixels 12..15
    assert grounding.threshold_map(heat, "percentile", 75).sum() == 4
    assert grounding.threshold_map(heat, "percentile", 75)[3].all()
    # G2D §3.2 keeps pixels *at* the percentile: 85th of 0..15 = 12.75 -> 13, 14, 15
    assert grounding.threshold_map(heat, "percentile", 85).sum() == 3
    assert grounding.threshold_map(heat, "percentile", 100).sum() == 1
    assert grounding.threshold_map(heat / 15.0, "fixed", 0.5).sum() == 8  # 8/15 … 15/15
    with pytest.raises(G2DBenchError, match="threshold_rule"):
        grounding.threshold_map(heat, "otsu", 0.5)
    with pytest.raises(G2DBenchError, match=r"\[0, 100\]"):
        grounding.threshold_map(heat, "percentile", 150)


def test_iou_and_dice_by_hand():
    gt = np.zeros((4, 4), bool)
    gt[0, :] = True  # 4 pixels
    pred = np.zeros((4, 4), bool)
    pred[0, 2:] = True
    pred[1, 2:] = True  # 4 pixels, 2 overlap
    iou, dice = grounding.overlap(pred, gt)
    assert iou == pytest.approx(2 / 6) and dice == pytest.approx(2 * 2 / 8)
    assert grounding.overlap(np.zeros((2, 2), bool), np.zeros((2, 2), bool)) == (1.0, 1.0)
    assert grounding.overlap(np.zeros((2, 2), bool), np.ones((2, 2), bool)) == (0.0, 0.0)


def test_pixel_auroc_equals_scikit_learn_with_ties():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    for _ in range(5):
        gt = rng.random((24, 24)) < 0.2
        heat = np.round(rng.normal(size=(24, 24)) + gt * 0.8, 1)  # rounding makes ties
        assert grounding.pixel_auroc(heat, gt) == pytest.approx(roc_auc_score(gt.ravel(), heat.ravel()), abs=1e-12)
    gt = np.zeros((3, 3), bool)
    gt[1, 1] = True
    heat = np.zeros((3, 3))
    heat[1, 1] = 1
    assert grounding.pixel_auroc(heat, gt) == 1.0 and grounding.pixel_auroc(-heat, gt) == 0.0
    assert np.isnan(grounding.pixel_auroc(heat, np.ones((3, 3), bool)))


# -- the family function on hand-made data ------------------------------------------------------------
class OracleMaps(MethodAdapter):
    """Dense maps on a 4×4 grid: high on the cells that a bright lesion covers (the image itself,
    average-pooled), so a good pipeline scores well and a misaligned one would not."""

    def __init__(self, flip: bool = False):
        super().__init__(name="oracle", arch="none", backbone=torch.nn.Identity(), preprocess=Preprocess(),
                         checkpoint_hash="3" * 64, capabilities=frozenset({Capability.TEXT, Capability.DENSE_TEXT}))
        self.flip, self.prompt_calls, self.images = flip, [], 0

    def encode_prompts(self, texts):
        self.prompt_calls.append(list(texts))
        return {"n": len(texts)}

    def grounding_maps(self, images, prompts):
        self.images += len(images)
        grid = torch.nn.functional.adaptive_avg_pool2d(images, 4)
        grid = -grid if self.flip else grid
        return grid.expand(-1, prompts["n"], -1, -1)


def lesions(n: int = 12, size: int = 32) -> SplitArrays:
    """Dark images; the even rows have a bright 8×8 lesion (mask = the lesion), the odd rows none."""
    rng = np.random.default_rng(0)
    images = np.full((n, size, size), 40, np.uint8)
    masks = np.zeros((n, size, size), np.uint8)
    for i in range(0, n, 2):
        r, c = rng.integers(0, 3, 2) * 8
        images[i, r : r + 8, c : c + 8] = 220
        masks[i, r : r + 8, c : c + 8] = 1
    return SplitArrays([f"g{i}" for i in range(n)], images, None, masks, label_names=("Pneumonia",))


def ctx_for(adapter, test, tmp_path, **overrides):
    def data(name):
        if name != "test":
            raise AssertionError(f"grounding read the {name} split")
        return test

    return TaskContext(spec=grounding.RSNA_GROUND, adapter=adapter, data=data, fraction=1.0, seed=0, device="cpu",
                       workdir=tmp_path, overrides={"image_size": 32, "batch_size": 4, **overrides}, log=logging.getLogger("test"))


def test_only_positive_images_are_scored_and_a_good_map_scores_well(tmp_path):
    adapter, test = OracleMaps(), lesions()
    result = grounding.run(ctx_for(adapter, test, tmp_path))
    assert adapter.prompt_calls == [["pneumonia"]] and adapter.images == 6  # the 6 lesion images, each once
    assert result.per_sample["sample_id"].tolist() == [f"g{i}" for i in range(0, 12, 2)]
    m = result.metrics
    assert m["pointing_game"] == 1.0 and m["pixel_auroc"] > 0.95 and set(m) == {"pointing_game", "iou", "dice", "pixel_auroc"}
    # lesion = 64 of 1024 pixels = 6.25 %; the 85th percentile keeps ~15 %: IoU <= 64/154 for a perfect ranking
    assert 0.3 < m["iou"] <= 64 / 150 and m["dice"] == pytest.approx(np.mean(2 * m["iou"] / (1 + m["iou"])), abs=0.05)
    assert (result.per_sample["gt_pixels"] == 64).all()
    assert result.info["threshold"] == {"rule": "percentile", "value": 85.0} and result.info["n_positive"] == 6
    assert result.info["map_grid"] == [4, 4]
    tight = grounding.run(ctx_for(OracleMaps(), test, tmp_path, threshold=94)).metrics  # top 6 % ≈ the lesion
    assert tight["iou"] > m["iou"]
    flipped = grounding.run(ctx_for(OracleMaps(flip=True), test, tmp_path)).metrics
    assert flipped["pointing_game"] == 0.0 and flipped["pixel_auroc"] < 0.05 and flipped["iou"] == 0.0


def test_fixed_threshold_must_be_a_similarity(tmp_path):
    with pytest.raises(G2DBenchError, match=r"threshold_rule=fixed takes a similarity in \[-1, 1\]"):
        grounding.run(ctx_for(OracleMaps(), lesions(), tmp_path, threshold_rule="fixed"))
    result = grounding.run(ctx_for(OracleMaps(), lesions(), tmp_path, threshold_rule="fixed", threshold=0.5))
    # lesion cells have mean 220/255 = 0.86 > 0.5 and dark cells 0.16 < 0.5: the bilinear map crosses
    # 0.5 about half-way between cell centres, so the prediction covers the lesion and a bit more
    assert result.metrics["iou"] > 0.5


def test_plot_grounding_writes_a_png(tmp_path):
    from PIL import Image

    test = lesions(4, 64)
    heats = np.random.default_rng(0).random((2, 64, 64))
    path = grounding.plot_grounding(test.images[:2], heats, test.masks[:2] > 0, ["pneumonia", "pneumonia"], tmp_path / "g.png",
                                    titles=["a", "b"], threshold=("percentile", 85.0))
    with Image.open(path) as image:
        assert image.format == "PNG" and image.size == (700, 720)  # 7 × (3.6 · 2) inches at 100 dpi
    with pytest.raises(G2DBenchError, match="N×S×S"):
        grounding.plot_grounding(test.images[:2], heats[:1], test.masks[:2], "x", tmp_path / "bad.png")


# -- through the runner on SynthCXR ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def home(tmp_path_factory):
    torch.set_num_threads(1)
    mp = pytest.MonkeyPatch()
    mp.setenv("G2D_BENCH_SYNTH_N", "200")
    root = tmp_path_factory.getbasetemp() / "synthcxr-n200-home"  # shared with test_zeroshot / test_finetune
    root.mkdir(exist_ok=True)
    yield root
    mp.undo()


@pytest.fixture(scope="module")
def g2d_checkpoint(home):
    from test_zeroshot import untrained_g2d

    return untrained_g2d(home / "g2d-untrained")


@pytest.mark.parametrize("task", ["rsna-ground", "siim-ground"])
def test_grounding_runs_for_a_dense_text_method_and_is_skipped_without_one(task, home, g2d_checkpoint, tmp_path):
    config = RunConfig(method="g2d", task=task, fraction=1.0, checkpoint=g2d_checkpoint, image_size=64, out=tmp_path,
                       home=home, device="cpu")
    record = json.loads(run(config).read_text())
    assert record["status"] == "ok" and record["data"]["synthcxr"] is True
    assert set(record["metrics"]) == {"pointing_game", "iou", "dice", "pixel_auroc"}
    assert all(0.0 <= v <= 1.0 for v in record["metrics"].values()), record["metrics"]
    assert 0 < record["info"]["n_positive"] <= record["info"]["n_test"] == record["data"]["counts"]["test"]
    assert record["info"]["map_grid"] == [2, 2] and record["config"]["threshold"] == 85.0  # 64 px / stride 32
    skipped = json.loads(run(RunConfig(method="random", task=task, fraction=1.0, arch="resnet18", image_size=64, out=tmp_path,
                                       home=home, device="cpu")).read_text())
    assert skipped["status"] == "skipped" and "dense-text" in skipped["reason"]


def test_figure_grounding_writes_one_png_per_positive_image(home, g2d_checkpoint, tmp_path):
    from PIL import Image

    paths = grounding.figure_grounding("g2d", "rsna-ground", checkpoint=g2d_checkpoint, out=tmp_path / "fig", n=2, home=home,
                                       device="cpu", image_size=64)
    assert len(paths) == 2 and all(p.parent == tmp_path / "fig" and p.name.startswith("rsna-ground-g2d-") for p in paths)
    for path in paths:
        with Image.open(path) as image:
            assert image.format == "PNG" and image.size == (700, 360)
    with pytest.raises(G2DBenchError, match="not a grounding task"):
        grounding.figure_grounding("g2d", "rsna-zs", checkpoint=g2d_checkpoint, home=home)
    with pytest.raises(G2DBenchError, match="dense-text"):
        grounding.figure_grounding("random", "rsna-ground", home=home, device="cpu", image_size=64)
