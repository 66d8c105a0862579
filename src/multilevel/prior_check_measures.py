"""Measurements of a prior predictive check (pure NumPy): the mean's linear predictor of
parameter draws, the shares of simulated outcomes (or implied probabilities) outside the
plausible range, and per-data-set statistics. Used by ``prior_check`` and its plots."""

from __future__ import annotations

import math

import numpy as np

from multilevel.families import FAMILIES, inverse_link
from multilevel.linear_predictor import layout_of, linear_predictors, row_arrays

# Poisson rates above this cannot be simulated: NumPyro clips such counts to 2**31 - 1, or
# returns 0 once the rate overflows float32. They are marked inf (certainly out of range).
LOG_MAX_RATE = math.log(2.0**31)


def mean_linear_predictor(model, named: dict) -> np.ndarray:
    """(m, n) the mean's linear predictor of m parameter draws, from user-facing names."""
    design, spec = model.design, model.spec
    m = np.asarray(named["y"] if "y" in named else next(iter(named.values()))).shape[0]
    beta = np.zeros((m, 0))
    if spec.columns:
        beta = np.stack([np.asarray(named[c], dtype=float) for c in spec.columns], -1)
    effects = [
        np.stack([np.asarray(named[n], dtype=float) for n in t.effect_names], -1)
        for t in spec.terms
    ]  # (m, L, q) per term
    return linear_predictors(layout_of(spec), row_arrays(design), beta, effects)["mu"]


def category_shares(y: np.ndarray, trials: np.ndarray) -> np.ndarray:
    """A multinomial's counts (..., n, K) as each category's share of its row's total,
    the rows' K shares side by side (..., n K): what its prior check reads."""
    y = np.asarray(y, dtype=float)
    return (y / np.asarray(trials, dtype=float)[:, None]).reshape(*y.shape[:-2], -1)


def outside(values: np.ndarray, lo: float, hi: float) -> np.ndarray:
    return ~((values >= lo) & (values <= hi))  # non-finite values count as outside


def measure(model, named: dict, y: np.ndarray, plausible: tuple[float, float]) -> dict:
    """Shares of absurd prior predictive mass for m draws (named parameters and y).

    Returns ``outcomes`` (gaussian, poisson) or ``probabilities`` and ``rates`` (binary),
    plus the (cleaned) outcomes ``y`` and, for binary families, the success probabilities
    ``p`` and per-data-set success rates ``rate``."""
    lo, hi = plausible
    family = model.spec.family
    eta = mean_linear_predictor(model, named)
    y = np.asarray(y, dtype=float)
    if y.ndim == 3:  # a multinomial's counts (m, n, K)
        y = category_shares(y, model.design.trials)
    out: dict = {}
    fam = FAMILIES[family]
    if fam.positive_mean:  # a rate or a positive mean, from the link
        link = model.spec.link
        overflow = eta > LOG_MAX_RATE if link == "log" else inverse_link(link, eta) > 2.0**31
        y = np.where(overflow, np.inf, y)
        out["overflow"] = float(overflow.mean())
    out["y"] = y
    if FAMILIES[family].binary:
        p = inverse_link(model.spec.link, eta)
        trials = model.design.trials
        rate = y.sum(axis=1) / (float(trials.sum()) if trials is not None else y.shape[1])
        out.update(
            p=p,
            rate=rate,
            probabilities=float(outside(p, lo, hi).mean()),
            rates=float(outside(rate, lo, hi).mean()),
        )
    else:
        out["outcomes"] = float(outside(y, lo, hi).mean())
    return out


def quantile_with_inf(values, q) -> np.ndarray:
    """Quantiles that stay exact when some values are inf (no inf - inf interpolation)."""
    values = np.asarray(values, dtype=float)
    method = "linear" if np.isfinite(values).all() else "inverted_cdf"
    return np.quantile(values, q, method=method)


def per_draw_statistics(values: np.ndarray) -> dict[str, np.ndarray]:
    """Statistics of each simulated data set (rows of ``values``)."""
    with np.errstate(invalid="ignore", over="ignore"):
        finite = np.isfinite(values).all(axis=-1)
        return {
            "mean": values.mean(axis=-1),
            "sd": np.where(finite, values.std(axis=-1), np.inf),  # not nan (inf - inf)
            "min": values.min(axis=-1),
            "max": values.max(axis=-1),
        }


def percent(x: float) -> str:
    if 0 < x < 0.01 or 0.99 < x < 1:
        return f"{100 * x:.1f}%"
    return f"{100 * x:.0f}%"
