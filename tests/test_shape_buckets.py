"""Size buckets: how much padding, and that a bucket is stable."""

import pytest

from multilevel.shape_buckets import bucket


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
