"""Contracts generated from the registries: every registered method, pretraining recipe, task and
dataset is checked the same way, so a new entry cannot skip its checks."""
import inspect

import numpy as np
import pytest
import torch

from g2d_bench.adapter import Capability, MethodAdapter
from g2d_bench.datasets import DATASETS
from g2d_bench.methods import METHODS, PRETRAIN_RECIPES
from g2d_bench.registry import resolve_reference
from g2d_bench.tasks import TASKS

REPORTS = ["FINDINGS: small right pneumothorax. IMPRESSION: pneumothorax.", "FINDINGS: no effusion. IMPRESSION: normal chest.",
           "FINDINGS: left lower lobe opacity. IMPRESSION: pneumonia.", "FINDINGS: heart is enlarged. IMPRESSION: cardiomegaly."]
TINY_G2D = {"scratch_layers": 1, "scratch_hidden": 32, "scratch_heads": 2, "text_max_length": 16, "image_size": 64,
            "scratch_mlm_steps": 2}
STAGE_CHANNELS = {"resnet18": (64, 128, 256, 512), "resnet50": (256, 512, 1024, 2048)}


def _imagenet(tmp_path):
    import torchvision

    path = tmp_path / "resnet18.pth"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), path)
    return {"checkpoint": str(path)}


def _g2d(tmp_path):
    from g2d_bench.methods.g2d.checkpoint import save_g2d
    from g2d_bench.methods.g2d.model import build_g2d

    recipe = PRETRAIN_RECIPES.get("g2d")
    torch.manual_seed(0)
    model = build_g2d(recipe.make_config("paper", "cpu", TINY_G2D), REPORTS * 4)
    return {"checkpoint": str(save_g2d(model, tmp_path / "g2d"))}


#: how to build each registered method cheaply (a new method must add its entry here)
BUILD_ARGS = {
    "random": lambda tmp_path: {"arch": "resnet18"},
    "imagenet": _imagenet,
    "g2d": _g2d,
}


def test_every_method_has_contract_arguments():
    assert set(METHODS.names()) == set(BUILD_ARGS)


@pytest.fixture(scope="module", params=sorted(BUILD_ARGS))
def adapter(request, tmp_path_factory):
    torch.set_num_threads(1)
    kwargs = BUILD_ARGS[request.param](tmp_path_factory.mktemp(request.param))
    checkpoint = kwargs.pop("checkpoint", None)
    built = METHODS.get(request.param)(checkpoint, **kwargs)
    again = METHODS.get(request.param)(checkpoint, **kwargs)
    return built.eval(), again.eval()


def images(n=2, size=64, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).random((n, 1, size, size), dtype=np.float32))


def test_adapter_shapes_finite_and_deterministic(adapter):
    a, b = adapter
    assert isinstance(a, MethodAdapter) and a.checkpoint_hash == b.checkpoint_hash and len(a.checkpoint_hash) == 64
    x = images()
    with torch.no_grad():
        feats = a.stage_features(x)
        assert [f.shape[1] for f in feats] == list(STAGE_CHANNELS[a.arch])
        assert [f.shape[-1] for f in feats] == [16, 8, 4, 2]  # strides 4, 8, 16, 32 at 64 px
        pooled = a.pooled_features(x)
        assert pooled.shape == (2, STAGE_CHANNELS[a.arch][-1]) and torch.isfinite(pooled).all()
        assert torch.equal(pooled, a.pooled_features(x)) and torch.allclose(pooled, b.pooled_features(x))


def test_backbone_loads_into_an_smp_unet_encoder(adapter):
    import segmentation_models_pytorch as smp

    a, _ = adapter
    unet = smp.Unet(a.arch, encoder_weights=None, classes=1)
    state = {k: v for k, v in a.backbone.state_dict().items() if not k.startswith("fc.")}
    unet.encoder.load_state_dict(state, strict=True)
    if a.has(Capability.DECODER):
        missing, unexpected = unet.load_state_dict(a.decoder_state_dict(), strict=False)
        assert not unexpected and all(k.startswith("encoder.") for k in missing)


def test_text_capabilities_give_unit_vectors_in_one_space(adapter):
    a, _ = adapter
    if not a.has(Capability.TEXT):
        with pytest.raises(NotImplementedError):
            a.encode_text(["pneumothorax"])
        return
    with torch.no_grad():
        t = a.encode_text(["pneumothorax", "no effusion"])
        v = a.project_image(images())
        assert t.shape[1] == v.shape[1]
        assert torch.allclose(t.norm(dim=1), torch.ones(2), atol=1e-5) and torch.allclose(v.norm(dim=1), torch.ones(2), atol=1e-5)
        if a.has(Capability.DENSE_TEXT):
            d = a.dense_embeddings(images())
            assert d.shape[:2] == (2, t.shape[1]) and torch.allclose(d.norm(dim=1), torch.ones_like(d[:, 0]), atol=1e-4)


@pytest.mark.parametrize("name", PRETRAIN_RECIPES.names())
def test_pretraining_backward_touches_every_trainable_parameter(name):
    torch.set_num_threads(1)
    recipe = PRETRAIN_RECIPES.get(name)
    config = recipe.make_config("paper", "cpu", TINY_G2D if name == "g2d" else {})
    torch.manual_seed(0)
    model = recipe.build(config, REPORTS * 4)
    tokens = model.tokenize(REPORTS)
    out = model(images(4), tokens["input_ids"], tokens["attention_mask"], step=10_000)
    assert torch.isfinite(out["loss"]) and out["loss"].ndim == 0
    out["loss"].backward()
    untouched = [n for n, p in model.named_parameters() if p.requires_grad and (p.grad is None or not p.grad.abs().sum() > 0)]
    assert not untouched, untouched[:5]
    opt = recipe.optimisation(config)
    assert {"lr", "weight_decay", "schedule", "batch_size", "cache_size"} <= set(opt)


@pytest.mark.parametrize("name", TASKS.names())
def test_task_spec_is_complete(name):
    spec = TASKS.get(name)
    assert spec.name == name and isinstance(spec.version, int) and spec.version >= 1
    assert spec.primary in spec.metrics and spec.protocol
    release = DATASETS.get(spec.dataset)
    assert spec.split in release.split_specs(), f"{spec.dataset} has no split {spec.split!r}"
    assert callable(resolve_reference(spec.run)) and len(inspect.signature(resolve_reference(spec.run)).parameters) == 1
    assert "image_size" in spec.hparams
    for key, hyper in spec.hparams.items():
        assert hyper.source and len(hyper.source) > 3, f"{name}.{key} has no source"
    assert spec.needs <= {"labels", "masks", "boxes"}
    for setting, _, capability in spec.requires_when:
        assert setting in spec.hparams and isinstance(capability, Capability)


@pytest.mark.parametrize("name", DATASETS.names())
def test_dataset_entries(name):
    release = DATASETS.get(name)
    assert release.name == name and release.title and release.split_specs()
    assert release.provides <= {"labels", "boxes", "mask", "report"}
