"""Every registered task runs on SynthCXR through the runner and scores in range (tiny settings:
the plumbing and the metric ranges are under test here, not the protocols' numbers)."""
import json

import pytest

from g2d_bench.runner import RunConfig, run
from g2d_bench.tasks import TASKS

#: per-task extra settings that keep a 1-epoch run small on CPU
SMALL = {"rsna-det": {"head_width": 0.25}, "objcxr-det": {"head_width": 0.25}}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("G2D_BENCH_SYNTH_N", "120")
    yield tmp_path_factory.mktemp("home")
    mp.undo()


@pytest.mark.parametrize("name", TASKS.names())
def test_task_runs_on_synthcxr_and_scores_in_range(name, home, tmp_path):
    overrides = {"max_epochs": 1, **SMALL.get(name, {})}
    config = RunConfig(method="random", task=name, fraction=1.0, arch="resnet18", image_size=64, overrides=overrides,
                       out=tmp_path / "runs", home=home, progress=False, device="cpu")
    record = json.loads(run(config).read_text())
    assert record["status"] == "ok" and record["data"]["synthcxr"] is True
    spec = TASKS.get(name)
    assert set(spec.metrics) <= set(record["metrics"]) or spec.primary in record["metrics"]
    for metric, value in record["metrics"].items():
        assert 0.0 <= value <= 1.0, (metric, value)
    assert record["data"]["counts"]["test"] > 0 and record["key"]["image_size"] == 64
