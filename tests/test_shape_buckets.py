"""Size buckets: how much padding, and that a bucket is stable."""

import numpy as np
import pytest

from multilevel.shape_buckets import bucket, pad_groups


def test_the_buckets_are_the_documented_sizes():
    assert [bucket(s) for s in (1, 8, 9, 10, 11, 100, 919, 1000)] == [
        1,
        8,
        10,
        10,
        12,
        112,
        1024,
        1024,
    ]


@pytest.mark.parametrize("size", [1, 8, 9, 85, 919, 1000, 73421])
def test_buckets_pad_by_at_most_a_quarter(size):
    padded = bucket(size)
    assert size <= padded <= max(8, 1.25 * size)
    assert bucket(padded) == padded  # a bucket is its own bucket


def test_padding_to_the_bucket():
    a = np.arange(9.0).reshape(9, 1)
    padded = pad_groups(a)
    assert padded.shape == (10, 1) and padded[9, 0] == 0 and np.array_equal(padded[:9], a)
    assert pad_groups(np.ones((8, 2, 2))).shape == (8, 2, 2)


def test_padding_keeps_the_dtype_and_pads_the_axis_asked_for():
    codes = pad_groups(np.arange(9, dtype=np.int32))  # parent levels stay indices
    assert codes.dtype == np.int32 and codes.tolist() == [*range(9), 0]
    effects = pad_groups(np.ones((2, 3, 9, 2)), axis=2)
    assert effects.shape == (2, 3, 10, 2) and not effects[:, :, 9].any()
