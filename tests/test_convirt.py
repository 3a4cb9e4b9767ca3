"""ConVIRT: the loss on hand-checkable tensors, the profiles, the model, the recipe, and the
checkpoint loaders (our folders, the MGCA repository's Lightning .ckpt, bare torchvision ResNets)."""
import argparse
import math
import re
from collections import OrderedDict

import pytest
import torch
import torch.nn.functional as F

from g2d_bench.adapter import Capability
from g2d_bench.errors import G2DBenchError
from g2d_bench.methods.convirt.config import ConVIRTConfig, training_profile
from g2d_bench.methods.convirt.losses import convirt_loss
from g2d_bench.methods.convirt.model import (
    ConVIRT,
    augmentations,
    build_convirt,
    sentence_sampler,
)
from g2d_bench.methods.convirt.recipe import RECIPE

REPORTS = ["FINDINGS: small right pneumothorax. IMPRESSION: pneumothorax.", "FINDINGS: no effusion. IMPRESSION: normal chest.",
           "FINDINGS: left lower lobe opacity. IMPRESSION: pneumonia.", "FINDINGS: heart is enlarged. IMPRESSION: cardiomegaly."]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    """Tiny models: one intra-op thread (a shared 2-core machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny(profile: str = "paper", **overrides) -> ConVIRTConfig:
    return RECIPE.make_config(profile, "cpu", {**RECIPE.tiny, **overrides})


def build(profile: str = "paper", seed: int = 0, **overrides) -> ConVIRT:
    torch.manual_seed(seed)
    return build_convirt(tiny(profile, **overrides), REPORTS * 4)


def images(n: int = 4, size: int = 64, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, 1, size, size, generator=torch.Generator().manual_seed(seed))


# -- the loss -------------------------------------------------------------------------------------------
def _ce(logit_true: float, logits: list[float]) -> float:
    return -(logit_true - math.log(sum(math.exp(z) for z in logits)))


def test_loss_directions_by_hand():
    """v1=(1,0), v2=(0,1); u1=(1,0), u2=(0.6,0.8) (unit rows), τ = 1: S = [[1, .6], [0, .8]]."""
    img = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    txt = torch.tensor([[1.0, 0.0], [0.6, 0.8]])
    i2t = (_ce(1.0, [1.0, 0.6]) + _ce(0.8, [0.0, 0.8])) / 2  # rows of S
    t2i = (_ce(1.0, [1.0, 0.0]) + _ce(0.8, [0.6, 0.8])) / 2  # columns of S
    out = convirt_loss(img, txt, temperature=1.0)
    assert out["i2t"].item() == pytest.approx(i2t, rel=1e-6) and out["t2i"].item() == pytest.approx(t2i, rel=1e-6)
    assert out["loss"].item() == pytest.approx(i2t + t2i, rel=1e-6)  # MGCA: loss0 + loss1
    assert out["nce"].item() == pytest.approx((i2t + t2i) / 2, rel=1e-6)
    lam = convirt_loss(img, txt, temperature=1.0, i2t_weight=0.75, t2i_weight=0.25)["loss"]  # ConVIRT Eq. 3
    assert lam.item() == pytest.approx(0.75 * i2t + 0.25 * t2i, rel=1e-6)
    # cosine: the rows' lengths do not matter; τ divides the cosines
    assert convirt_loss(3 * img, 0.5 * txt, temperature=1.0)["loss"].item() == pytest.approx(i2t + t2i, rel=1e-6)
    tau = convirt_loss(img, txt, temperature=0.5)["i2t"].item()
    assert tau == pytest.approx((_ce(2.0, [2.0, 1.2]) + _ce(1.6, [0.0, 1.6])) / 2, rel=1e-6)


def test_loss_collapsed_towers_give_ln_batch_and_local_equals_all_in_one_process():
    torch.manual_seed(0)
    txt = torch.randn(8, 5)
    same = torch.ones(8, 5)  # every image embedding the same vector
    out = convirt_loss(same, txt, temperature=0.07)
    # each report sees the same logit for every image: CE(t→i) = ln 8 exactly
    assert out["t2i"].item() == pytest.approx(math.log(8), rel=1e-6) and out["i2t"].item() > math.log(8)
    img = torch.randn(8, 5, requires_grad=True)
    a = convirt_loss(img, txt, 0.07, gather="all")["loss"]
    b = convirt_loss(img, txt, 0.07, gather="local")["loss"]
    ref = F.cross_entropy(F.normalize(img, dim=1) @ F.normalize(txt, dim=1).T / 0.07, torch.arange(8))
    ref = ref + F.cross_entropy(F.normalize(txt, dim=1) @ F.normalize(img, dim=1).T / 0.07, torch.arange(8))
    assert a.item() == pytest.approx(b.item()) == pytest.approx(ref.item(), rel=1e-6)
    grad_a, = torch.autograd.grad(a, img)
    grad_ref, = torch.autograd.grad(ref, img)
    torch.testing.assert_close(grad_a, grad_ref)


# -- profiles -------------------------------------------------------------------------------------------
def test_profiles_and_derived_settings():
    paper, official, original = (ConVIRTConfig(profile=p) for p in ("paper", "official", "original"))
    assert (paper.arch, paper.image_size, paper.proj_dim, paper.proj_hidden, paper.temperature) == ("resnet50", 224, 128, 2048, 0.07)
    assert (paper.i2t_weight, paper.t2i_weight, paper.text_pooling, paper.gather, paper.freeze_layers) == (1.0, 1.0, "cls", "all", 0)
    assert (paper.text_layers, paper.token_types, paper.text_positions, paper.upsample_size) == (0, True, "absolute", 0)
    assert (official.text_layers, official.token_types, official.text_positions, official.gather) == (6, False, "zeros", "local")
    assert official.upsample_size == 299 and official.with_overrides({"image_size": 96}).upsample_size == 128
    assert (original.temperature, original.i2t_weight, original.t2i_weight, original.proj_dim) == (0.1, 0.75, 0.25, 512)
    assert (original.projection, original.text_pooling, original.text_sampling, original.freeze_layers) == ("mlp", "max", "sentence", 6)
    assert original.freeze_embeddings and not paper.freeze_embeddings
    cpu = ConVIRTConfig(scale="cpu")
    assert (cpu.arch, cpu.image_size, cpu.text_model, cpu.text_max_length, cpu.freeze_layers) == ("resnet18", 96, "scratch", 64, 1)
    assert ConVIRTConfig.from_dict(official.to_dict()) == official
    assert paper.with_overrides({"profile": "original"}) == original  # profile values are re-derived
    with pytest.raises(G2DBenchError, match="unknown ConVIRT setting"):
        ConVIRTConfig.from_dict({"temprature": 0.1})
    with pytest.raises(G2DBenchError, match="text_pooling"):
        ConVIRTConfig(text_pooling="mean")
    with pytest.raises(G2DBenchError, match="i2t_weight"):
        ConVIRTConfig(i2t_weight=0.0, t2i_weight=0.0)


def test_training_profiles_and_optimisers():
    paper, original = training_profile(ConVIRTConfig()), training_profile(ConVIRTConfig(profile="original"))
    assert (paper["optimizer"], paper["lr"], paper["weight_decay"], paper["schedule"], paper["warmup_fraction"]) == (
        "adamw", 2e-5, 0.05, "warmup-cosine", 0.4)
    assert (paper["min_lr"], paper["epochs"], paper["batch_size"], paper["cache_size"]) == (1e-8, 50, 144, 256)
    assert (original["optimizer"], original["lr"], original["weight_decay"], original["batch_size"]) == ("adam", 1e-4, 1e-6, 32)
    assert training_profile(ConVIRTConfig(scale="cpu"))["batch_size"] == 64
    assert set(paper["sources"]) >= {"lr", "weight_decay", "schedule", "batch_size", "epochs"}
    model = build()
    adamw = RECIPE.optimizer(model, paper, 1e-3)
    adam = RECIPE.optimizer(model, original, 1e-3)
    assert type(adamw) is torch.optim.AdamW and type(adam) is torch.optim.Adam
    assert adam.param_groups[0]["weight_decay"] == 1e-6
    trainable = {id(p) for p in model.parameters() if p.requires_grad}
    assert {id(p) for p in adamw.param_groups[0]["params"]} == trainable
    assert RECIPE.quick.max_steps == 200 and RECIPE.quick.batch_size == 32 and RECIPE.contrastive_loss == "nce"


# -- the model ------------------------------------------------------------------------------------------
def test_forward_backward_logs_the_directions():
    model = build()
    out = model(images(), **model.tokenize(REPORTS))
    assert set(out) == {"loss", "i2t", "t2i", "nce"}
    assert out["loss"].item() == pytest.approx(out["i2t"].item() + out["t2i"].item(), rel=1e-5)
    out["loss"].backward()
    heads = dict(model.img_encoder.global_embed.named_parameters())
    assert heads["head.0.weight"].grad is not None and heads["head.0.bias"].grad is None  # bias before BN: frozen
    assert not heads["head.0.bias"].requires_grad and not heads["head.3.bias"].requires_grad
    assert "head.4.weight" not in heads  # last BatchNorm without affine (MGCA GlobalEmbedding)
    keys = set(model.state_dict())
    assert {"img_encoder.model.conv1.weight", "img_encoder.global_embed.head.4.running_mean",
            "text_encoder.model.embeddings.word_embeddings.weight", "text_encoder.global_embed.head.3.weight"} <= keys
    assert not any(k.startswith(("img_encoder.model.fc.", "text_encoder.model.pooler.")) for k in keys)


def test_mgca_head_sizes_at_paper_scale():
    from g2d_bench.methods.convirt.model import ProjectionHead

    head = ProjectionHead("mgca", 2048, 2048, 128).head
    assert [tuple(head[i].weight.shape) for i in (0, 3)] == [(2048, 2048), (128, 2048)] and head[1].num_features == 2048
    assert head[4].num_features == 128 and head[4].weight is None
    mlp = ProjectionHead("mlp", 768, 0, 512).head
    assert [type(m).__name__ for m in mlp] == ["Linear", "ReLU", "Linear"] and tuple(mlp[0].weight.shape) == (768, 768)


def test_official_text_quirks_zero_positions_no_token_types_six_layers():
    # official: every token at position 0, so BERT cannot see word order: the [CLS] output is the
    # same for a report and its words in another order; the paper profile sees order
    official = build("official", scratch_layers=8).eval()
    paper = build("paper", scratch_layers=8).eval()
    assert len(official.text_encoder.model.encoder.layer) == 6 and official.text_encoder.model.config.num_hidden_layers == 6
    assert len(paper.text_encoder.model.encoder.layer) == 8
    tok_types = official.text_encoder.model.embeddings.token_type_embeddings.weight
    assert not tok_types.requires_grad and torch.count_nonzero(tok_types) == 0
    tok = official.tokenize(["left lower lobe opacity"])
    ids = tok["input_ids"]
    shuffled = torch.cat([ids[:, :1], ids[:, 1:-1].flip(1), ids[:, -1:]], dim=1)
    assert not torch.equal(ids, shuffled)
    with torch.no_grad():
        a = official.embed_text(ids, tok["attention_mask"])
        b = official.embed_text(shuffled, tok["attention_mask"])
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5)
        c = paper.embed_text(ids, tok["attention_mask"])
        d = paper.embed_text(shuffled, tok["attention_mask"])
        assert not torch.allclose(c, d, rtol=1e-5, atol=1e-5)
    # official: images resized to 299·s/224 inside the encoder (MGCA resnet_forward), bilinear
    x = images(2, 64)
    assert tuple(official.img_encoder.normalize(x).shape) == (2, 3, 85, 85)  # round(64 · 299 / 224)
    assert tuple(paper.img_encoder.normalize(x).shape) == (2, 3, 64, 64)
    torch.testing.assert_close(paper.img_encoder.normalize(torch.full((1, 1, 8, 8), 0.75)), torch.full((1, 3, 8, 8), 0.5))


def test_padding_does_not_change_text_embeddings_cls_and_max():
    for profile in ("paper", "original"):
        model = build(profile).eval()
        with torch.no_grad():
            alone = model.embed_text(**model.tokenize([REPORTS[1]]))
            batch = model.tokenize([REPORTS[1], REPORTS[0] + " " + REPORTS[2]])
            assert batch["attention_mask"][0].sum() < batch["attention_mask"].shape[1]  # REPORTS[1] is padded
            torch.testing.assert_close(model.embed_text(**batch)[:1], alone, rtol=1e-5, atol=1e-5)


def test_original_profile_max_pools_and_freezes_embeddings():
    model = build("original", scratch_layers=2).eval()
    text = model.text_encoder
    assert not any(p.requires_grad for p in text.model.embeddings.parameters())
    assert not any(p.requires_grad for p in text.model.encoder.layer[0].parameters())  # 1 of 2 scratch layers (cpu)
    tok = model.tokenize(REPORTS[:2])
    with torch.no_grad():
        hidden = text.model(**tok).last_hidden_state
        n = int(tok["attention_mask"][1].sum())
        torch.testing.assert_close(text.pooled(**tok)[1], hidden[1, :n].max(dim=0).values)


def test_augmentations_and_sentence_sampling():
    for profile in ("paper", "original"):
        cfg = tiny(profile)
        raw = torch.randint(0, 256, (1, round(64 * 256 / 224), round(64 * 256 / 224)), dtype=torch.uint8)
        torch.manual_seed(0)
        out = augmentations(cfg)(raw)
        assert out.shape == (1, 64, 64) and out.dtype == torch.float32 and 0 <= out.min() and out.max() <= 1
    sample = sentence_sampler()
    report = "FINDINGS: No effusion. Heart size normal! IMPRESSION: Normal chest?"
    sentences = {"FINDINGS: No effusion.", "Heart size normal!", "IMPRESSION: Normal chest?"}
    torch.manual_seed(0)
    drawn = [sample(report) for _ in range(60)]
    assert set(drawn) == sentences
    torch.manual_seed(0)
    assert [sample(report) for _ in range(60)] == drawn
    assert sample("") == "" and sample("no full stop") == "no full stop"
    assert RECIPE.text_transform(tiny("paper")) is None and RECIPE.text_transform(tiny("original"))(report) in sentences


def test_paper_size_forward_backward():
    """ResNet-50 at 224 px with MGCA's 2048→2048→128 heads, a BERT of Bio_ClinicalBERT's size (12
    layers, hidden 768, 12 heads, vocabulary 28,996; random weights), batch 2: one forward/backward
    (paper profile: sum of both directions, τ 0.07)."""
    from transformers import BertConfig, BertModel

    from g2d_bench.methods.common.resnet import make_resnet
    from g2d_bench.methods.common.text import train_wordpiece

    cfg = ConVIRTConfig(text_model="scratch", text_max_length=64)
    torch.manual_seed(0)
    bert = BertModel(BertConfig(vocab_size=28996, hidden_size=768, num_hidden_layers=12, num_attention_heads=12,
                                intermediate_size=3072, max_position_embeddings=512))
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        tokenizer = train_wordpiece(REPORTS, 200, tmp)
    model = ConVIRT(cfg, make_resnet("resnet50"), bert, tokenizer)
    assert sum(p.numel() for p in bert.parameters()) > 100e6
    out = model(images(2, 224), **model.tokenize(REPORTS[:2]))
    out["loss"].backward()
    assert torch.isfinite(out["loss"]) and out["loss"].item() == pytest.approx(out["i2t"].item() + out["t2i"].item(), rel=1e-5)
    assert model.img_encoder.model.layer4[2].conv3.weight.grad is not None
    assert model.text_encoder.model.encoder.layer[11].output.dense.weight.grad is not None
    assert model.text_encoder.model.encoder.layer[0].output.dense.weight.grad is not None  # MGCA: nothing frozen
    assert tuple(model.img_encoder.global_embed.head[3].weight.shape) == (128, 2048)
    assert tuple(model.text_encoder.global_embed.head[0].weight.shape) == (2048, 768)


# -- checkpoints ----------------------------------------------------------------------------------------
def _same_embeddings(a: ConVIRT, b: ConVIRT) -> None:
    x = images(2)
    tok = a.tokenize(REPORTS[:2])
    with torch.no_grad():
        torch.testing.assert_close(a.embed_image(x), b.embed_image(x))
        torch.testing.assert_close(a.embed_text(**tok), b.embed_text(**tok))


def test_our_folder_round_trip_and_adapter(tmp_path):
    from g2d_bench.methods.convirt.adapter import build as build_adapter
    from g2d_bench.methods.convirt.checkpoint import load_convirt, save_convirt

    for profile in ("official", "original"):
        model = build(profile).eval()
        folder = save_convirt(model, tmp_path / profile)
        loaded = load_convirt(folder).eval()
        assert loaded.cfg == model.cfg
        _same_embeddings(model, loaded)
    adapter = build_adapter(str(tmp_path / "original")).eval()
    assert adapter.has(Capability.TEXT) and not adapter.has(Capability.DENSE_TEXT) and adapter.arch == "resnet18"
    assert adapter.preprocess.mean == (0.485, 0.456, 0.406)  # original: ImageNet statistics
    with torch.no_grad():
        assert adapter.encode_text(["pneumonia"]).shape == (1, 512) and adapter.project_image(images(2)).shape == (2, 512)
    with pytest.raises(G2DBenchError, match="needs --checkpoint"):
        build_adapter(None)
    with pytest.raises(G2DBenchError, match="--arch resnet50"):
        build_adapter(str(tmp_path / "original"), arch="resnet50")


def _mgca_head(c_in: int, hidden: int, c_out: int, conv: bool) -> dict:
    """A state dict of MGCA encoder.py's Global/LocalEmbedding ``head`` (random values)."""
    lin = (lambda i, o: torch.nn.Conv1d(i, o, 1)) if conv else torch.nn.Linear
    head = torch.nn.Sequential(lin(c_in, hidden), torch.nn.BatchNorm1d(hidden), torch.nn.ReLU(),
                               lin(hidden, c_out), torch.nn.BatchNorm1d(c_out, affine=False))
    with torch.no_grad():  # non-trivial BatchNorm statistics
        for bn in (head[1], head[4]):
            bn.running_mean.uniform_(-0.5, 0.5)
            bn.running_var.uniform_(0.5, 2.0)
            bn.num_batches_tracked.fill_(1000)
        head[1].weight.uniform_(0.5, 1.5)
        head[1].bias.uniform_(-0.2, 0.2)
    return {f"head.{k}": v for k, v in head.state_dict().items()}


def mgca_convirt_state(bert_config, arch: str = "resnet50") -> OrderedDict:
    """The MGCA ConVIRT LightningModule's state dict with its real key names (mgca/models/convirt/
    convirt_module.py + backbones/encoder.py + med.py + cnn_backbones.py): torchvision ResNet
    (fc = Identity), Global/LocalEmbedding heads 2048→2048→128 and 1024→2048→128 (image),
    768-wide → 2048 → 128 (text), and a BLIP BERT without token-type embedding and pooler, with a
    persistent position_ids buffer and a cross-attention block in every layer."""
    import torchvision
    from transformers import BertModel

    torch.manual_seed(1)
    net = getattr(torchvision.models, arch)(weights=None)
    state = OrderedDict((f"img_encoder.model.{k}", v) for k, v in net.state_dict().items() if not k.startswith("fc."))
    width = net.fc.in_features
    state.update({f"img_encoder.global_embed.{k}": v for k, v in _mgca_head(width, 2048, 128, conv=False).items()})
    state.update({f"img_encoder.local_embed.{k}": v for k, v in _mgca_head(1024, 2048, 128, conv=True).items()})
    bert = BertModel(bert_config, add_pooling_layer=False).state_dict()
    for key, value in bert.items():
        if "token_type_embeddings" in key:
            continue  # med.py BertEmbeddings: word + position only
        state[f"text_encoder.model.{key}"] = value
        match = re.match(r"encoder\.layer\.(\d+)\.attention\.(.*)", key)
        if match:  # med.py BertLayer.crossattention (add_cross_attention: true), unused in mode="text"
            state[f"text_encoder.model.encoder.layer.{match.group(1)}.crossattention.{match.group(2)}"] = torch.randn_like(value)
    state["text_encoder.model.embeddings.position_ids"] = torch.arange(bert_config.max_position_embeddings).expand(1, -1)
    hidden = bert_config.hidden_size
    state.update({f"text_encoder.global_embed.{k}": v for k, v in _mgca_head(hidden, 2048, 128, conv=False).items()})
    state.update({f"text_encoder.local_embed.{k}": v for k, v in _mgca_head(hidden, 2048, 128, conv=True).items()})
    return state


class CustomHparams:
    """Stands for a class the loading process cannot import (hyper-parameters of a training run)."""

    def __init__(self):
        self.img_encoder, self.emb_dim = "resnet_50", 128


def _touch(path):  # what a malicious pickle would run on load
    open(path, "w").write("ran")


class Malicious:
    def __init__(self, path):
        self.path = path

    def __reduce__(self):
        return (_touch, (self.path,))


@pytest.fixture(scope="module")
def mgca_files(tmp_path_factory):
    """A Lightning-like ConVIRT .ckpt of the MGCA layout (ResNet-50, a small BERT with the real key
    structure), its tokenizer folder, and the state dict."""
    from transformers import BertConfig

    from g2d_bench.methods.common.text import save_text, train_wordpiece

    root = tmp_path_factory.mktemp("mgca")
    tokenizer = train_wordpiece(REPORTS, 300, root / "vocab")
    config = BertConfig(vocab_size=len(tokenizer), hidden_size=64, num_hidden_layers=2, num_attention_heads=1,
                        intermediate_size=96, max_position_embeddings=40)
    state = mgca_convirt_state(config)
    hparams = argparse.Namespace(img_encoder="resnet_50", emb_dim=128, softmax_temperature=0.07, learning_rate=2e-5,
                                 custom=CustomHparams(), evil=Malicious(str(root / "EXECUTED")))
    torch.save({"epoch": 12, "global_step": 4000, "pytorch-lightning_version": "1.6.0", "state_dict": state,
                "hyper_parameters": hparams, "optimizer_states": [{"state": {}, "param_groups": []}], "lr_schedulers": []},
               root / "convirt.ckpt")
    from transformers import BertModel
    save_text(BertModel(config), tokenizer, root / "text")
    return root, state


def _reference_embeddings(state: dict, x: torch.Tensor, ids: torch.Tensor, mask: torch.Tensor):
    """MGCA's forward computed directly from the tensors (independent of the ConVIRT classes):
    normalise (x − 0.5)/0.5 → bilinear resize to 299 (aligned corners) → ResNet-50 → head
    (Linear, BN eval, ReLU, Linear, BN eval); BERT with every position 0 and no token type →
    [CLS] → head; both L2-normalised."""
    import torchvision
    from transformers import BertConfig, BertModel

    def head(prefix, h):
        g = lambda k: state[f"{prefix}.head.{k}"]  # noqa: E731
        h = F.linear(h, g("0.weight"), g("0.bias"))
        h = F.batch_norm(h, g("1.running_mean"), g("1.running_var"), g("1.weight"), g("1.bias"), eps=1e-5)
        h = F.linear(torch.relu(h), g("3.weight"), g("3.bias"))
        return F.normalize(F.batch_norm(h, g("4.running_mean"), g("4.running_var"), eps=1e-5), dim=-1)

    net = torchvision.models.resnet50(weights=None)
    net.fc = torch.nn.Identity()
    net.load_state_dict({k.removeprefix("img_encoder.model."): v for k, v in state.items() if k.startswith("img_encoder.model.")})
    z = F.interpolate((x.expand(-1, 3, -1, -1) - 0.5) / 0.5, size=(299, 299), mode="bilinear", align_corners=True)
    with torch.no_grad():
        img = head("img_encoder.global_embed", net.eval()(z))
        words = state["text_encoder.model.embeddings.word_embeddings.weight"]
        layers = 1 + max(int(k.split(".")[4]) for k in state if k.startswith("text_encoder.model.encoder.layer."))
        cfg = BertConfig(vocab_size=words.shape[0], hidden_size=words.shape[1], num_hidden_layers=layers,
                         num_attention_heads=1, intermediate_size=state["text_encoder.model.encoder.layer.0.intermediate.dense.weight"].shape[0],
                         max_position_embeddings=state["text_encoder.model.embeddings.position_embeddings.weight"].shape[0])
        bert = BertModel(cfg, add_pooling_layer=False).eval()
        text_state = {k.removeprefix("text_encoder.model."): v for k, v in state.items()
                      if k.startswith("text_encoder.model.") and "crossattention" not in k and "position_ids" not in k}
        text_state["embeddings.token_type_embeddings.weight"] = torch.zeros(2, words.shape[1])
        bert.load_state_dict(text_state)
        cls = bert(input_ids=ids, attention_mask=mask, position_ids=torch.zeros_like(ids)).last_hidden_state[:, 0]
        txt = head("text_encoder.global_embed", cls)
    return img, txt, net


def test_mgca_ckpt_loads_every_tensor_without_running_pickled_code(mgca_files):
    from g2d_bench.methods.common.lightning import read_lightning
    from g2d_bench.methods.convirt.adapter import build as build_adapter
    from g2d_bench.methods.convirt.checkpoint import UNUSED_MGCA

    root, state = mgca_files
    checkpoint = read_lightning(root / "convirt.ckpt")
    assert checkpoint.loader == "restricted"  # weights_only refuses the Namespace / custom classes
    assert not (root / "EXECUTED").exists()  # the pickled function was never called
    assert checkpoint.hyper_parameters["emb_dim"] == 128 and checkpoint.hyper_parameters["custom"]["img_encoder"] == "resnet_50"
    adapter = build_adapter(str(root / "convirt.ckpt"), text_model=str(root / "text")).eval()
    assert not (root / "EXECUTED").exists()
    assert adapter.has(Capability.TEXT) and adapter.arch == "resnet50" and adapter.preprocess.mean == (0.5, 0.5, 0.5)
    model = adapter.model
    assert (model.cfg.profile, model.cfg.text_layers, model.cfg.token_types, model.cfg.upsample_size) == ("official", 2, False, 299)
    # every tensor of the file that ConVIRT uses lands, bit for bit; only the documented unused ones are dropped
    loaded = model.state_dict()
    used = {k: v for k, v in state.items() if not UNUSED_MGCA.match(k)}
    assert set(loaded) == set(used) | {"text_encoder.model.embeddings.token_type_embeddings.weight"}
    for key, value in used.items():
        assert torch.equal(loaded[key], value), key
    dropped = set(state) - set(used)
    assert dropped and all(("local_embed" in k or "crossattention" in k or k.endswith("position_ids")) for k in dropped)
    # features equal those computed directly from the tensors
    x = images(2, 64)
    tok = model.tokenize(REPORTS[:2])
    img, txt, net = _reference_embeddings(state, x, tok["input_ids"], tok["attention_mask"])
    with torch.no_grad():
        torch.testing.assert_close(adapter.project_image(x), img, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(adapter.encode_text(REPORTS[:2]), txt, rtol=1e-4, atol=1e-5)
        torch.testing.assert_close(adapter.pooled_features(x), net((x.expand(-1, 3, -1, -1) - 0.5) / 0.5), rtol=1e-4, atol=1e-5)


def test_mgca_ckpt_key_map_is_strict_and_tokenizer_optional(mgca_files, tmp_path, monkeypatch):
    from g2d_bench.methods.convirt import checkpoint as ck
    from g2d_bench.methods.convirt.adapter import build as build_adapter

    root, state = mgca_files
    missing = dict(state)
    del missing["text_encoder.global_embed.head.3.weight"]
    with pytest.raises(G2DBenchError, match=r"missing: text_encoder\.global_embed\.head\.3\.weight"):
        ck.model_from_mgca(missing, "x.ckpt", str(root / "text"))
    extra = dict(state, **{"img_encoder.prototype.weight": torch.zeros(3)})
    with pytest.raises(G2DBenchError, match=r"unexpected: img_encoder\.prototype\.weight"):
        ck.model_from_mgca(extra, "x.ckpt", str(root / "text"))
    with pytest.raises(G2DBenchError, match="unrecognised ConVIRT checkpoint layout"):
        ck.layout_of({"foo.weight": torch.zeros(1)})
    # the bare state dict (torch.save of a plain dict: weights_only suffices); no tokenizer anywhere
    torch.save(state, tmp_path / "state.pt")
    monkeypatch.setattr(ck, "local_tokenizer", lambda text_model: None)
    adapter = build_adapter(str(tmp_path / "state.pt")).eval()
    assert not adapter.has(Capability.TEXT) and adapter.info["reader"] == "weights_only"
    with pytest.raises(NotImplementedError):
        adapter.encode_text(["pneumonia"])
    assert adapter.project_image(images(2)).shape == (2, 128)


def test_bare_torchvision_resnet_gives_the_image_side(tmp_path):
    import torchvision

    from g2d_bench.methods.convirt.adapter import build as build_adapter

    torch.manual_seed(0)
    net = torchvision.models.resnet18(weights=None).eval()
    torch.save(net.state_dict(), tmp_path / "encoder.pth")
    adapter = build_adapter(str(tmp_path / "encoder.pth")).eval()
    assert adapter.arch == "resnet18" and not adapter.capabilities
    x = images(2)
    net.fc = torch.nn.Identity()
    with torch.no_grad():
        torch.testing.assert_close(adapter.pooled_features(x), net((x.expand(-1, 3, -1, -1) - 0.5) / 0.5))


def test_mgca_ckpt_at_full_size(tmp_path):
    """The published layout at full size: ResNet-50 and MGCA's 6-layer, 768-wide BERT (vocabulary
    28,996, 512 positions, cross-attention blocks) — every tensor lands."""
    from transformers import BertConfig

    from g2d_bench.methods.convirt.checkpoint import load_mgca_checkpoint

    config = BertConfig(vocab_size=28996, hidden_size=768, num_hidden_layers=6, num_attention_heads=12,
                        intermediate_size=3072, max_position_embeddings=512)
    state = mgca_convirt_state(config)
    torch.save({"state_dict": state, "hyper_parameters": argparse.Namespace(emb_dim=128)}, tmp_path / "convirt.ckpt")
    model = load_mgca_checkpoint(tmp_path / "convirt.ckpt")
    loaded = model.state_dict()
    assert model.text_encoder.model.config.num_attention_heads == 12 and len(model.text_encoder.model.encoder.layer) == 6
    for key, value in state.items():
        if key in loaded:
            assert torch.equal(loaded[key], value), key
