"""SIIM relative column-major RLE: the REFERENCE.md example, exact round trips, unions, malformed input."""
import numpy as np
import pytest

from g2d_bench.datasets.rle import rle_decode, rle_decode_union, rle_encode, rle_runs
from g2d_bench.errors import G2DBenchError


def reference_example():
    mask = np.zeros((4, 4), dtype=bool)
    mask[1:3, 1:3] = True  # REFERENCE.md: ones at rows 1-2, cols 1-2 -> "5 2 2 2"
    return mask


def test_reference_example_both_ways():
    assert rle_encode(reference_example()) == "5 2 2 2"
    decoded = rle_decode("5 2 2 2", 4, 4)
    assert decoded.dtype == bool and decoded.shape == (4, 4)
    np.testing.assert_array_equal(decoded, reference_example())


def test_column_major_and_relative_starts():
    # absolute runs [1, 3) and [6, 7) in column-major order of a 3-row x 4-column image
    decoded = rle_decode("1 2 3 1", 3, 4)
    expected = np.zeros((3, 4), dtype=bool)
    expected[1:3, 0] = True  # flat 1, 2 -> column 0, rows 1-2
    expected[0, 2] = True  # flat 6 -> column 2, row 0
    np.testing.assert_array_equal(decoded, expected)
    starts, lengths = rle_runs("1 2 3 1")
    assert starts.tolist() == [1, 6] and lengths.tolist() == [2, 1]


@pytest.mark.parametrize("shape", [(1, 1), (4, 4), (7, 3), (3, 7), (32, 48), (64, 64)])
@pytest.mark.parametrize("density", [0.05, 0.5, 0.95, 1.0])
def test_round_trip_random_masks(shape, density):
    rng = np.random.default_rng(hash((shape, density)) % 2**32)
    mask = rng.random(shape) < density
    text = rle_encode(mask)
    np.testing.assert_array_equal(rle_decode(text, *shape), mask)
    if mask.any():
        # canonical form: runs separated by at least one pixel, every length >= 1
        values = np.array(text.split(), dtype=int)
        assert (values[1::2] >= 1).all() and (values[2::2] >= 1).all()


def test_full_and_edge_masks():
    full = np.ones((5, 3), dtype=bool)
    assert rle_encode(full) == "0 15"
    last = np.zeros((5, 3), dtype=bool)
    last[-1, -1] = True
    assert rle_encode(last) == "14 1"
    np.testing.assert_array_equal(rle_decode("14 1", 5, 3), last)


def test_empty_mask_is_minus_one():
    assert rle_encode(np.zeros((8, 6), dtype=bool)) == "-1"
    for text in ("-1", " -1 ", ""):
        decoded = rle_decode(text, 8, 6)
        assert decoded.shape == (8, 6) and not decoded.any()


def test_lesions_are_united():
    a = np.zeros((6, 6), dtype=bool)
    a[0:2, 0] = True
    b = np.zeros((6, 6), dtype=bool)
    b[1:4, 4] = True  # overlaps nothing of a
    c = np.zeros((6, 6), dtype=bool)
    c[1, 0] = c[5, 5] = True  # overlaps a at (1, 0)
    union = rle_decode_union([rle_encode(a), rle_encode(b), rle_encode(c), "-1"], 6, 6)
    np.testing.assert_array_equal(union, a | b | c)
    assert union.sum() == 2 + 3 + 1  # the shared pixel counts once


@pytest.mark.parametrize(
    "text, fragment",
    [
        ("5 2 2", "odd number"),
        ("5 x 2 2", "'x' is not an integer"),
        ("5 2.5 2 2", "not an integer"),
        ("-5 2", "negative start"),
        ("5 2 -1 2", "negative start"),
        ("5 0", "run length 0"),
        ("5 2 2 -2", "run length -2"),
        ("10 7", "past the end"),
        ("0 16 0 1", "past the end"),
    ],
)
def test_malformed_strings_name_the_place(text, fragment):
    with pytest.raises(G2DBenchError) as error:
        rle_decode(text, 4, 4, where="train-rle.csv row 17")
    message = str(error.value)
    assert "train-rle.csv row 17" in message and fragment in message
    assert "\n" not in message


def test_encode_rejects_non_2d():
    with pytest.raises(G2DBenchError):
        rle_encode(np.zeros((2, 2, 2), dtype=bool))
