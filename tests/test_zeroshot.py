"""Zero-shot classification: the prompt file is pinned data, scoring matches scikit-learn and hand
computations, prompts and images are encoded once, scores never see labels (shuffled labels and an
untrained G2D sit at chance), and every task runs on SynthCXR for methods with a text tower while
the others get a skipped record."""
import hashlib
import json
import logging
from importlib import resources
from pathlib import Path

import numpy as np
import pytest
import torch

from g2d_bench.adapter import Capability, MethodAdapter, Preprocess
from g2d_bench.errors import G2DBenchError
from g2d_bench.methods import METHODS
from g2d_bench.runner import RunConfig, build_adapter, run
from g2d_bench.task import SplitArrays, TaskContext
from g2d_bench.tasks import TASKS, zeroshot

#: SHA-256 of tasks/prompts.yaml. A failure here means a prompt changed: bump `version` in the
#: file and zeroshot.PROMPTS_VERSION, bump the version of every zero-shot and grounding task, then
#: update this hash (docs/zero_shot.md "Prompts").
PINNED_PROMPTS_SHA256 = "04aff41d8fbf565f88e791a187057a66eb12564215ee090b3c884890ffce90b3"
ZS_TASKS = ("rsna-zs", "siim-zs", "cxr14-zs", "chexpert-zs", "chexpert5x200-zs")
PROMPT_TASKS = ZS_TASKS + ("rsna-ground", "siim-ground")


# -- the prompt file ------------------------------------------------------------------------------
def test_prompt_file_is_pinned_and_versioned():
    data = resources.files("g2d_bench.tasks").joinpath("prompts.yaml").read_bytes()
    assert hashlib.sha256(data).hexdigest() == PINNED_PROMPTS_SHA256, (
        "tasks/prompts.yaml changed: bump its version, zeroshot.PROMPTS_VERSION and every zero-shot/grounding task version, "
        "then update PINNED_PROMPTS_SHA256")
    assert zeroshot.load_prompts()["version"] == zeroshot.PROMPTS_VERSION == 1
    assert {TASKS.get(name).version for name in PROMPT_TASKS} == {1}
    assert zeroshot.prompt_file_sha256() == PINNED_PROMPTS_SHA256


def test_every_class_of_every_task_has_prompts_with_a_source():
    from g2d_bench.datasets.chexpert import COMPETITION
    from g2d_bench.datasets.nih import LABELS

    classes = {"rsna": ("Pneumonia",), "siim": ("Pneumothorax",), "nih-cxr14": LABELS, "chexpert": COMPETITION}
    for name in ZS_TASKS:
        spec = TASKS.get(name)
        table = zeroshot.prompt_table(spec.dataset, spec.hparams["prompt_set"].value, classes[spec.dataset])
        assert table.has_negatives and len(table.texts) == 2 * len(classes[spec.dataset])
        assert all(table.sources) and spec.requires == frozenset({Capability.TEXT})
        # CheXzero pair template: "{finding}" vs "no {finding}"
        assert all(table.texts[n[0]] == "no " + table.texts[p[0]] for p, n in zip(table.positive, table.negative))
    gloria = zeroshot.prompt_table("chexpert", "gloria", COMPETITION)
    assert not gloria.has_negatives and [len(p) for p in gloria.positive] == [5] * 5
    assert gloria.texts[0] == "minimal residual atelectasis at the left lung zone"  # GLoRIA's first draw (seed 6)
    with pytest.raises(G2DBenchError, match="no prompt set 'gloria' for dataset 'rsna'"):
        zeroshot.prompt_table("rsna", "gloria", ("Pneumonia",))


# -- scoring ----------------------------------------------------------------------------------------
def test_pair_probability_is_the_softmax_over_the_pair():
    pos, neg = np.array([0.3, -0.2, 0.9, 0.1]), np.array([0.1, 0.4, -0.5, 0.1])
    for t in (1.0, 0.07):
        expected = torch.softmax(torch.tensor(np.stack([pos, neg], 1) / t), dim=1)[:, 0].numpy()
        np.testing.assert_allclose(zeroshot.pair_probability(pos, neg, t), expected, rtol=1e-12)
    assert zeroshot.pair_probability(np.array([0.2]), np.array([0.2]))[0] == 0.5
    np.testing.assert_allclose(zeroshot.pair_probability(np.array([1.0]), np.array([-1.0])), [np.exp(1) / (np.exp(1) + np.exp(-1))])
    with pytest.raises(G2DBenchError, match="temperature"):
        zeroshot.pair_probability(pos, neg, 0.0)


def test_class_scores_ensemble_and_decision_by_hand():
    table = zeroshot.PromptTable("t", ("A", "B"), ("a1", "a2", "not a", "b", "not b"), ((0, 1), (3,)), ((2,), (4,)), ("", ""))
    sims = np.array([[0.5, 0.1, 0.2, 0.0, 0.3],
                     [0.0, 0.2, 0.4, 0.6, -0.2]])
    probs, decision = zeroshot.class_scores(sims, table, "max", 1.0)
    np.testing.assert_allclose(probs[:, 0], 1 / (1 + np.exp(-np.array([0.5 - 0.2, 0.2 - 0.4]))))
    np.testing.assert_allclose(probs[:, 1], 1 / (1 + np.exp(-np.array([0.0 - 0.3, 0.6 + 0.2]))))
    assert decision.tolist() == [[True, False], [False, True]]
    probs, _ = zeroshot.class_scores(sims, table, "mean", 1.0)
    np.testing.assert_allclose(probs[:, 0], 1 / (1 + np.exp(-np.array([0.3 - 0.2, 0.1 - 0.4]))))
    np.testing.assert_allclose(zeroshot.zscore(np.array([[1.0, 5.0], [3.0, 5.0]])), [[-1.0, 0.0], [1.0, 0.0]])


def test_binary_metrics_equal_scikit_learn_per_class_and_macro():
    from sklearn.metrics import accuracy_score, f1_score, roc_auc_score

    rng = np.random.default_rng(0)
    y = (rng.random((50, 3)) < 0.4).astype(np.float32)
    y[:, 2] = 0  # a class without positives: no AUC, left out of every macro mean
    probs = np.clip(y * 0.3 + rng.random((50, 3)) * 0.7, 0, 1)
    decision = probs > 0.5
    metrics, notes = zeroshot.binary_metrics(y, probs, decision, ("a", "b", "c"))
    assert notes == {"labels_without_both_classes": ["c"]}
    for k, name in enumerate("ab"):
        assert metrics[f"auc/{name}"] == pytest.approx(roc_auc_score(y[:, k], probs[:, k]))
        assert metrics[f"f1/{name}"] == pytest.approx(f1_score(y[:, k], decision[:, k]))
        assert metrics[f"accuracy/{name}"] == pytest.approx(accuracy_score(y[:, k], decision[:, k]))
    assert metrics["auc"] == pytest.approx((metrics["auc/a"] + metrics["auc/b"]) / 2)
    assert metrics["f1"] == pytest.approx((metrics["f1/a"] + metrics["f1/b"]) / 2)
    assert "auc/c" not in metrics


def test_multiclass_metrics_by_hand():
    target = np.array([0, 0, 1, 2, 2, 2])
    scores = np.eye(3)[[0, 1, 1, 2, 2, 0]]  # predictions 0 1 1 2 2 0
    m = zeroshot.multiclass_metrics(target, scores, ("x", "y", "z"))
    assert m["accuracy"] == pytest.approx(4 / 6)
    # per class F1: x: P 1/2 R 1/2 -> 0.5; y: P 1/2 R 1 -> 2/3; z: P 1 R 2/3 -> 0.8
    assert [m["f1/x"], m["f1/y"], m["f1/z"]] == pytest.approx([0.5, 2 / 3, 0.8])
    assert m["f1"] == pytest.approx((0.5 + 2 / 3 + 0.8) / 3)


# -- the family function on hand-made data ----------------------------------------------------------
class CountingAdapter(MethodAdapter):
    """A text-capable fake: an image's similarity to a positive prompt is its mean brightness − 0.3,
    to a negative prompt the opposite; counts prompt encodings and the images it is shown."""

    def __init__(self):
        super().__init__(name="counting", arch="none", backbone=torch.nn.Identity(), preprocess=Preprocess(),
                         checkpoint_hash="2" * 64, capabilities=frozenset({Capability.TEXT, Capability.DENSE_TEXT}))
        self.prompt_calls, self.seen = [], []

    def encode_prompts(self, texts):
        self.prompt_calls.append(list(texts))
        return {"sign": torch.tensor([-1.0 if t.startswith("no ") else 1.0 for t in texts])}

    def similarity(self, images, prompts):
        self.seen.extend(images[:, 0, 0, 0].mul(255).round().long().tolist())  # pixel (0, 0) holds the row id
        brightness = images.mean(dim=(1, 2, 3)) - 0.3
        return brightness[:, None] * prompts["sign"][None, :]


def blobs(n: int, size: int = 32, seed: int = 0, label_name: str = "Pneumonia") -> SplitArrays:
    """Noisy images, a bright square on the positives (about 40 %); pixel (0, 0) = row id % 256."""
    rng = np.random.default_rng(seed)
    y = rng.random(n) < 0.4
    images = rng.normal(60, 15, (n, size, size)).clip(0, 255)
    for i in np.flatnonzero(y):
        r, c = rng.integers(4, size - 12, 2)
        images[i, r : r + 10, c : c + 10] = 230
    images[:, 0, 0] = np.arange(n) % 256
    return SplitArrays([f"s{i:04d}" for i in range(n)], images.astype(np.uint8), y[:, None].astype(np.float32),
                       label_names=(label_name,))


def ctx_for(spec, adapter, test: SplitArrays, tmp_path, **overrides) -> TaskContext:
    def data(name):
        if name != "test":
            raise AssertionError(f"zero-shot read the {name} split")
        return test

    return TaskContext(spec=spec, adapter=adapter, data=data, fraction=0.01, seed=0, device="cpu", workdir=tmp_path,
                       overrides={"image_size": 32, "batch_size": 32, **overrides}, log=logging.getLogger("test"))


def test_prompts_encoded_once_and_each_image_scored_once(tmp_path):
    adapter, test = CountingAdapter(), blobs(70)
    result = zeroshot.run(ctx_for(zeroshot.RSNA_ZS, adapter, test, tmp_path))
    assert adapter.prompt_calls == [["pneumonia", "no pneumonia"]]
    assert sorted(adapter.seen) == list(range(70))  # 3 batches (32 + 32 + 6), every image exactly once
    scores = result.per_sample
    assert scores["sample_id"].tolist() == test.sample_ids and scores["y/Pneumonia"].tolist() == test.labels[:, 0].tolist()
    brightness = test.images.reshape(70, -1).mean(1) / 255.0 - 0.3
    np.testing.assert_allclose(scores["p/Pneumonia"], 1 / (1 + np.exp(-2 * brightness)), rtol=1e-5)
    assert result.metrics["auc"] > 0.95 and set(result.metrics) == {"auc", "f1", "accuracy"}
    info = result.info
    assert info["prompts"]["sha256"] == PINNED_PROMPTS_SHA256 and info["prompts"]["classes"]["Pneumonia"]["negative"] == ["no pneumonia"]
    assert "no effect" in info["note"] and info["positives"] == {"Pneumonia": int(test.labels.sum())}


def hanley_mcneil_se(auc: float, n_pos: int, n_neg: int) -> float:
    """Standard error of an AUC (Hanley & McNeil 1982); at 0.5 it is sqrt((n⁺ + n⁻ + 1) / (12 n⁺ n⁻))."""
    q1, q2 = auc / (2 - auc), 2 * auc**2 / (1 + auc)
    return float(np.sqrt((auc * (1 - auc) + (n_pos - 1) * (q1 - auc**2) + (n_neg - 1) * (q2 - auc**2)) / (n_pos * n_neg)))


@pytest.mark.parametrize("spec", [zeroshot.RSNA_ZS, zeroshot.SIIM_ZS], ids=["rsna-zs", "siim-zs"])
def test_shuffling_images_against_labels_gives_chance(spec, tmp_path):
    """A scorer with signal (AUC ≈ 1 on aligned data) falls into the chance band once the labels are
    permuted against the images: nothing but the image reaches the score."""
    name = spec.hparams["targets"].value.split(":")[1]
    test = blobs(1500, size=32, seed=1, label_name=name)
    aligned = zeroshot.run(ctx_for(spec, CountingAdapter(), test, tmp_path)).metrics["auc"]
    assert aligned > 0.95
    shuffled = SplitArrays(test.sample_ids, test.images, test.labels[np.random.default_rng(7).permutation(len(test))],
                           label_names=test.label_names)
    auc = zeroshot.run(ctx_for(spec, CountingAdapter(), shuffled, tmp_path)).metrics["auc"]
    n_pos = int(shuffled.labels.sum())
    assert abs(auc - 0.5) < 3 * hanley_mcneil_se(0.5, n_pos, len(test) - n_pos)  # ±0.048 here


def test_multiclass_with_gloria_ensembles_and_binary_refuses_a_set_without_negatives(tmp_path):
    from g2d_bench.datasets.chexpert import LABELS

    class Keyword(CountingAdapter):
        """Similarity 1 when the prompt names the image's class (encoded in pixel (0, 1)), else 0."""

        def encode_prompts(self, texts):
            self.prompt_calls.append(list(texts))
            return {"texts": list(texts)}

        def similarity(self, images, prompts):
            keys = ("atelectasis", "cardi", "consolidation", "edema", "effusion")
            cls = images[:, 0, 0, 1].mul(255).round().long()
            return torch.tensor([[1.0 if keys[c] in t or (c == 1 and "heart" in t) else 0.0 for t in prompts["texts"]] for c in cls.tolist()])

    n = 20
    labels = np.zeros((n, len(LABELS)), np.float32)
    classes = np.arange(n) % 5
    for i, c in enumerate(classes):
        labels[i, LABELS.index(("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion")[c])] = 1
    images = np.full((n, 32, 32), 50, np.uint8)
    images[:, 0, 1] = classes
    test = SplitArrays([f"c{i}" for i in range(n)], images, labels, label_names=LABELS)
    adapter = Keyword()
    result = zeroshot.run(ctx_for(zeroshot.CHEXPERT5X200_ZS, adapter, test, tmp_path, prompt_set="gloria"))
    assert result.metrics["accuracy"] == 1.0 and result.metrics["f1"] == 1.0 and len(adapter.prompt_calls[0]) == 25
    assert result.per_sample["pred"].tolist() == result.per_sample["target"].tolist()
    assert result.info["prompts"]["set"] == "gloria" and result.info["class_counts"] == dict.fromkeys(
        ("Atelectasis", "Cardiomegaly", "Consolidation", "Edema", "Pleural Effusion"), 4)
    with pytest.raises(G2DBenchError, match="no negative prompts"):
        zeroshot.run(ctx_for(zeroshot.CHEXPERT_ZS, Keyword(), test, tmp_path, prompt_set="gloria"))


# -- through the runner on SynthCXR --------------------------------------------------------------------
REPORTS = ["FINDINGS: no focal consolidation. IMPRESSION: no acute process.", "FINDINGS: small right pneumothorax. IMPRESSION: pneumothorax.",
           "FINDINGS: left lower lobe opacity. IMPRESSION: pneumonia.", "FINDINGS: blunting of the costophrenic angle. IMPRESSION: pleural effusion."]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """SynthCXR at 200 images per dataset (NIH's 1 % fraction needs > 150), shared by the zero-shot,
    grounding and fine-tuning test modules of one session."""
    torch.set_num_threads(1)
    mp = pytest.MonkeyPatch()
    mp.setenv("G2D_BENCH_SYNTH_N", "200")
    root = tmp_path_factory.getbasetemp() / "synthcxr-n200-home"
    root.mkdir(exist_ok=True)
    yield root
    mp.undo()


def untrained_g2d(folder: Path, seed: int = 0) -> str:
    """A G2D with random weights in both towers (the recipe's tiny CPU config), exported as a folder."""
    from g2d_bench.pretrain import export_model

    if (folder / "config.json").exists():
        return str(folder)
    recipe = METHODS.get("g2d").get_recipe()
    config = recipe.make_config("paper", "cpu", recipe.tiny)
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = recipe.build(config, REPORTS * 4)
    return str(export_model(model, recipe, config, folder))


def method_args(name: str, folder: Path) -> dict:
    """RunConfig arguments of a tiny instance of any registered method: a pretrainable method's
    recipe ``tiny`` model with random weights (exported as a folder, once), else its ``example``."""
    entry = METHODS.get(name)
    if not entry.pretrainable:
        return entry.get_example()(folder)
    if not (folder / name / "config.json").exists():
        from g2d_bench.pretrain import export_model

        recipe = entry.get_recipe()
        config = recipe.make_config("paper", "cpu", recipe.tiny)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            export_model(recipe.build(config, REPORTS * 4), recipe, config, folder / name)
    return {"checkpoint": str(folder / name)}


def run_task(task: str, method: str, home: Path, out: Path, checkpoint: str | None = None, **overrides) -> dict:
    config = RunConfig(method=method, task=task, fraction=1.0, checkpoint=checkpoint, arch=None if checkpoint else "resnet18",
                       image_size=64, overrides=overrides, out=out, home=home, device="cpu")
    return json.loads(run(config).read_text())


@pytest.mark.parametrize("task", ["rsna-zs", "siim-zs"])
def test_untrained_g2d_sits_at_chance(task, home, tmp_path):
    record = run_task(task, "g2d", home, tmp_path, untrained_g2d(home / "g2d-untrained"))
    assert record["status"] == "ok"
    positives = next(iter(record["info"]["positives"].values()))
    n = record["info"]["n_test"]
    band = 3 * hanley_mcneil_se(0.5, positives, n - positives)
    assert 0 < positives < n and abs(record["metrics"]["auc"] - 0.5) < band, (record["metrics"], positives, n, band)


@pytest.mark.slow
def test_untrained_g2d_sits_at_chance_on_a_larger_copy(tmp_path_factory):
    """The same check on 1,000 images per dataset (test splits 200 / 150: band ±0.13 / ±0.17) for three
    random initialisations (slow: generating the copies takes minutes on 2 cores)."""
    torch.set_num_threads(1)
    mp = pytest.MonkeyPatch()
    mp.setenv("G2D_BENCH_SYNTH_N", "1000")
    home = tmp_path_factory.mktemp("synth1000")
    try:
        for seed in range(3):
            checkpoint = untrained_g2d(home / f"g2d-untrained-{seed}", seed)
            for task in ("rsna-zs", "siim-zs"):
                record = run_task(task, "g2d", home, home / "runs", checkpoint)
                positives, n = next(iter(record["info"]["positives"].values())), record["info"]["n_test"]
                assert abs(record["metrics"]["auc"] - 0.5) < 3 * hanley_mcneil_se(0.5, positives, n - positives), (task, seed, record["metrics"])
    finally:
        mp.undo()


@pytest.mark.parametrize("task", ZS_TASKS)
def test_zero_shot_task_runs_for_a_text_method_and_is_skipped_without_one(task, home, tmp_path):
    record = run_task(task, "g2d", home, tmp_path, untrained_g2d(home / "g2d-untrained"))
    assert record["status"] == "ok" and record["data"]["synthcxr"] is True and record["key"]["task_version"] == 1
    spec = TASKS.get(task)
    assert set(spec.metrics) <= set(record["metrics"])
    assert all(0.0 <= v <= 1.0 for v in record["metrics"].values()), record["metrics"]
    assert record["info"]["prompts"]["set"] == "chexzero" and record["info"]["prompts"]["version"] == 1
    assert record["config"]["temperature"] == 1.0
    skipped = run_task(task, "random", home, tmp_path)
    assert skipped["status"] == "skipped" and "text" in skipped["reason"]


def test_scores_file_holds_the_probabilities(home, tmp_path):
    import pandas as pd

    from g2d_bench.records import scores_path

    config = RunConfig(method="g2d", task="cxr14-zs", fraction=1.0, checkpoint=untrained_g2d(home / "g2d-untrained"),
                       image_size=64, out=tmp_path, home=home, device="cpu")
    path = run(config)
    record = json.loads(path.read_text())
    scores = pd.read_csv(scores_path(path))
    assert len(scores) == record["info"]["n_test"] == record["data"]["counts"]["test"]
    probs = scores[[c for c in scores.columns if c.startswith("p/")]].to_numpy()
    assert probs.shape[1] == 14 and ((probs > 0) & (probs < 1)).all()
    # T = 1 on cosines: |s+ - s-| <= 2, so every probability lies in [sigmoid(-2), sigmoid(2)]
    assert probs.min() >= 1 / (1 + np.exp(2)) - 1e-6 and probs.max() <= 1 / (1 + np.exp(-2)) + 1e-6


@pytest.mark.parametrize("task", ["rsna-zs", "cxr14-zs", "chexpert5x200-zs", "rsna-ground"])
def test_every_metric_is_recomputed_from_the_scores_file_for_the_bootstrap(task, home, tmp_path):
    """The statistics layer (bootstrap CIs, paired tests) recomputes each metric from the scores file:
    on the full test set it must give the record's numbers, every metric, per class included."""
    from g2d_bench import stats
    from g2d_bench.records import iter_records
    from g2d_bench.tasks import rescore

    record = run_task(task, "g2d", home, tmp_path, untrained_g2d(home / "g2d-untrained"))
    assert record["status"] == "ok"
    [record] = list(iter_records(tmp_path))
    scores = stats.load_scores(record)
    for name, value in record["metrics"].items():
        assert rescore.metric(scores, record, name) == pytest.approx(value, abs=1e-9, nan_ok=True), name
    cell = stats.cell_scores([record], record["primary"])
    ci = stats.cell_ci(cell, n_resamples=50)
    assert not cell.approximate and ci.low <= record["metrics"][record["primary"]] + 1e-12 <= ci.high + 2e-12


@pytest.mark.parametrize("method", METHODS.names())
def test_every_method_runs_the_prompt_tasks_or_gets_a_skipped_record(method, home, tmp_path):
    """Done-when of issue 23: the seven zero-shot / grounding tasks run on SynthCXR for every method
    with the capability they need; the others get a skipped record naming it."""
    folder = home / "methods"
    folder.mkdir(exist_ok=True)
    args = method_args(method, folder)
    for task in PROMPT_TASKS:
        config = RunConfig(method=method, task=task, fraction=1.0, checkpoint=args.get("checkpoint"), arch=args.get("arch"),
                           image_size=64, out=tmp_path, home=home, device="cpu")
        capable = all(build_adapter(config, "cpu").has(c) for c in TASKS.get(task).requires)
        record = json.loads(run(config).read_text())
        if not capable:
            assert record["status"] == "skipped" and "lacks capability" in record["reason"], (task, record)
            continue
        assert record["status"] == "ok", (task, record)
        assert set(TASKS.get(task).metrics) <= set(record["metrics"])
        assert all(0.0 <= v <= 1.0 for v in record["metrics"].values()), (task, record["metrics"])
