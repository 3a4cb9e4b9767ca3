"""The preprocessed cache: equal to decoding the files, boxes follow the resize, keyed by everything
the pixels depend on, and a build stopped by a corrupt image leaves no cache folder behind."""
import numpy as np
import pytest
from release_fixtures import write_rsna, write_siim

from g2d_bench.datasets import DATASETS
from g2d_bench.datasets.cache import CacheSpec, build_cache, preprocess_sample
from g2d_bench.errors import G2DBenchError


def test_cache_equals_decoding_and_scales_boxes(tmp_path):
    release = DATASETS.get("rsna")(write_rsna(tmp_path / "rsna"))  # 64-px DICOMs with boxes
    samples = release.samples()
    spec = CacheSpec("rsna", "m" * 64, 32, boxes=True, masks=True)
    cache = build_cache(release, [s.sample_id for s in samples], spec, tmp_path / "cache")
    for sample in samples:
        image, mask, boxes = preprocess_sample(release, sample, spec)
        row = cache.rows([sample.sample_id])[0]
        np.testing.assert_array_equal(cache.images[row], image)
        np.testing.assert_array_equal(cache.masks[row], mask)
        # 64 → 32 px: every coordinate halves (square images: no padding)
        np.testing.assert_allclose(cache.boxes([row])[0], np.asarray(sample.boxes, np.float32).reshape(-1, 4) / 2)
    two = cache.rows(["p-two"])[0]
    assert cache.boxes([two])[0].shape == (2, 4) and cache.labels[two, 0] == 1
    # a filled box stays filled after the area resize and re-threshold
    assert cache.masks[two].sum() == pytest.approx((10 * 8 + 12 * 20) / 4, abs=8)
    # reused, not rebuilt: a second call returns the same folder
    assert build_cache(release, [s.sample_id for s in samples], spec, tmp_path / "cache").folder == cache.folder


def test_cache_key_covers_preprocessing_and_data():
    base = CacheSpec("rsna", "m" * 64, 224)
    others = [CacheSpec("rsna", "m" * 64, 256), CacheSpec("rsna", "n" * 64, 224), CacheSpec("rsna", "m" * 64, 224, mode="stretch"),
              CacheSpec("rsna", "m" * 64, 224, masks=True), CacheSpec("rsna", "m" * 64, 224, source="synthcxr-v2")]
    assert len({base.key(), *(o.key() for o in others)}) == 1 + len(others)


def test_corrupt_image_stops_the_build_and_leaves_nothing(tmp_path):
    root = write_siim(tmp_path / "siim")
    release = DATASETS.get("siim")(root)
    samples = release.samples()
    samples[-1].image_path.write_bytes(b"not a dicom")
    with pytest.raises(G2DBenchError, match=samples[-1].image_path.name):
        build_cache(release, [s.sample_id for s in samples], CacheSpec("siim", "m" * 64, 32, masks=True), tmp_path / "cache")
    assert not any((tmp_path / "cache").iterdir())  # no folder, not even a temporary one
