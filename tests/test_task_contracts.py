"""Every registered task runs on SynthCXR through the runner with every registered method and scores
in range (tiny settings and tiny random-weight models: the plumbing and the metric ranges are under
test here, not the protocols' numbers). Every metric a task declares must be in its record, within
[0, 1]; a method without a capability the task needs gets a skipped record with the reason.

The fast suite runs every task with the first registered method; every method on one task per family
is the smoke grid's part (tests/test_regress.py); the whole cross product is marked slow
(``python -m pytest -m slow tests/test_task_contracts.py``)."""
import json
import math

import pytest
import torch

from g2d_bench.methods import METHODS
from g2d_bench.runner import RunConfig, run
from g2d_bench.tasks import TASKS

#: per-task extra settings that keep a 1-epoch run small on CPU
SMALL = {"rsna-det": {"head_width": 0.25}, "objcxr-det": {"head_width": 0.25}}


_ARGS: dict[str, tuple] = {}


def _adapter_args(method: str):
    """(factory arguments of the method's tiny instance, its capabilities), built once per session."""
    if method not in _ARGS:
        import tempfile
        from pathlib import Path

        from test_contracts import tiny_build_args

        folder = Path(tempfile.mkdtemp(prefix=f"contract-{method}-"))
        kwargs = tiny_build_args(method, folder)
        adapter = METHODS.get(method).build_adapter(kwargs.get("checkpoint"), **{k: v for k, v in kwargs.items() if k != "checkpoint"})
        _ARGS[method] = (kwargs, adapter.capabilities)
    return _ARGS[method]


def _is_fast(task: str, method: str) -> bool:
    """In the fast suite: every task with the first registered method."""
    return method == METHODS.names()[0]


def _params():
    out = []
    for task in TASKS.names():
        for method in METHODS.names():
            marks = () if _is_fast(task, method) else (pytest.mark.slow,)
            out.append(pytest.param(task, method, marks=marks, id=f"{task}-{method}"))
    return out


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    mp = pytest.MonkeyPatch()
    mp.setenv("G2D_BENCH_SYNTH_N", "200")  # NIH's official 1 % fraction needs > 150 images
    yield tmp_path_factory.mktemp("home")
    mp.undo()


@pytest.mark.parametrize("task,method", _params())
def test_task_runs_on_synthcxr_and_scores_in_range(task, method, home, tmp_path):
    torch.set_num_threads(1)
    spec = TASKS.get(task)
    kwargs, capabilities = _adapter_args(method)
    overrides = {k: v for k, v in {"max_epochs": 1, **SMALL.get(task, {})}.items() if k in spec.hparams}
    config = RunConfig(method=method, task=task, fraction=1.0, checkpoint=kwargs.get("checkpoint"), arch=kwargs.get("arch"),
                       image_size=64, overrides=overrides, out=tmp_path / "runs", home=home, progress=False, device="cpu")
    record = json.loads(run(config).read_text())
    if not spec.required(overrides) <= capabilities:
        assert record["status"] == "skipped" and "lacks capability" in record["reason"]
        return
    assert record["status"] == "ok" and record["data"]["synthcxr"] is True
    missing = [m for m in spec.metrics if m not in record["metrics"]]
    assert not missing, f"{task} declares {missing} but its record lacks them"
    for metric, value in record["metrics"].items():
        # NaN only where the task says why (e.g. no positive test image for dice_pos)
        assert (0.0 <= value <= 1.0) or (math.isnan(value) and metric != spec.primary), (metric, value)
    assert record["data"]["counts"]["test"] > 0 and record["key"]["image_size"] == 64
