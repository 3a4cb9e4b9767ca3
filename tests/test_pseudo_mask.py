"""Pseudo-mask construction (G2D §3.2, Table 5 ablations): exact threshold semantics, body mask,
edge smoothing, and every setting changing the mask as it should."""
from dataclasses import replace

import cv2
import numpy as np
import pytest
import torch

from g2d_bench.errors import G2DBenchError
from g2d_bench.methods.g2d.config import PseudoMaskConfig
from g2d_bench.methods.g2d.pseudo_mask import (
    body_mask,
    build_pseudo_masks,
    derangement,
    smooth_masks,
    threshold_masks,
)

RAW = PseudoMaskConfig(body_mask=False, smooth=False)  # thresholding only


def _map(values) -> torch.Tensor:
    return torch.tensor(values, dtype=torch.float32).view(1, 1, 1, -1)


def test_quantile_ties_ge_keeps_tied_pixels_gt_drops_them():
    # 6 zeros and 4 ones: the 85th percentile (linear, position 0.85·9 = 7.65) is exactly 1
    values = [0, 0, 0, 0, 0, 0, 1, 1, 1, 1]
    assert np.quantile(values, 0.85) == 1.0
    ge = threshold_masks(_map(values), None, replace(RAW, compare=">="))
    gt = threshold_masks(_map(values), None, replace(RAW, compare=">"))
    assert ge.flatten().tolist() == [False] * 6 + [True] * 4
    assert not gt.any()


def test_quantile_interpolates_like_numpy():
    values = np.arange(10, dtype=np.float32)  # 85th percentile = 7.65
    for q, expected in ((0.85, 2), (0.75, 3)):  # 0.75 → 6.75: pixels 7, 8, 9
        mask = threshold_masks(_map(values), None, replace(RAW, quantile=q))
        assert int(mask.sum()) == expected == int((values >= np.quantile(values, q)).sum())
    median = threshold_masks(_map(values), None, replace(RAW, threshold="median"))
    assert median.flatten().tolist() == [False] * 5 + [True] * 5  # median 4.5
    mean = threshold_masks(_map([0, 0, 0, 4]), None, replace(RAW, threshold="mean", compare=">"))
    assert mean.flatten().tolist() == [False, False, False, True]


def test_quantile_over_body_vs_all_pixels():
    maps = torch.zeros(1, 1, 20, 20)
    body = torch.zeros(1, 1, 20, 20, dtype=torch.bool)
    body[..., :10, :] = True
    maps[..., :10, :] = torch.arange(1, 201, dtype=torch.float32).view(10, 20)  # zeros outside
    in_body = threshold_masks(maps, body, RAW).sum().item()
    over_all = threshold_masks(maps, None, RAW).sum().item()
    assert in_body == 30  # 15 % of the 200 body pixels
    assert over_all == 60  # 15 % of 400 pixels, all inside the body: twice as many


def test_gmm_threshold_finds_the_bright_mode():
    gen = torch.Generator().manual_seed(0)
    maps = 0.1 + 0.02 * torch.randn(1, 1, 40, 40, generator=gen)
    maps[..., :12, :] += 0.8  # 30 % of pixels in a bright mode
    gmm = threshold_masks(maps, None, replace(RAW, threshold="gmm"))
    assert gmm[..., :12, :].all() and not gmm[..., 12:, :].any()
    assert threshold_masks(maps, None, RAW).float().mean().item() == pytest.approx(0.15, abs=0.01)


def _body_image(size: int = 128) -> tuple[torch.Tensor, np.ndarray]:
    """Dark background, a bright body ellipse with two darker lungs, a bright marker outside."""
    yy, xx = np.mgrid[0:size, 0:size] / size
    body = ((xx - 0.5) / 0.38) ** 2 + ((yy - 0.55) / 0.42) ** 2 < 1
    img = np.where(body, 0.7, 0.05)
    for cx in (0.36, 0.64):  # lungs, darker than the body but brighter than air
        img[((xx - cx) / 0.1) ** 2 + ((yy - 0.5) / 0.22) ** 2 < 1] = 0.35
    img[3:9, 3:9] = 0.95  # a side marker, not connected to the body
    img = img + np.random.default_rng(0).normal(0, 0.02, img.shape)
    return torch.from_numpy(np.clip(img, 0, 1)).float()[None, None], body


def test_body_mask_removes_background_and_keeps_lungs():
    image, truth = _body_image()
    mask = body_mask(image[0, 0].numpy())
    inter, union = (mask & truth).sum(), (mask | truth).sum()
    assert inter / union > 0.95
    assert not mask[3:9, 3:9].any()  # the marker is not the largest component
    assert mask[64, 46] and mask[64, 82]  # lung centres: holes inside the body outline are filled


def test_body_mask_keeps_a_lung_that_reaches_the_image_edge():
    # the left lung opens to the image edge through a lung-dense band (as under an arm): a two-class
    # Otsu threshold (lung | tissue) would leave it outside the body outline; three classes keep it
    image, truth = _body_image()
    img = image[0, 0].numpy().copy()
    img[60:68, :47] = 0.35
    mask = body_mask(img)
    assert mask[64, 46] and mask[64, 82]  # both lung centres
    assert not mask[:20, :20].any() and not mask[-10:, -10:].any()  # air in the corners
    _, two_class = cv2.threshold(cv2.GaussianBlur(np.uint8(img * 255 + 0.5), (5, 5), 0), 0, 1,
                                 cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    assert not two_class[64, 46]  # the failure the three classes avoid: the lung is below Otsu's level


def test_body_mask_on_synthcxr_keeps_the_lesions_and_drops_the_air(tmp_path):
    import pandas as pd

    from g2d_bench.datasets.imageio import read_image
    from g2d_bench.datasets.synthcxr import generate

    root = generate(tmp_path, ["mimic-cxr"], n=200, size=96, seed=0)["mimic-cxr"]
    table = pd.read_csv(root / "_truth" / "images.csv", dtype=str, keep_default_na=False)
    table = table[table["view"].isin(["PA", "AP"]) & (table["mask"] != "")]
    assert len(table) > 100
    kept = total = 0
    fractions = []
    for row in table.itertuples():
        body = body_mask(read_image(root / row.image) / 255.0)
        lesion = cv2.imread(str(root / "_truth" / row.mask), cv2.IMREAD_GRAYSCALE) >= 128
        kept, total = kept + (lesion & body).sum(), total + lesion.sum()
        fractions.append(body.mean())
    assert kept / total > 0.99  # the two-class Otsu body mask kept 0.896 of the lesion pixels here
    assert 0.7 < np.mean(fractions) < 0.95  # the air around the body is left out (0.86 measured)


def test_body_mask_zeroes_background_attention():
    image, truth = _body_image()
    attn = torch.full((1, 1, 4, 4), 0.01)
    attn[..., 0, 0] = 1.0  # strongest attention in the background corner
    attn[..., 2, 1:3] = 0.5
    on = build_pseudo_masks(attn, image, PseudoMaskConfig(smooth=False))
    off = build_pseudo_masks(attn, image, PseudoMaskConfig(smooth=False, body_mask=False))
    outside = torch.from_numpy(~truth)
    assert on.target[0, 0][outside].sum() < 5  # at most the Otsu boundary pixels
    assert off.target[0, 0, :32, :32].all()  # without the body mask the corner block is in the mask
    assert torch.equal(on.attention, off.attention)  # the attention itself is kept for display
    assert not on.binary[0, 0][~on.body[0, 0]].any()


def test_smoothing_rounds_block_corners_and_keeps_straight_edges():
    # a staircase of 32-px blocks (nearest upsampling of a 4×4 map to 128 px)
    attn = torch.tensor([[1.0, 0, 0, 0], [1, 1, 0, 0], [1, 1, 1, 0], [1, 1, 1, 1]]).view(1, 1, 4, 4)
    image = torch.full((1, 1, 128, 128), 0.5)
    cfg = PseudoMaskConfig(body_mask=False, quantile=0.5)
    raw = build_pseudo_masks(attn, image, replace(cfg, smooth=False)).target[0, 0]
    smooth = build_pseudo_masks(attn, image, cfg).target[0, 0]
    assert torch.equal(raw, (attn[0, 0].repeat_interleave(32, 0).repeat_interleave(32, 1) > 0).float())
    for r, c in ((32, 63), (64, 95)):  # convex staircase corners are cut
        assert raw[r, c] == 1 and smooth[r, c] == 0
    for r, c in ((31, 32), (63, 64)):  # concave corners are filled
        assert raw[r, c] == 0 and smooth[r, c] == 1
    for r, c in ((48, 63), (48, 64), (63, 48), (64, 48)):  # mid-edge pixels stay
        assert smooth[r, c] == raw[r, c]
    changed = (raw != smooth).float().mean().item()
    assert 0 < changed < 0.02


@pytest.mark.parametrize("sigma_color", [0.5, 1.0, 3.0])
def test_fast_bilateral_equals_opencv(sigma_color):
    rng = np.random.default_rng(1)
    blocks = (rng.random((3, 1, 4, 4)) > 0.6).astype(np.float32)
    masks = torch.from_numpy(blocks).repeat_interleave(32, 2).repeat_interleave(32, 3)
    masks[1, 0, 40:90, 10:70] = 1.0  # an off-grid edge too
    ours = smooth_masks(masks, 8.0, sigma_color).numpy()
    for i in range(3):
        ref = cv2.bilateralFilter(masks[i, 0].numpy(), 0, sigma_color, 8.0)
        np.testing.assert_allclose(ours[i, 0], ref, atol=1e-5)


def test_aggregation_and_upsampling_settings():
    gen = torch.Generator().manual_seed(0)
    attn = torch.rand(2, 3, 2, 2, generator=gen)
    image = torch.full((2, 1, 64, 64), 0.5)
    agg = build_pseudo_masks(attn, image, RAW)
    per_head = build_pseudo_masks(attn, image, replace(RAW, aggregate="none"))
    assert agg.target.shape == (2, 1, 64, 64) and per_head.target.shape == (2, 3, 64, 64)
    assert torch.allclose(agg.attention[:, 0], per_head.attention.mean(1))
    bilinear = build_pseudo_masks(attn, image, replace(RAW, upsample="bilinear"))
    assert agg.attention[0, 0].unique().numel() <= 4 < bilinear.attention[0, 0].unique().numel()


def test_soft_and_binary_targets():
    attn = torch.tensor([[0.0, 1.0], [0.0, 0.0]]).view(1, 1, 2, 2)
    image = torch.full((1, 1, 64, 64), 0.5)
    cfg = PseudoMaskConfig(body_mask=False)
    binary = build_pseudo_masks(attn, image, cfg).target
    soft = build_pseudo_masks(attn, image, replace(cfg, target="soft")).target
    assert set(binary.unique().tolist()) == {0.0, 1.0}
    assert ((soft > 0.01) & (soft < 0.99)).any() and soft.min() >= 0 and soft.max() <= 1
    assert torch.equal(binary, (soft >= 0.5).float())


def test_shuffle_pairs_every_image_with_another_mask():
    gen = torch.Generator().manual_seed(0)
    attn = torch.rand(6, 1, 2, 2, generator=gen)
    image = torch.full((6, 1, 64, 64), 0.5)
    plain = build_pseudo_masks(attn, image, RAW).target
    shuffled = build_pseudo_masks(attn, image, replace(RAW, shuffle=True), torch.Generator().manual_seed(3)).target
    perm = derangement(6, torch.Generator().manual_seed(3))
    assert (perm != torch.arange(6)).all() and sorted(perm.tolist()) == list(range(6))
    assert torch.equal(shuffled, plain[perm])
    assert not torch.equal(shuffled, plain)


def test_official_profile_mask_settings():
    cfg = PseudoMaskConfig.official()
    assert (cfg.body_mask, cfg.smooth, cfg.compare, cfg.quantile_over) == (False, False, ">", "all")
    with pytest.raises(G2DBenchError, match="threshold"):
        PseudoMaskConfig(threshold="otsu")
    with pytest.raises(G2DBenchError, match="quantile"):
        PseudoMaskConfig(quantile=85)


def test_batched_paths_used_off_the_cpu_agree_with_the_cpu_paths():
    from g2d_bench.methods.g2d.pseudo_mask import _blur, _disc_kernel, _quantile

    gen = torch.Generator().manual_seed(0)
    flat = torch.rand(3, 2, 500, generator=gen)
    region = torch.rand(3, 1, 500, generator=gen).expand_as(flat) > 0.4
    torch.testing.assert_close(_quantile(flat, region, 0.85, batched=True), _quantile(flat, region, 0.85, batched=False))
    masks = (torch.rand(2, 1, 64, 64, generator=gen) > 0.5).float()
    kernel = _disc_kernel(5.0)
    torch.testing.assert_close(_blur(masks, kernel, batched=True), _blur(masks, kernel, batched=False), atol=1e-5, rtol=0)


class _StubModel:
    """Stands in for G2D in the figure helpers: fixed attention, the paper's mask settings."""

    training = False

    def __init__(self, attention: torch.Tensor) -> None:
        self.attention = attention
        self.cfg = type("Cfg", (), {"mask": PseudoMaskConfig(body_mask=False, smooth=False, quantile=0.75)})()

    def eval(self):
        return self

    def train(self, mode=True):
        return self

    def encode_image(self, images):
        return {"attention": self.attention}


def _stub_batch():
    attention = torch.full((3, 2, 2, 2), 0.1)
    for i, (r, c) in enumerate(((0, 0), (0, 1), (1, 1))):
        attention[i, :, r, c] = 0.9  # each image attends to another quadrant
    truth = torch.zeros(3, 1, 64, 64)
    for i, (r, c) in enumerate(((0, 0), (0, 1), (1, 1))):
        truth[i, 0, r * 32 + 4:r * 32 + 28, c * 32 + 4:c * 32 + 28] = 1  # lesion inside the attended block
    return _StubModel(attention), torch.full((3, 1, 64, 64), 0.5), truth


def test_pseudo_mask_overlap_beats_its_controls():
    from g2d_bench.methods.g2d.figure import pseudo_mask_overlap

    model, images, truth = _stub_batch()
    scores = pseudo_mask_overlap(model, images, truth)
    assert scores["n"] == 3
    assert scores["pseudo_iou"] == pytest.approx((24 * 24) / (32 * 32))  # lesion inside the mask block
    assert scores["shuffled_iou"] == 0.0  # another image's block misses the lesion
    assert 0 < scores["random_iou"] < 0.2
    assert scores["shifted_iou"] < scores["pseudo_iou"]  # the same block elsewhere overlaps less
    # lesion attention 0.9 vs body mean (0.9 + 3 × 0.1) / 4 = 0.3 (no body mask in the stub): lift 3
    assert scores["attention_lift"] == pytest.approx(3.0, rel=1e-5)
    assert scores["shuffled_lift"] == pytest.approx(0.1 / 0.3, rel=1e-5)
    # the per-image gain over the random mask is large against its standard error
    assert 0 < scores["iou_gain_se"] < (scores["pseudo_iou"] - scores["random_iou"]) / 3
    assert scores["iou_gain_shuffled_se"] == 0.0  # every image: pseudo 0.5625, shuffled 0
    truth[0] = 0  # images without a lesion are not scored
    assert pseudo_mask_overlap(model, images, truth)["n"] == 2


def test_per_head_overlap_scores_each_heads_own_mask():
    from g2d_bench.methods.g2d.figure import compute_pseudo_masks, per_head_overlap

    model, images, truth = _stub_batch()
    # head 1 always looks at the bottom-left quadrant, where no image has its lesion: a location prior
    model.attention[:, 1] = 0.1
    model.attention[:, 1, 1, 0] = 0.9
    head0, head1 = per_head_overlap(model, images, truth)
    assert head0["pseudo_iou"] == pytest.approx((24 * 24) / (32 * 32)) and head0["shuffled_iou"] == 0.0
    assert head1["pseudo_iou"] == 0.0 and head1["shuffled_iou"] == 0.0  # the same mask in every image
    aggregated = compute_pseudo_masks(model, images).target
    assert not torch.equal(aggregated, compute_pseudo_masks(model, images, head=0).target)
    with pytest.raises(G2DBenchError, match="head 2"):
        compute_pseudo_masks(model, images, head=2)


def test_coverage_by_finding_separates_own_image_from_another_and_chance():
    from g2d_bench.methods.g2d.figure import coverage_by_finding

    model, images, truth = _stub_batch()
    findings = [(0, "nodule", truth[0, 0].bool()), (1, "nodule", truth[1, 0].bool()), (2, "mass", truth[2, 0].bool())]
    out = coverage_by_finding(model, images, findings)
    assert list(out) == ["mass", "nodule"] and out["nodule"]["n"] == 2 and out["mass"]["n"] == 1
    for row in out.values():
        assert row["covered"] == 1.0  # each lesion lies inside its image's attended block
        assert row["shuffled"] == 0.0  # another image's block is another quadrant
        assert row["chance"] == pytest.approx(0.25)  # one block of four (no body mask in the stub)
    assert out["nodule"]["shuffled_se"] == 0.0  # both nodules: covered 1, shuffled 0
    assert np.isnan(out["mass"]["shuffled_se"])  # one mask: no standard error
    with pytest.raises(G2DBenchError, match="does not match"):
        coverage_by_finding(model, images, [(0, "nodule", truth[0, 0, :32].bool())])


def test_placement_maps_where_pseudo_masks_and_lesions_fall():
    from g2d_bench.methods.g2d.figure import placement

    model, images, truth = _stub_batch()  # pseudo masks: quadrants (0,0), (0,1), (1,1), one per image
    out = placement(model, images, truth, grid=2)
    np.testing.assert_allclose(out["pseudo"], [[1 / 3, 1 / 3], [0.0, 1 / 3]], atol=1e-6)
    lesion = 24 * 24 / (32 * 32) / 3  # a 24-px lesion in one 32-px quadrant of each of 3 images
    np.testing.assert_allclose(out["lesion"], [[lesion, lesion], [0.0, lesion]], atol=1e-6)
    truth[0] = 0  # only images with a lesion count
    np.testing.assert_allclose(placement(model, images, truth, grid=2)["pseudo"], [[0.0, 0.5], [0.0, 0.5]], atol=1e-6)


def test_plot_pseudo_masks_writes_a_png(tmp_path):
    from PIL import Image

    from g2d_bench.methods.g2d.figure import plot_pseudo_masks

    model, images, truth = _stub_batch()
    out = plot_pseudo_masks(model, images, ["effusion", "nodule", "normal"], tmp_path / "fig4.png", truth)
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (1000, 960)  # three rows of 10×3.2 in at 100 dpi
    assert [p.name for p in tmp_path.iterdir()] == ["fig4.png"]  # written atomically, no temporaries
    with pytest.raises(G2DBenchError, match="reports"):
        plot_pseudo_masks(model, images, ["one"], tmp_path / "x.png")


def test_across_seeds_summarises_with_the_seed_as_the_unit():
    from scipy import stats

    from g2d_bench.methods.g2d.inspect_masks import across_seeds

    results = [{"pseudo_iou": p, "random_iou": 0.04} for p in (0.05, 0.07, 0.02)]  # gains +0.01, +0.03, −0.02
    s = across_seeds(results)
    assert s["seeds"] == 3 and s["above"] == 2
    assert s["pseudo_iou"] == pytest.approx(0.14 / 3) and s["random_iou"] == pytest.approx(0.04)
    assert s["gains"] == pytest.approx([0.01, 0.03, -0.02])
    assert s["gain"] == pytest.approx(0.02 / 3)
    sd = np.sqrt(((0.01 - 0.02 / 3) ** 2 + (0.03 - 0.02 / 3) ** 2 + (-0.02 - 0.02 / 3) ** 2) / 2)
    assert s["gain_sd"] == pytest.approx(sd) and s["gain_se"] == pytest.approx(sd / np.sqrt(3))
    assert s["t_p"] == pytest.approx(stats.t.sf((0.02 / 3) / (sd / np.sqrt(3)), df=2))
    # exact signed-rank: |gains| rank 1, 3, 2; positive ranks sum to 4; of the 8 sign patterns,
    # {1,3}, {2,3} and {1,2,3} reach ≥ 4
    assert s["wilcoxon_p"] == pytest.approx(3 / 8)
    assert across_seeds([{"pseudo_iou": p, "random_iou": 0.04} for p in (0.05, 0.06, 0.07)])["wilcoxon_p"] == pytest.approx(1 / 8)
    one = across_seeds(results[:1])
    assert one["above"] == 1 and np.isnan(one["t_p"]) and np.isnan(one["gain_sd"])
    with pytest.raises(G2DBenchError, match="no scored"):
        across_seeds([])
