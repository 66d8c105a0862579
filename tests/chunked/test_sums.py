"""Per-group sums equal their dense definitions; partial sums merge in any order to the
sums of all rows at once; the statistics from merged sums solve the least-squares problem."""

import numpy as np
import pytest

from multilevel.chunked.sums import (
    collapsed_statistics,
    group_cross_products,
    group_products,
    matrix_sums,
    merge,
    moments,
    no_rows,
    refused,
)


@pytest.fixture
def rows():
    rng = np.random.default_rng(11)
    n, levels = 300, 7
    codes = rng.integers(0, levels, size=n)
    codes[:levels] = np.arange(levels)  # every group has rows
    X = np.column_stack([np.ones(n), rng.normal(size=n), rng.normal(size=n)])
    Z = X[:, :2]
    y = 50 + X @ [1.0, 2.0, -1.0] + rng.normal(size=(levels,))[codes] + rng.normal(size=n)
    return y, X, Z, codes, levels


def _partial(y, X, Z, codes, levels, shift):
    return {
        "rows": len(y),
        "missing": {},
        "missing_rows": 0,
        "infinite_y": 0,
        "sums": matrix_sums(y, X, Z, codes, levels, shift),
    }


def test_cross_products_are_the_dense_sums(rows):
    y, X, Z, codes, levels = rows
    onehot = np.eye(levels)[codes]  # (n, L)
    dense = np.einsum("nl,na,nb->lab", onehot, Z, X)
    # summation order differs (bincount vs einsum): agreement to rounding, ~1e-13 relative
    np.testing.assert_allclose(group_cross_products(codes, Z, X, levels), dense, rtol=1e-12)
    np.testing.assert_allclose(
        group_products(codes, Z, y, levels), np.einsum("nl,na,n->la", onehot, Z, y), rtol=1e-12
    )


def test_symmetric_cross_products_equal_the_full_ones_bit_for_bit(rows):
    _, _, Z, codes, levels = rows
    symmetric = group_cross_products(codes, Z, Z, levels)  # B is A: upper triangle mirrored
    full = group_cross_products(codes, Z, Z.copy(), levels)
    np.testing.assert_array_equal(symmetric, full)
    np.testing.assert_array_equal(symmetric, np.swapaxes(symmetric, 1, 2))


def test_empty_groups_sum_to_zero():
    out = group_cross_products(np.array([0, 0]), np.ones((2, 1)), np.ones((2, 2)), 3)
    np.testing.assert_array_equal(out, [[[2.0, 2.0]], [[0.0, 0.0]], [[0.0, 0.0]]])


@pytest.mark.parametrize("cuts", [(100,), (1, 150, 299), (50, 100, 200, 250)])
def test_merged_chunks_equal_all_rows_at_once(rows, cuts):
    y, X, Z, codes, levels = rows
    shift = 50.0
    whole = _partial(y, X, Z, codes, levels, shift)
    edges = [0, *cuts, len(y)]
    parts = [
        _partial(y[a:b], X[a:b], Z[a:b], codes[a:b], levels, shift)
        for a, b in zip(edges[:-1], edges[1:])
    ]
    left = parts[0]  # left to right, as local sources merge
    for part in parts[1:]:
        left = merge(left, part)
    while len(parts) > 1:  # pairwise, as the Dask tree merges
        pairs = [merge(a, b) for a, b in zip(parts[::2], parts[1::2])]
        parts = pairs + ([parts[-1]] if len(parts) % 2 else [])
    for merged in (left, parts[0], merge(no_rows(), left), merge(left, no_rows())):
        assert merged["rows"] == len(y)
        for key, value in whole["sums"].items():
            # different summation orders of ~300 terms: rounding only, far below 1e-11
            np.testing.assert_allclose(merged["sums"][key], value, rtol=1e-11, atol=1e-9)
    mean, var = moments(left["sums"], len(y))
    W = np.column_stack([y, X, Z])
    np.testing.assert_allclose(mean, W.mean(axis=0), rtol=1e-13)
    np.testing.assert_allclose(var, W.var(axis=0), rtol=1e-11, atol=1e-14)


def test_refused_rows_keep_counting_and_drop_the_sums(rows):
    y, X, Z, codes, levels = rows
    good = _partial(y, X, Z, codes, levels, 0.0)
    bad = {**no_rows(), "rows": 5, "missing": {"x": 2}, "missing_rows": 2}
    for merged in (merge(good, bad), merge(bad, good)):
        assert refused(merged) and merged["sums"] is None
        assert merged["rows"] == len(y) + 5 and merged["missing"] == {"x": 2}
    assert merge(bad, bad)["missing"] == {"x": 4}
    assert not refused(good)


@pytest.mark.parametrize("shift", [0.0, 50.0])
def test_statistics_solve_least_squares_whatever_the_shift(rows, shift):
    y, X, Z, codes, levels = rows
    sums = _partial(y, X, Z, codes, levels, shift)["sums"]
    stats = collapsed_statistics(sums, len(y), shift, intercept=0)
    beta0 = np.linalg.lstsq(X, y, rcond=None)[0]
    e = y - X @ beta0
    # normal equations vs QR on a well-conditioned X (cond ~ 50): ~1e-12 relative
    np.testing.assert_allclose(stats["beta0"], beta0, rtol=1e-10)
    np.testing.assert_allclose(stats["ee"], e @ e, rtol=1e-9)
    np.testing.assert_allclose(stats["Xe"], 0, atol=1e-8)  # residuals orthogonal to X
    zte = group_products(codes, Z, e, levels)
    np.testing.assert_allclose(stats["Zte"], zte, rtol=1e-8, atol=1e-9)
    assert stats["n"] == len(y) and stats["ZtZ"].shape == (levels, 2, 2)
