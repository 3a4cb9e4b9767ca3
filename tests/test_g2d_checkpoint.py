"""G2D checkpoints (ours and the official layouts, strict) and the G2D method adapter."""
import pytest
import segmentation_models_pytorch as smp
import torch

from g2d_bench.adapter import Capability
from g2d_bench.errors import G2DBenchError
from g2d_bench.methods.g2d.adapter import build, load_g2d_adapter
from g2d_bench.methods.g2d.checkpoint import load_g2d, load_official_checkpoint, save_g2d
from g2d_bench.methods.g2d.config import G2DConfig
from g2d_bench.methods.g2d.model import build_g2d
from g2d_bench.methods.common.text import save_text

REPORTS = ["No acute process.", "Left pleural effusion.", "Right upper lobe nodule.", "Mild cardiomegaly."]
#: the official profile at CPU size; a 12-layer text tower so the official freeze of 9 layers applies
OFFICIAL_TINY = G2DConfig(profile="official", arch="resnet18", image_size=64, text_model="scratch",
                          text_max_length=32, scratch_layers=12, scratch_hidden=32, scratch_heads=2)


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: one intra-op thread. On a shared 2-core machine the hand-off to a second
    OpenMP thread costs more than these kernels (measured: fwd+bwd 0.35 s vs 1–8 s)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield threads
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def official_model():
    torch.manual_seed(0)
    return build_g2d(OFFICIAL_TINY, REPORTS).eval()


@pytest.fixture(scope="module")
def official_files(official_model, tmp_path_factory):
    """The three files the official trainer writes, built from a model's state dict."""
    root = tmp_path_factory.mktemp("official")
    state = dict(official_model.state_dict())
    state["pseudo_conv.weight"], state["pseudo_conv.bias"] = torch.zeros(128, 256, 1, 1), torch.zeros(128)
    torch.save({"epoch": 50, "model_state_dict": state, "optimizer_state_dict": {"state": {}, "param_groups": []}},
               root / "g2d_50_checkpoint.pth")
    torch.save(official_model.img_model.encoder.state_dict(), root / "g2d_encoder.pth")
    torch.save(official_model.img_model.state_dict(), root / "g2d_encoder_decoder.pth")
    save_text(official_model.lm_model, official_model.tokenizer, root / "text")
    return root


def _images(n: int = 2, size: int = 64) -> torch.Tensor:
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(0))


def _same_outputs(a, b) -> None:
    images = _images()
    tok = a.tokenize(REPORTS[:2])
    assert torch.equal(tok["input_ids"], b.tokenize(REPORTS[:2])["input_ids"])
    with torch.no_grad():
        torch.testing.assert_close(a.encode_image(images)["global"], b.encode_image(images)["global"])
        torch.testing.assert_close(a.encode_text(**tok), b.encode_text(**tok))


def test_our_checkpoint_round_trip(official_model, tmp_path):
    path = save_g2d(official_model, tmp_path / "ckpt")
    assert {p.name for p in path.iterdir()} == {"weights.safetensors", "config.json", "text"}
    loaded = load_g2d(path).eval()
    assert loaded.cfg == official_model.cfg
    _same_outputs(official_model, loaded)
    (path / "last.pt").write_bytes(b"engine state")
    save_g2d(official_model, path)  # overwriting: no temporaries, other files kept
    assert {p.name for p in path.iterdir()} == {"weights.safetensors", "config.json", "text", "last.pt"}


def test_official_checkpoint_round_trip(official_model, official_files):
    loaded = load_official_checkpoint(official_files / "g2d_50_checkpoint.pth", str(official_files / "text")).eval()
    assert (loaded.cfg.arch, loaded.cfg.image_size, loaded.cfg.heads) == ("resnet18", 64, 4)
    _same_outputs(official_model, loaded)


def _save_state(path, state):
    torch.save({"epoch": 1, "model_state_dict": state, "optimizer_state_dict": {}}, path)
    return path


def test_official_loader_is_strict(official_model, official_files, tmp_path):
    text = str(official_files / "text")
    state = dict(official_model.state_dict())
    missing = {k: v for k, v in state.items() if not k.startswith("proj_t.")}
    with pytest.raises(G2DBenchError, match=r"missing: proj_t\.0\.weight"):
        load_official_checkpoint(_save_state(tmp_path / "a.pth", missing), text)
    extra = {**state, "img_model.extra.weight": torch.zeros(1)}
    with pytest.raises(G2DBenchError, match=r"unexpected: img_model\.extra\.weight"):
        load_official_checkpoint(_save_state(tmp_path / "b.pth", extra), text)
    # a 3-head config cannot take the 4-head attention pool: a loud shape error
    with pytest.raises(G2DBenchError, match="shapes differ.*in_proj"):
        load_official_checkpoint(official_files / "g2d_50_checkpoint.pth", text, OFFICIAL_TINY.with_overrides({"heads": 3}))


def test_resnet18_weights_do_not_load_into_resnet50(official_files):
    cfg50 = G2DConfig(profile="official", image_size=64, text_model=str(official_files / "text"))
    with pytest.raises(G2DBenchError, match="arch resnet18 .checkpoint. vs resnet50"):
        load_official_checkpoint(official_files / "g2d_50_checkpoint.pth", str(official_files / "text"), cfg50)
    with pytest.raises(G2DBenchError, match="resnet18.*--arch resnet50"):
        build(str(official_files / "g2d_encoder.pth"), arch="resnet50")


def test_unreadable_files_are_user_errors(tmp_path):
    bad = tmp_path / "bad.pth"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(G2DBenchError, match="weights_only"):
        load_g2d_adapter(bad)
    with pytest.raises(G2DBenchError, match="needs --checkpoint"):
        build(None)
    with pytest.raises(G2DBenchError, match="config.json"):
        load_g2d_adapter(tmp_path)


def test_official_encoder_and_encoder_decoder_files(official_model, official_files):
    enc = load_g2d_adapter(official_files / "g2d_encoder.pth")
    assert enc.arch == "resnet18" and enc.capabilities == frozenset()
    ref = official_model.img_model.encoder.state_dict()
    assert all(torch.equal(v, ref[k]) for k, v in enc.backbone.state_dict().items())
    encdec = load_g2d_adapter(official_files / "g2d_encoder_decoder.pth")
    assert encdec.has(Capability.DECODER) and not encdec.has(Capability.TEXT)
    unet = smp.Unet("resnet18", encoder_weights=None, classes=1)
    unet.encoder.load_state_dict(encdec.backbone.state_dict())
    unet.load_state_dict({**unet.state_dict(), **encdec.decoder_state_dict()}, strict=True)
    assert torch.equal(unet.segmentation_head[0].weight, official_model.img_model.segmentation_head[0].weight)
    image_only = load_g2d_adapter(official_files / "g2d_50_checkpoint.pth")  # no text_model given
    assert image_only.capabilities == frozenset({Capability.DECODER})
    with pytest.raises(NotImplementedError, match="text tower"):
        image_only.encode_text(["effusion"])


def test_adapter_embeddings(official_model, official_files, tmp_path):
    adapter = build(str(save_g2d(official_model, tmp_path / "ckpt")))
    assert adapter.capabilities == {Capability.TEXT, Capability.DENSE_TEXT, Capability.DECODER}
    assert adapter.preprocess.mean is not None  # official profile: ImageNet normalisation
    images = _images(3, 96)
    with torch.no_grad():
        glob = adapter.project_image(images)
        dense = adapter.dense_embeddings(images)
        text = adapter.encode_text(["pleural effusion", "no effusion"])
        feats = adapter.stage_features(images)
        ref = official_model.img_model.encoder(official_model.normalize(images))
    assert glob.shape == (3, 128) and text.shape == (2, 128) and dense.shape == (3, 128, 3, 3)
    for emb, dim in ((glob, 1), (text, 1), (dense, 1)):
        assert torch.allclose(emb.norm(dim=dim), torch.ones(()), atol=1e-5)
    torch.testing.assert_close(feats[-1], ref[-1])  # backbone = the U-Net encoder, same preprocessing
    full = load_g2d_adapter(official_files / "g2d_50_checkpoint.pth", text_model=str(official_files / "text"))
    assert full.has(Capability.TEXT)
    torch.testing.assert_close(full.project_image(images).detach(), glob)


def test_engine_pretrains_g2d_and_its_checkpoint_loads_as_a_method(tmp_path, monkeypatch):
    """The pretraining engine with G2D's recipe: two steps, then the folder loads as an adapter."""
    import numpy as np

    import g2d_bench.pretrain as engine
    from g2d_bench.methods import METHODS
    from g2d_bench.methods.g2d.recipe import RECIPE

    images = np.random.default_rng(0).integers(0, 255, (8, 80, 80), dtype=np.uint8)
    reports = [REPORTS[i % 4] for i in range(8)]
    monkeypatch.setattr(engine, "load_pairs", lambda config, size, home=None: (images, reports, {"fake": True}))
    overrides = {"image_size": 64, "scratch_layers": 1, "scratch_hidden": 32, "text_max_length": 16, "scratch_mlm_steps": 2}
    opt = RECIPE.optimisation(RECIPE.make_config("paper", "cpu", overrides))
    assert opt["schedule"] == "warmup-cosine" and set(opt["sources"]) == set(opt) - {"sources"}
    out = engine.pretrain(engine.PretrainConfig(method="g2d", out=tmp_path / "run", scale="cpu", max_steps=2,
                                                batch_size=4, progress=False, channels_last=False,
                                                method_overrides=overrides))
    adapter = METHODS.get("g2d").build_adapter(out)
    assert adapter.arch == "resnet18" and adapter.has(Capability.DENSE_TEXT)
    assert adapter.info["config"]["scale"] == "cpu"
    with torch.no_grad():
        assert adapter.encode_text(["effusion"]).shape == (1, 128)


@pytest.mark.parametrize("aggregate", ["mean", "none"])
def test_encoder_decoder_transfer_from_a_real_g2d(tmp_path, aggregate):
    """The segmentation task's U-Net gets G2D's pretrained decoder; with per-head pseudo masks
    (Table 5f, one decoder channel per head) the decoder transfers and the 1-class head starts fresh."""
    from g2d_bench.tasks.segmentation import build_unet

    cfg = G2DConfig(arch="resnet18", image_size=64, text_model="scratch", text_max_length=32, scratch_layers=2,
                    scratch_hidden=32, scratch_heads=2, heads=2).with_overrides({"mask.aggregate": aggregate})
    torch.manual_seed(0)
    model = build_g2d(cfg, REPORTS).eval()
    assert model.img_model.segmentation_head[0].out_channels == (2 if aggregate == "none" else 1)
    adapter = build(str(save_g2d(model, tmp_path / "ckpt")))
    unet = build_unet(adapter, transfer="encoder-decoder")
    for key, value in model.img_model.decoder.state_dict().items():
        assert torch.equal(unet.decoder.state_dict()[key], value), key
    head_equal = torch.equal(unet.segmentation_head[0].weight, model.img_model.segmentation_head[0].weight[:1])
    assert head_equal == (aggregate == "mean")
    assert unet.segmentation_head[0].out_channels == 1
