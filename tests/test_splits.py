import random
from pathlib import Path

import pytest

from g2d_bench.datasets.base import Release, Sample
from g2d_bench.datasets.splits import SplitSpec, assign_splits, fraction_subset, make_manifest
from g2d_bench.errors import G2DBenchError


def make_samples(n_patients=500, images_per_patient=(1, 3), official_test=0, seed=0):
    rng = random.Random(seed)
    samples = []
    for p in range(n_patients):
        for i in range(rng.randint(*images_per_patient)):
            split = "test" if p < official_test else "train"
            samples.append(Sample(f"p{p}_i{i}", f"p{p}", Path(f"/x/p{p}_{i}.png"), official_split=split))
    return samples


class FakeRelease(Release):
    name = "fake"
    title = "Fake"

    def __init__(self, samples, specs):
        self._samples = samples
        self._specs = specs
        self.root = Path("/nonexistent")

    def _load_samples(self):
        return self._samples

    def split_specs(self):
        return self._specs


def test_splits_are_by_patient_and_sized_as_asked():
    samples = make_samples()
    spec = SplitSpec("g2d", "test", test=0.2, valid=0.25)
    split = assign_splits(samples, spec)
    by_patient = {}
    for s in samples:
        by_patient.setdefault(s.patient_id, set()).add(split[s.sample_id])
    assert all(len(parts) == 1 for parts in by_patient.values())
    patients = {p: parts.pop() for p, parts in by_patient.items()}
    counts = {part: sum(1 for v in patients.values() if v == part) for part in ("train", "valid", "test")}
    assert counts == {"test": 100, "valid": 100, "train": 300}


def test_rsna_sizes_from_fractions():
    # G2D Table 6: 26,684 RSNA patients -> 16,010 / 5,337 / 5,337 with test=0.2, valid=0.25
    samples = [Sample(str(i), str(i), Path("x")) for i in range(26684)]
    split = assign_splits(samples, SplitSpec("g2d", "G2D Table 6", test=0.2, valid=0.25))
    values = list(split.values())
    assert (values.count("train"), values.count("valid"), values.count("test")) == (16010, 5337, 5337)


def test_manifest_is_independent_of_row_order_and_deterministic():
    samples = make_samples()
    spec = SplitSpec("g2d", "test", test=0.2, valid=0.25)
    a = make_manifest(FakeRelease(samples, {"g2d": spec}), spec)
    shuffled = samples[:]
    random.Random(1).shuffle(shuffled)
    b = make_manifest(FakeRelease(shuffled, {"g2d": spec}), spec)
    assert a.equals(b)
    c = make_manifest(FakeRelease(samples, {"g2d": spec}), spec, seed=1)
    assert not a.equals(c)


def test_fractions_nested_and_only_train():
    samples = make_samples(2000)
    spec = SplitSpec("g2d", "test", test=0.2, valid=0.25)
    table = make_manifest(FakeRelease(samples, {"g2d": spec}), spec)
    one, ten, all_ = (table[c].to_numpy() for c in ("in_1pct", "in_10pct", "in_100pct"))
    assert (one <= ten).all() and (ten <= all_).all()
    assert (all_ == (table.split == "train").to_numpy()).all()
    train_patients = table[table.split == "train"].sample_id.str.split("_").str[0].nunique()
    one_patients = table[table.in_1pct].sample_id.str.split("_").str[0].nunique()
    assert one_patients == round(0.01 * train_patients)


def test_other_fractions_use_the_same_ranking():
    samples = make_samples(1000)
    spec = SplitSpec("g2d", "test", test=0.2, valid=0.25)
    release = FakeRelease(samples, {"g2d": spec})
    table = make_manifest(release, spec)
    five = fraction_subset(table, 0.05, release, spec)
    assert (table.in_1pct.to_numpy() <= five).all() and (five <= table.in_10pct.to_numpy()).all()


def test_official_test_split_is_kept():
    samples = make_samples(300, official_test=40)
    split = assign_splits(samples, SplitSpec("o", "test", test="test", valid=0.1))
    for s in samples:
        assert (split[s.sample_id] == "test") == (s.official_split == "test")


def test_integer_valid_is_capped_for_small_pools():
    samples = [Sample(str(i), str(i), Path("x")) for i in range(1000)]
    split = assign_splits(samples, SplitSpec("c", "test", test=0.0, valid=5000, group_by="image"))
    assert list(split.values()).count("valid") == 100  # 10 % cap
    big = [Sample(str(i), str(i), Path("x")) for i in range(60000)]
    split = assign_splits(big, SplitSpec("c", "test", test=0.0, valid=5000, group_by="image"))
    assert list(split.values()).count("valid") == 5000


def test_fraction_leaving_zero_samples_is_an_error():
    samples = make_samples(20, images_per_patient=(1, 1))
    spec = SplitSpec("g2d", "test", test=0.2, valid=0.25)
    with pytest.raises(G2DBenchError, match="leaves zero training samples"):
        make_manifest(FakeRelease(samples, {"g2d": spec}), spec)
    table = make_manifest(FakeRelease(make_samples(400), {"g2d": spec}), spec)
    with pytest.raises(G2DBenchError, match=r"\(0, 1\]"):
        fraction_subset(table, 0.0)
