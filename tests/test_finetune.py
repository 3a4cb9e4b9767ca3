"""Fine-tuned CXR14 classification: the CPU budget's rules, a classifier whose every encoder weight
trains, and ``cxr14-ft`` on SynthCXR through a sweep for every registered method, with the method's
adapter unchanged afterwards."""
import json
from dataclasses import replace

import numpy as np
import pytest
import torch

from g2d_bench.errors import G2DBenchError
from g2d_bench.methods import METHODS
from g2d_bench.runner import RunConfig, build_adapter, run
from g2d_bench.tasks import finetune
from test_zeroshot import method_args  # noqa: E402  (tiny instance of any registered method)


def test_budget_caps_protocol_values_but_not_the_runs_own_settings():
    spec = finetune.CXR14_FT

    def hp_with(overrides):
        return lambda name: overrides.get(name, spec.hparams[name].value)

    assert finetune.effective_settings(hp_with({}), {}) == {"batch_size": 64, "max_epochs": 50, "patience": 10}
    budget = {"finetune_budget": {"batch_size": 16, "max_epochs": 4, "patience": 2}}
    assert finetune.effective_settings(hp_with(budget), budget) == {"batch_size": 16, "max_epochs": 4, "patience": 2}
    own = {**budget, "batch_size": 32}  # --set batch_size=32 wins over the scale's cap
    assert finetune.effective_settings(hp_with(own), own)["batch_size"] == 32
    pairs = {"finetune_budget": (("max_epochs", 3),)}  # a Scale.task_settings tuple works too
    assert finetune.effective_settings(hp_with(pairs), pairs) == {"batch_size": 64, "max_epochs": 3, "patience": 10}
    with pytest.raises(G2DBenchError, match="may cap"):
        bad = {"finetune_budget": {"lr": 1.0}}
        finetune.effective_settings(hp_with(bad), bad)


def test_classifier_trains_every_encoder_weight():
    import segmentation_models_pytorch as smp

    torch.set_num_threads(1)
    torch.manual_seed(0)
    encoder = smp.encoders.get_encoder("resnet18", in_channels=3, depth=5, weights=None)
    model = finetune.build_classifier(encoder, 14)
    logits = model(torch.randn(2, 3, 64, 64))
    assert logits.shape == (2, 14)
    torch.nn.functional.binary_cross_entropy_with_logits(logits, torch.ones(2, 14)).backward()
    untouched = [n for n, p in model.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    # smp's ResNet encoder keeps torchvision's fc, which its forward never uses
    assert untouched == ["encoder.fc.weight", "encoder.fc.bias"] or not untouched, untouched
    assert model.head.in_features == 512


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    torch.set_num_threads(1)
    mp = pytest.MonkeyPatch()
    mp.setenv("G2D_BENCH_SYNTH_N", "200")
    root = tmp_path_factory.getbasetemp() / "synthcxr-n200-home"  # shared with test_zeroshot / test_grounding
    root.mkdir(exist_ok=True)
    yield root
    mp.undo()


SMALL = {"max_epochs": 1, "batch_size": 16, "eval_batch_size": 64}


@pytest.mark.parametrize("method", METHODS.names())
def test_cxr14_ft_runs_for_every_method_and_leaves_the_adapter_unchanged(method, home, tmp_path):
    folder = home / "methods"
    folder.mkdir(exist_ok=True)
    args = method_args(method, folder)
    base = RunConfig(method=method, task="cxr14-ft", fraction=0.1, checkpoint=args.get("checkpoint"), arch=args.get("arch"),
                     image_size=64, overrides=SMALL, out=tmp_path, home=home, device="cpu")
    adapter = build_adapter(base, "cpu")  # the one the runs share (cached per process, as in a sweep)
    probe = torch.rand(2, 1, 64, 64, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        before_features = adapter.pooled_features(probe).clone()
    before = {k: v.clone() for k, v in adapter.backbone.state_dict().items()}
    # two runs on the one adapter the runner keeps per process, as a sweep does
    paths = [run(replace(base, fraction=fraction)) for fraction in (0.1, 0.01)]
    after = adapter.backbone.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    assert not adapter.backbone.training and all(p.grad is None for p in adapter.backbone.parameters())
    with torch.no_grad():
        assert torch.equal(adapter.pooled_features(probe), before_features)
    records = [json.loads(p.read_text()) for p in paths]
    assert [r["status"] for r in records] == ["ok", "ok"]
    tenth, hundredth = records
    assert 0.0 <= tenth["metrics"]["auc"] <= 1.0 and sum(k.startswith("auc/") for k in tenth["metrics"]) >= 2
    # the cpu scale's finetune_budget caps batch and patience; the run's own max_epochs wins
    assert tenth["info"]["effective"] == {"batch_size": 16, "max_epochs": 1, "patience": 3}
    assert tenth["info"]["epochs_run"] == 1 and len(tenth["info"]["history"]) == 1
    assert 0 < hundredth["info"]["n_train"] < tenth["info"]["n_train"] == tenth["data"]["counts"]["train_fraction"]
    assert tenth["info"]["n_test"] == tenth["data"]["counts"]["test"] and tenth["data"]["split"] == "official"
    # the statistics layer recomputes every metric (macro and per-class AUC) from the scores file
    from g2d_bench import stats
    from g2d_bench.tasks import rescore

    tenth["_path"] = str(paths[0])
    scores = stats.load_scores(tenth)
    for name, value in tenth["metrics"].items():
        assert rescore.metric(scores, tenth, name) == pytest.approx(value, abs=1e-9), name


def test_the_cpu_budget_is_applied_and_recorded(home, tmp_path):
    budget = {"batch_size": 8, "max_epochs": 1, "patience": 1}
    config = RunConfig(method="random", task="cxr14-ft", fraction=0.01, arch="resnet18", image_size=64,
                       overrides={"finetune_budget": budget, "eval_batch_size": 64}, out=tmp_path, home=home, device="cpu")
    record = json.loads(run(config).read_text())
    assert record["info"]["effective"] == budget and record["config"]["finetune_budget"] == budget
    assert record["config"]["batch_size"] == 64 and record["info"]["epochs_run"] == 1  # protocol value kept in config
    # the 1 % set is tiny (NIH SynthCXR: 3 images): one short batch per epoch, all 14 labels scored where both classes exist
    assert record["info"]["n_train"] == record["data"]["counts"]["train_fraction"] and np.isfinite(record["metrics"]["auc"])
