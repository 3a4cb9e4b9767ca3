"""Contracts generated from the registries: every registered method, pretraining recipe, task and
dataset is checked the same way, so a new entry cannot skip its checks."""
import inspect

import numpy as np
import pytest
import torch

from g2d_bench.adapter import Capability, MethodAdapter
from g2d_bench.datasets import DATASETS
from g2d_bench.methods import METHODS, pretrainable
from g2d_bench.registry import resolve_reference
from g2d_bench.tasks import TASKS

REPORTS = ["FINDINGS: small right pneumothorax. IMPRESSION: pneumothorax.", "FINDINGS: no effusion. IMPRESSION: normal chest.",
           "FINDINGS: left lower lobe opacity. IMPRESSION: pneumonia.", "FINDINGS: heart is enlarged. IMPRESSION: cardiomegaly."]


def tiny_build_args(name: str, folder) -> dict:
    """Factory arguments of a tiny instance of any registered method, from its registry entry: a
    pretrainable method's recipe builds its ``tiny`` model (random weights), exported as a checkpoint
    folder; any other method declares an ``example``."""
    from g2d_bench.pretrain import export_model

    entry = METHODS.get(name)
    if not entry.pretrainable:
        return entry.get_example()(folder)
    recipe = entry.get_recipe()
    config = recipe.make_config("paper", "cpu", recipe.tiny)
    torch.manual_seed(0)
    model = recipe.build(config, REPORTS * 4)
    return {"checkpoint": str(export_model(model, recipe, config, folder / name))}


@pytest.fixture(scope="module", params=METHODS.names())
def adapter(request, tmp_path_factory):
    torch.set_num_threads(1)
    kwargs = tiny_build_args(request.param, tmp_path_factory.mktemp(request.param))
    checkpoint = kwargs.pop("checkpoint", None)
    entry = METHODS.get(request.param)
    built = entry.build_adapter(checkpoint, **kwargs)
    again = entry.build_adapter(checkpoint, **kwargs)
    return built.eval(), again.eval()


def images(n=2, size=64, seed=0):
    return torch.from_numpy(np.random.default_rng(seed).random((n, 1, size, size), dtype=np.float32))


def test_adapter_shapes_finite_and_deterministic(adapter):
    a, b = adapter
    assert isinstance(a, MethodAdapter) and a.checkpoint_hash == b.checkpoint_hash and len(a.checkpoint_hash) == 64
    x = images()
    with torch.no_grad():
        feats = a.stage_features(x)
        info = a.feature_info()
        assert [(f.shape[1], 64 // f.shape[-1]) for f in feats] == list(info)
        assert [stride for _, stride in info] == sorted({stride for _, stride in info})  # finest first, distinct
        pooled = a.pooled_features(x)
        assert pooled.shape == (2, info[-1][0]) and torch.isfinite(pooled).all()
        assert torch.equal(pooled, a.pooled_features(x)) and torch.allclose(pooled, b.pooled_features(x))


def test_trainable_encoder_is_a_private_copy_that_fits_an_smp_unet(adapter):
    from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoder

    a, _ = adapter
    x = images()
    with torch.no_grad():
        before = a.pooled_features(x)
        encoder = a.trainable_encoder()
        assert encoder.training and all(p.requires_grad for p in encoder.parameters())
        outputs = encoder.eval()(a.normalize(x))
        assert [o.shape[1] for o in outputs] == list(encoder.out_channels)
        assert [64 // o.shape[-1] for o in outputs] == [1, 2, 4, 8, 16, 32]
        # its last stages are the adapter's own dense maps
        for out, feat in zip(outputs[-len(a.feature_info()):], a.stage_features(x)):
            torch.testing.assert_close(out, feat)
        for p in encoder.parameters():  # what a task does to its copy never reaches the adapter
            p.add_(1.0)
        assert torch.equal(a.pooled_features(x), before)
    decoder = UnetDecoder(encoder_channels=encoder.out_channels, decoder_channels=(256, 128, 64, 32, 16), n_blocks=5)
    assert decoder(encoder(a.normalize(x))).shape[-1] == 64
    if a.has(Capability.DECODER):
        state = {k.removeprefix("decoder."): v for k, v in a.decoder_state_dict().items() if k.startswith("decoder.")}
        decoder.load_state_dict(state, strict=True)


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


@pytest.mark.parametrize("name", pretrainable())
def test_pretraining_backward_touches_every_trainable_parameter(name):
    torch.set_num_threads(1)
    recipe = METHODS.get(name).get_recipe()
    config = recipe.make_config("paper", "cpu", recipe.tiny)
    torch.manual_seed(0)
    model = recipe.build(config, REPORTS * 4)
    tokens = model.tokenize(REPORTS)
    size = config.image_size if hasattr(config, "image_size") else 64
    out = model(images(4, size), **tokens, step=10_000, epoch=10)
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
