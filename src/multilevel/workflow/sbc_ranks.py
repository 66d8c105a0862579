"""Rank statistics of simulation-based calibration: pure computation, no I/O, no model.

Which posterior draws are ranked, the rank of a truth among them, and whether ranks are
uniform on ``0..L``: the ECDF of the ranks against its simultaneous confidence band
(Säilynoja, Bürkner & Vehtari 2022, "Graphical test for discrete uniformity and its
applications in goodness-of-fit evaluation and multiple sample comparison", Statistics
and Computing 32:32), the band's statistic with a simulated p-value, and a chi-square
test on binned ranks (Talts et al. 2018).

Examples
--------
>>> import numpy as np
>>> ranks = np.random.default_rng(0).integers(0, 100, 200)
>>> lower, upper = ecdf_band(200, 99, prob=0.95)
>>> ecdf_inside(ecdf_counts(ranks, 99) / 200, lower, upper)  # doctest: +SKIP
True
"""

from __future__ import annotations

import functools

import numpy as np
import pandas as pd
from scipy import stats

from multilevel.errors import MultilevelError

DEFAULT_RANKS = 99  # L: 100 possible ranks, so 2, 4, 5, 10, 20 ... bins divide them
BAND_TRIALS = 5000  # uniform samples simulated for a simultaneous band
PVALUE_TRIALS = 4000  # uniform samples simulated for the ECDF p-value
MAX_BINS = 20  # chi-square bins (Talts et al. use 20)
MIN_EXPECTED = 5  # smallest expected count per chi-square bin
BAND_SLACK = 1e-12  # an ECDF value on a band limit is inside (float rounding of k / n)


# ---------------------------------------------------------------------------- ranks
def kept_indices(chains: int, draws: int, thin: int | None) -> np.ndarray:
    """Positions of the kept draws in the pooled (chain after chain) draws.

    ``thin=None`` keeps ``L = 99`` draws evenly spaced over all ``chains * draws`` (about
    ``chains * draws / 99`` apart, e.g. 20 with the defaults); an integer keeps every
    ``thin``-th draw of each chain, ``L = chains * (draws // thin)``.

    Examples
    --------
    >>> kept_indices(chains=2, draws=4, thin=2).tolist()
    [1, 3, 5, 7]
    """
    total = chains * draws
    if thin is None:
        n = min(DEFAULT_RANKS, total)
        return np.floor((np.arange(n) + 0.5) * total / n).astype(int)
    if not isinstance(thin, (int, np.integer)) or thin < 1:
        raise MultilevelError(f"thin must be a positive whole number or None, got {thin!r}.")
    if thin > draws:
        raise MultilevelError(f"thin={thin} keeps no draws out of draws={draws} per chain.")
    return np.concatenate([c * draws + np.arange(thin - 1, draws, thin) for c in range(chains)])


def rank_of(truth: float, draws: np.ndarray, rng: np.random.Generator) -> int:
    """Number of draws below ``truth``; ties (possible in float32) are split at random.

    Examples
    --------
    >>> rank_of(0.5, np.array([0.1, 0.7, 0.3]), np.random.default_rng(0))
    2
    """
    draws = np.asarray(draws)
    below = int(np.sum(draws < truth))
    ties = int(np.sum(draws == truth))
    return below + (int(rng.integers(0, ties + 1)) if ties else 0)


# ---------------------------------------------------------------------------- ECDF
def ecdf_band(
    n: int, n_ranks: int, prob: float = 0.95, trials: int = BAND_TRIALS, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Simultaneous ``prob`` band for the ECDF of ``n`` ranks uniform on ``0..n_ranks``.

    Säilynoja, Bürkner & Vehtari (2022), simulation method, as implemented by ArviZ
    (``arviz.stats.ecdf_utils.ecdf_confidence_band(method="simulated")``): simulate
    ``trials`` uniform samples of size ``n``; for each, take the smallest over the
    evaluation points of the two-sided binomial tail probability of its ECDF value;
    ``gamma`` is the ``1 - prob`` quantile of these minima, and the band at each point is
    the binomial quantiles at ``gamma / 2`` and ``1 - gamma / 2``. Seeded: the same
    arguments give the same band.

    The ECDF is evaluated at ``z_x = (x + 1) / (n_ranks + 1)``, ``x = 0..n_ranks - 1``
    (the fraction of ranks ``<= x``; at ``x = n_ranks`` it is always 1).

    Returns
    -------
    lower, upper : arrays of length ``n_ranks``
        Band limits for the ECDF (fractions of ``n``) at ``z_x``.

    Examples
    --------
    >>> lower, upper = ecdf_band(50, 19, prob=0.95)
    >>> lower.shape, bool((lower <= upper).all())
    ((19,), True)
    """
    lower, upper = _ecdf_band_cached(int(n), int(n_ranks), float(prob), int(trials), int(seed))
    return lower.copy(), upper.copy()


@functools.lru_cache(maxsize=64)
def _ecdf_band_cached(n, n_ranks, prob, trials, seed):
    from arviz.stats.ecdf_utils import ecdf_confidence_band

    x = np.arange(n_ranks)
    rvs = stats.randint(0, n_ranks + 1).rvs
    # A Generator, not an int: ArviZ passes random_state to every rvs call, and an int
    # would make every simulated sample the same.
    return ecdf_confidence_band(
        n,
        x,
        (x + 1) / (n_ranks + 1),
        prob=prob,
        method="simulated",
        rvs=rvs,
        num_trials=trials,
        random_state=np.random.default_rng(seed),
    )


def ecdf_counts(ranks: np.ndarray, n_ranks: int) -> np.ndarray:
    """Number of ranks ``<= x`` for ``x = 0..n_ranks - 1``; ``ranks`` (..., n).

    Examples
    --------
    >>> ecdf_counts(np.array([0, 2, 2, 3]), 3).tolist()
    [1, 1, 3]
    """
    ranks = np.asarray(ranks, dtype=int)
    if ranks.size and (ranks.min() < 0 or ranks.max() > n_ranks):
        raise MultilevelError(f"Ranks must lie in 0..{n_ranks}.")
    flat = ranks.reshape(-1, ranks.shape[-1])
    offset = (n_ranks + 1) * np.arange(len(flat))[:, None]
    hist = np.bincount((flat + offset).ravel(), minlength=len(flat) * (n_ranks + 1))
    counts = np.cumsum(hist.reshape(len(flat), n_ranks + 1), axis=-1)[:, :n_ranks]
    return counts.reshape(*ranks.shape[:-1], n_ranks)


def ecdf_outside(ecdf: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Per evaluation point, whether the ECDF (fractions, last axis the evaluation points)
    lies outside the band ``lower..upper`` from ``ecdf_band``; same shape as ``ecdf``.

    Examples
    --------
    >>> ecdf_outside(np.array([0.0, 0.5, 0.9]), np.full(3, 0.1), np.full(3, 0.8)).tolist()
    [True, False, True]
    """
    ecdf = np.asarray(ecdf)
    return (ecdf < lower - BAND_SLACK) | (ecdf > upper + BAND_SLACK)


def ecdf_inside(ecdf: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    """Whether the whole ECDF lies in the band: ``ecdf`` (..., L) -> (...).

    Examples
    --------
    >>> bool(ecdf_inside(np.array([0.2, 0.5]), np.array([0.1, 0.4]), np.array([0.3, 0.6])))
    True
    """
    return ~ecdf_outside(ecdf, lower, upper).any(axis=-1)


def ecdf_statistic(ranks: np.ndarray, n_ranks: int) -> np.ndarray:
    """The band's statistic: the smallest over evaluation points of the two-sided
    binomial tail probability ``2 min(P(K <= k), P(K >= k))`` of each ECDF count ``k``
    (``K ~ Binomial(n, z_x)``); ``ranks`` (..., n) -> (...). Small means non-uniform.

    Examples
    --------
    >>> float(ecdf_statistic(np.zeros(50, dtype=int), 19)) < 1e-10  # all ranks 0
    True
    """
    ranks = np.asarray(ranks)
    n = ranks.shape[-1]
    k = ecdf_counts(ranks, n_ranks)
    z = (np.arange(n_ranks) + 1) / (n_ranks + 1)
    tails = np.minimum(stats.binom.cdf(k, n, z), stats.binom.sf(k - 1, n, z))
    return np.minimum(1.0, 2 * tails.min(axis=-1))


@functools.lru_cache(maxsize=64)
def _null_statistics(n: int, n_ranks: int, trials: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.sort(ecdf_statistic(rng.integers(0, n_ranks + 1, (trials, n)), n_ranks))


def ecdf_pvalue(ranks: np.ndarray, n_ranks: int, trials: int = PVALUE_TRIALS, seed: int = 1):
    """P-value of the band's statistic under uniformity, by simulating ``trials`` uniform
    samples of the same size (seeded): ``(1 + #{null <= observed}) / (trials + 1)``.
    ``p < 1 - prob`` corresponds to leaving the simultaneous ``prob`` band.

    Examples
    --------
    >>> ranks = np.random.default_rng(0).integers(0, 20, 100)
    >>> float(ecdf_pvalue(ranks, 19)) > 0.05  # doctest: +SKIP
    True
    """
    observed = ecdf_statistic(np.asarray(ranks), n_ranks)
    null = _null_statistics(np.asarray(ranks).shape[-1], int(n_ranks), int(trials), int(seed))
    below = np.searchsorted(null, observed, side="right")
    return (1 + below) / (trials + 1)


# ---------------------------------------------------------------------------- chi-square
def chi2_bins(n: int, n_ranks: int) -> np.ndarray:
    """Edges (first rank of each bin, then ``n_ranks + 1``) of the chi-square bins: the
    largest number of equal bins that divides ``n_ranks + 1``, at most 20 and with at
    least 5 expected ranks each; when none divides, nearly equal bins.

    Examples
    --------
    >>> chi2_bins(40, 99).tolist()
    [0, 20, 40, 60, 80, 100]
    """
    size = n_ranks + 1
    most = max(2, min(MAX_BINS, n // MIN_EXPECTED, size))
    divisors = [b for b in range(2, most + 1) if size % b == 0]
    bins = max(divisors) if divisors else most
    return np.round(np.linspace(0, size, bins + 1)).astype(int)


def chi2_pvalue(ranks: np.ndarray, n_ranks: int) -> tuple[float, int, float]:
    """Chi-square test of uniform ranks on bins from ``chi2_bins``: (statistic, bins, p);
    expected counts follow the bins' widths when they are unequal.

    Examples
    --------
    >>> statistic, bins, p = chi2_pvalue(np.arange(100), 99)  # perfectly even
    >>> bins, round(statistic, 6), round(p, 6)
    (20, 0.0, 1.0)
    """
    ranks = np.asarray(ranks, dtype=int)
    edges = chi2_bins(len(ranks), n_ranks)
    observed = np.histogram(ranks, bins=edges)[0]
    expected = len(ranks) * np.diff(edges) / (n_ranks + 1)
    statistic, p = stats.chisquare(observed, expected)
    return float(statistic), len(observed), float(p)


# ---------------------------------------------------------------------------- per parameter
def uniformity_table(
    ranks: pd.DataFrame, n_ranks: int, prob: float = 0.95, seed: int = 0
) -> pd.DataFrame:
    """Per parameter (column of ``ranks``): chi-square statistic, bins and p-value; the
    ECDF statistic and its p-value; and whether the ECDF stays in the simultaneous
    ``prob`` band.

    Examples
    --------
    >>> ranks = pd.DataFrame({"a": np.random.default_rng(0).integers(0, 100, 200)})
    >>> list(uniformity_table(ranks, 99).columns)  # doctest: +SKIP
    ['chi2', 'bins', 'chi2_p', 'ecdf_stat', 'ecdf_p', 'in_band']
    """
    rows = {}
    values = {name: ranks[name].to_numpy(dtype=int) for name in ranks.columns}
    n = len(ranks)
    lower, upper = ecdf_band(n, n_ranks, prob, seed=seed)
    for name, r in values.items():
        statistic, bins, p = chi2_pvalue(r, n_ranks)
        ecdf = ecdf_counts(r, n_ranks) / n
        rows[name] = {
            "chi2": statistic,
            "bins": bins,
            "chi2_p": p,
            "ecdf_stat": float(ecdf_statistic(r, n_ranks)),
            "ecdf_p": float(ecdf_pvalue(r, n_ranks)),
            "in_band": bool(ecdf_inside(ecdf, lower, upper)),
        }
    return pd.DataFrame.from_dict(rows, orient="index")


__all__ = [
    "chi2_bins",
    "chi2_pvalue",
    "ecdf_band",
    "ecdf_counts",
    "ecdf_inside",
    "ecdf_outside",
    "ecdf_pvalue",
    "ecdf_statistic",
    "kept_indices",
    "rank_of",
    "uniformity_table",
]
