"""Bayesian R² and LOO-adjusted R² (``multilevel.r2``; ``fit.r2``, ``fit.loo_r2``).

One fit, shared by the module: simulated data with known signal and noise, y = 1 + 2 x
+ u_g + e with 30 groups of 10 rows, sd(u) = 1.5 and sigma = 2, so that the truth of
both R²s is known from the simulated parts themselves. The per-draw values are checked
against the expected values computed by hand from the named draws (not through
``predict``), the LOO means against plain importance sampling.
"""

from __future__ import annotations

import warnings
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel import r2 as r2_module
from multilevel._arviz import az

N_GROUPS, PER_GROUP, SD_GROUP, SIGMA = 30, 10, 1.5, 2.0


@pytest.fixture(scope="module")
def simulated():
    rng = np.random.default_rng(14)
    g = np.repeat(np.arange(N_GROUPS), PER_GROUP)
    x = rng.standard_normal(len(g))
    u = SD_GROUP * rng.standard_normal(N_GROUPS)[g]
    e = SIGMA * rng.standard_normal(len(g))
    data = pd.DataFrame({"y": 1 + 2 * x + u + e, "x": x, "g": [f"g{k:02d}" for k in g]})
    fit = ml.Model("y ~ x + (1 | g)", data).fit(
        chains=2, warmup=300, draws=300, seed=3, progress=False
    )
    return SimpleNamespace(fit=fit, data=data, x=x, u=u, e=e, g=g)


def by_hand(fit, x, g, groups: bool) -> np.ndarray:
    """(S, n) expected responses from the named draws: Intercept + x b (+ u_g)."""
    mu = fit.draws("Intercept")[:, None] + fit.draws("x")[:, None] * x[None, :]
    if groups:
        levels = list(fit.idata.posterior["Intercept|g"].coords["g"].values)
        codes = np.array([levels.index(f"g{k:02d}") for k in g])
        mu = mu + fit.draws("Intercept|g")[:, codes]
    return mu


@pytest.mark.parametrize("groups", ["fitted", "zero"])
def test_r2_equals_the_direct_computation_from_the_draws(simulated, groups):
    s = simulated
    mu = by_hand(s.fit, s.x, s.g, groups == "fitted")
    y = s.data["y"].to_numpy()
    fitted = mu.var(axis=1, ddof=1)
    expected = fitted / (fitted + (y - mu).var(axis=1, ddof=1))
    result = s.fit.r2(groups=groups)
    # same draws, same arithmetic up to the order of additions
    np.testing.assert_allclose(result.draws, expected, rtol=1e-10)
    row = result.summary().iloc[0]
    assert row["estimate"] == pytest.approx(expected.mean(), rel=1e-10)
    assert row["median"] == pytest.approx(np.median(expected), rel=1e-10)
    assert row["q5"] == pytest.approx(np.quantile(expected, 0.05), rel=1e-10)
    assert ((result.draws > 0) & (result.draws < 1)).all()


def test_r2_is_near_the_simulated_truth(simulated):
    s = simulated
    # the in-sample truth: the same ratio at the true mean (residuals = the noise drawn)
    signal_fitted = 2 * s.x + s.u
    truth_fitted = signal_fitted.var(ddof=1) / (signal_fitted.var(ddof=1) + s.e.var(ddof=1))
    pop = 2 * s.x
    truth_zero = pop.var(ddof=1) / (pop.var(ddof=1) + (s.u + s.e).var(ddof=1))
    for groups, truth in (("fitted", truth_fitted), ("zero", truth_zero)):
        d = s.fit.r2(groups=groups).draws
        # the posterior of R² should cover its truth: within 3 posterior sds (the Monte
        # Carlo error of the mean, sd / sqrt(ESS) ~ sd / 17, is far smaller)
        assert abs(d.mean() - truth) < 3 * d.std(), (groups, d.mean(), d.std(), truth)
    # the groups explain a third of the variance here: conditioning on them must show it
    assert s.fit.r2("fitted").estimate > s.fit.r2("zero").estimate + 0.1


def test_loo_r2_uses_psis_weighted_means(simulated):
    s = simulated
    fit = s.fit
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ml.LooWarning)
        result = fit.loo_r2(seed=5)
        loo = fit.loo()
    y = s.data["y"].to_numpy()
    mu = by_hand(fit, s.x, s.g, True)
    ll = fit.idata.log_likelihood["y"].values.reshape(-1, len(y))  # (S, n), chains stacked
    # independent: plain self-normalised importance sampling, ratios 1 / p(y_i | s)
    log_w = -ll - np.logaddexp.reduce(-ll, axis=0)
    is_means = (np.exp(log_w) * mu).sum(axis=0)
    k = loo.pointwise["pareto_k"].to_numpy()
    good = k < 0.5
    assert good.mean() > 0.9
    # Pareto smoothing changes only the largest weights of each row; where k < 0.5 the
    # two estimates agree within a small fraction of the posterior sd of the row's mean
    # (measured: at most 0.009 sd)
    gap = np.abs(result.loo_means - is_means)[good] / mu.std(axis=0)[good]
    assert gap.max() < 0.05, gap.max()
    # the same Pareto k as fit.loo() (ArviZ's r_eff, psislw)
    _, k_ours = r2_module.loo_means(mu, ll.T, r2_module.relative_efficiency(fit.idata.posterior))
    np.testing.assert_allclose(k_ours, k, rtol=1e-10)
    # the bootstrap draws scatter around the plain estimate 1 - var(y - loo) / var(y);
    # the mean of 600 draws is within 4 Monte Carlo errors of it (the ratio's bias is
    # O(1/n), far smaller)
    point = 1 - np.var(y - result.loo_means, ddof=1) / np.var(y, ddof=1)
    d = result.draws
    assert abs(d.mean() - point) < 4 * d.std() / np.sqrt(len(d)) + 1e-3
    # leaving a row out cannot fit its noise: below the in-sample R²
    assert result.estimate < fit.r2().estimate
    # same seed, same draws; another seed, other bootstrap weights
    np.testing.assert_array_equal(fit.loo_r2(seed=5).draws, d)
    assert not np.array_equal(fit.loo_r2(seed=6).draws, d)


def test_loo_r2_draws_on_known_predictions():
    """Exact predictions give 1 in every bootstrap draw; a constant prediction 0 (the
    weighted variance ignores a shift); one far off is clipped to -1, as brms does."""
    rng = np.random.default_rng(0)
    y = rng.standard_normal(50)
    assert (r2_module.loo_r2_draws(y, y, 200, seed=1) == 1).all()
    np.testing.assert_allclose(r2_module.loo_r2_draws(y, np.full(50, 7.0), 200, 1), 0, atol=1e-12)
    far = r2_module.loo_r2_draws(y, -3 * y, 200, seed=1)  # 1 - 16 var(y) / var(y)
    assert (far == -1).all()


def _model_spec(formula, family="gaussian", **columns):
    rng = np.random.default_rng(1)
    data = pd.DataFrame({"x": rng.standard_normal(40), **columns})
    return SimpleNamespace(spec=ml.Model(formula, data, family=family).spec)


@pytest.mark.parametrize(
    "formula, family, columns, message",
    [
        ("y ~ x", "cumulative", {"y": np.tile([1, 2, 3, 2], 10)}, "cumulative family"),
        ("y ~ x", "categorical", {"y": np.tile(["a", "b", "c", "a"], 10)}, "categorical family"),
        (
            "y | cens(c) ~ x",
            "gaussian",
            {"y": np.arange(40.0), "c": np.tile(["none", "right"], 20)},
            "censored response",
        ),
        ("y | trunc(lb = -1) ~ x", "gaussian", {"y": np.arange(40.0)}, "truncated response"),
    ],
)
def test_r2_is_refused_where_it_is_not_defined(formula, family, columns, message):
    fake = _model_spec(formula, family, **columns)
    for function in (r2_module.bayes_r2, r2_module.loo_r2):
        with pytest.raises(ml.MultilevelError, match=message):
            function(fake)


def test_r2_groups_must_be_known(simulated):
    with pytest.raises(ml.MultilevelError, match="groups must be one of 'fitted', 'zero'"):
        simulated.fit.r2(groups="population")


def test_relative_efficiency_is_arviz_loo_s():
    """r_eff as az.loo computes it: same Pareto k as az.loo on a toy posterior."""
    rng = np.random.default_rng(2)
    posterior = {"a": rng.standard_normal((2, 200)), "b": rng.standard_normal((2, 200))}
    ll = -0.5 * (rng.standard_normal((2, 200, 5)) * 3) ** 2
    idata = az.from_dict(posterior=posterior, log_likelihood={"y": ll})
    reference = az.loo(idata, pointwise=True)
    reff = r2_module.relative_efficiency(idata.posterior)
    _, k = r2_module.loo_means(np.zeros((400, 5)), ll.reshape(-1, 5).T, reff)
    np.testing.assert_allclose(k, reference["pareto_k"].values, rtol=1e-10)
