"""Rank statistics of SBC on synthetic ranks with known answers: no model, no sampler.

Every random sample is seeded, so each test gives the same answer on every run; the
tolerances are chosen so that the statement would hold for almost any seed (stated per
test)."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import multilevel as ml
from multilevel.workflow.sbc_ranks import (
    PVALUE_TRIALS,
    chi2_bins,
    chi2_pvalue,
    ecdf_band,
    ecdf_counts,
    ecdf_inside,
    ecdf_outside,
    ecdf_pvalue,
    ecdf_statistic,
    kept_indices,
    rank_of,
    uniformity_table,
)


# ------------------------------------------------------------------ which draws, which rank
def test_kept_draws():
    even = kept_indices(chains=2, draws=1000, thin=None)
    assert len(even) == 99 and len(set(even)) == 99
    assert even.min() >= 0 and even.max() < 2000 and np.all(np.diff(even) >= 20)
    assert len(kept_indices(chains=1, draws=50, thin=None)) == 50  # fewer draws than 99
    thinned = kept_indices(chains=2, draws=100, thin=10)
    assert thinned.tolist() == [*range(9, 100, 10), *range(109, 200, 10)]
    for bad in (0, 2.5, 101):
        with pytest.raises(ml.MultilevelError, match="thin"):
            kept_indices(chains=2, draws=100, thin=bad)


def test_rank_counts_draws_below_and_splits_ties_evenly():
    rng = np.random.default_rng(0)
    assert rank_of(0.5, np.array([0.1, 0.7, 0.3, 0.9]), rng) == 2
    assert rank_of(-1.0, np.array([0.1, 0.7]), rng) == 0
    assert rank_of(2.0, np.array([0.1, 0.7]), rng) == 2
    # A truth equal to all 3 draws takes each rank 0..3 with probability 1/4. 4000 ties:
    # each count is Binomial(4000, 1/4), sd 27; allow 5 sd.
    tied = [rank_of(1.0, np.ones(3), rng) for _ in range(4000)]
    counts = np.bincount(tied, minlength=4)
    assert len(counts) == 4
    assert np.all(np.abs(counts - 1000) < 5 * 27.4)


# ------------------------------------------------------------------ ECDF
def test_ecdf_counts_match_a_direct_count():
    L = 9
    ranks = np.random.default_rng(1).integers(0, L + 1, (3, 4, 25))
    direct = (ranks[..., None] <= np.arange(L)).sum(axis=-2)
    np.testing.assert_array_equal(ecdf_counts(ranks, L), direct)
    with pytest.raises(ml.MultilevelError, match=r"0\.\.9"):
        ecdf_counts(np.array([0, 10]), L)


def test_outside_marks_the_points_beyond_the_band():
    lower, upper = np.array([0.1, 0.3, 0.5]), np.array([0.4, 0.6, 0.9])
    ecdf = np.array([[0.2, 0.5, 0.6], [0.2, 0.7, 0.6], [0.1, 0.6, 0.9]])
    assert ecdf_outside(ecdf, lower, upper).tolist() == [
        [False, False, False],
        [False, True, False],
        [False, False, False],  # on the limits is inside
    ]
    assert ecdf_inside(ecdf, lower, upper).tolist() == [True, False, True]


@pytest.mark.parametrize("n, L, prob", [(50, 19, 0.95), (100, 99, 0.95), (50, 19, 0.9)])
def test_band_covers_uniform_ecdfs_at_the_stated_level(n, L, prob):
    """4000 uniform samples: the simultaneous band should hold the whole ECDF in a
    fraction ``prob`` of them. Tolerance: 4 sds of the coverage estimate, combining its
    binomial error over 4000 samples with the band's own Monte Carlo error (5000
    simulated samples): 4 sqrt(p (1 - p) (1/4000 + 1/5000)) = 0.018 at 95%, 0.025 at
    90%. (Measured: 0.9415, 0.948, 0.892.) The pointwise band, for contrast, covers far
    less."""
    lower, upper = ecdf_band(n, L, prob)
    np.testing.assert_array_equal(lower, ecdf_band(n, L, prob)[0])  # seeded
    assert lower.shape == upper.shape == (L,) and np.all(lower <= upper)
    cases = 4000
    ranks = np.random.default_rng(11).integers(0, L + 1, (cases, n))
    ecdf = ecdf_counts(ranks, L) / n
    inside = ecdf_inside(ecdf, lower, upper)
    tolerance = 4 * np.sqrt(prob * (1 - prob) * (1 / cases + 1 / 5000))
    assert abs(inside.mean() - prob) < tolerance
    z = (np.arange(L) + 1) / (L + 1)
    lo, hi = stats.binom.interval(prob, n, z)
    pointwise = np.all((ecdf * n >= lo) & (ecdf * n <= hi), axis=1)
    assert pointwise.mean() < prob - 0.1


def test_leaving_the_band_is_a_small_ecdf_pvalue():
    """Both come from the same statistic: up to Monte Carlo error (the band's 5000 and the
    p-value's 4000 simulated samples), a sample leaves the 95% band exactly when its
    ECDF p-value is below 5%."""
    n, L = 50, 19
    lower, upper = ecdf_band(n, L, 0.95)
    ranks = np.random.default_rng(11).integers(0, L + 1, (300, n))
    inside = ecdf_inside(ecdf_counts(ranks, L) / n, lower, upper)
    p = ecdf_pvalue(ranks, L)
    assert p.shape == (300,)
    assert np.mean(inside == (p > 0.05)) > 0.97


# ------------------------------------------------------------------ p-values
@pytest.mark.parametrize("n, L", [(50, 19), (100, 99)])
def test_uniform_ranks_give_uniform_pvalues(n, L):
    """Under uniform ranks both p-values are (close to) uniform: not small more often than
    chance. Over 1000 samples the fraction at or below 0.05 should be 0.05; tolerance
    4 sds of binomial error over 1000 samples plus the ECDF null's Monte Carlo error
    (4000 simulated samples): 4 sqrt(0.05 0.95 (1/1000 + 1/4000)) = 0.031. (Measured:
    0.052 and 0.048 for the ECDF, 0.059 and 0.048 for the chi-square.)"""
    ranks = np.random.default_rng(3).integers(0, L + 1, (1000, n))
    ecdf_p = ecdf_pvalue(ranks, L)
    chi2_p = np.array([chi2_pvalue(r, L)[2] for r in ranks])
    tolerance = 4 * np.sqrt(0.05 * 0.95 * (1 / 1000 + 1 / PVALUE_TRIALS))
    for p in (ecdf_p, chi2_p):
        assert np.all((p > 0) & (p <= 1))
        assert abs(np.mean(p <= 0.05) - 0.05) < tolerance
    # Their medians sit near 0.5 too (sd of a median of 1000 uniforms: 0.016).
    assert abs(np.median(ecdf_p) - 0.5) < 0.08 and abs(np.median(chi2_p) - 0.5) < 0.08


def _skewed(shape: str, n: int = 300, L: int = 99) -> np.ndarray:
    rng = np.random.default_rng(7)
    if shape == "piled at the top":  # the truth above every draw 23% of the time
        return np.minimum(L, rng.integers(0, int(1.3 * (L + 1)), n))
    a, b = {"U-shaped": (0.5, 0.5), "hump": (3, 3), "shifted": (2, 1)}[shape]
    return np.floor(rng.beta(a, b, n) * (L + 1)).astype(int)


@pytest.mark.parametrize("shape", ["piled at the top", "U-shaped", "hump", "shifted"])
def test_clearly_nonuniform_ranks_give_tiny_pvalues(shape):
    """300 ranks from a clearly non-uniform distribution. The ECDF statistic is below
    every one of the 4000 simulated uniform samples', so the p-value is the smallest
    possible, 1 / 4001; the margin is wide (statistics measured 2e-15 or less, the null's
    smallest 2.7e-6). The chi-square p-values measured 1e-12 or less."""
    ranks = _skewed(shape)
    assert ecdf_pvalue(ranks, 99) == pytest.approx(1 / (PVALUE_TRIALS + 1))
    assert ecdf_statistic(ranks, 99) < 1e-8
    assert chi2_pvalue(ranks, 99)[2] < 1e-6
    lower, upper = ecdf_band(300, 99, 0.99)
    assert not ecdf_inside(ecdf_counts(ranks, 99) / 300, lower, upper)


def test_chi2_bins_divide_the_ranks():
    assert np.diff(chi2_bins(200, 99)).tolist() == [5] * 20
    assert np.diff(chi2_bins(40, 99)).tolist() == [20] * 5  # at least 5 expected per bin
    edges = chi2_bins(200, 100)  # 101 ranks: prime, so nearly equal bins
    assert edges[0] == 0 and edges[-1] == 101 and len(edges) == 21
    # Expected counts follow the bin widths: uniform ranks still pass.
    ranks = np.random.default_rng(0).integers(0, 101, 2000)
    assert chi2_pvalue(ranks, 100)[2] > 0.01
    statistic, bins, p = chi2_pvalue(np.arange(100), 99)  # exactly even
    assert (statistic, bins, p) == (0.0, 20, 1.0)


# ------------------------------------------------------------------ per parameter
def test_uniformity_table_gathers_the_tests_per_parameter():
    ranks = pd.DataFrame({"even": np.arange(200) % 100, "top": _skewed("piled at the top", 200)})
    table = uniformity_table(ranks, 99)
    assert list(table.index) == ["even", "top"]
    assert list(table.columns) == ["chi2", "bins", "chi2_p", "ecdf_stat", "ecdf_p", "in_band"]
    assert table.loc["even", "in_band"] and not table.loc["top", "in_band"]
    assert table.loc["even", "chi2_p"] == 1.0
    top = ranks["top"].to_numpy()
    assert table.loc["top", "ecdf_p"] == ecdf_pvalue(top, 99)
    assert table.loc["top", "chi2"] == chi2_pvalue(top, 99)[0]
