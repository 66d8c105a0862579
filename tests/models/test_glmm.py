"""Generalised linear mixed models: binomial against lme4's published glmer fit; Poisson
and Bernoulli (logit, probit) on simulated data with known truth."""

import numpy as np
import pandas as pd
import pytest

import multilevel as ml

SETTINGS = dict(chains=4, warmup=500, draws=500, progress=False)


def test_cbpp_binomial_matches_lme4():
    """glmer(cbind(incidence, size - incidence) ~ period + (1 | herd), cbpp, binomial):
    Laplace ML estimates from the lme4 documentation. Fixed effects within one posterior
    sd; the herd sd (ML mode, 15 herds) inside the central 90% interval."""
    fit = ml.Model(
        "incidence | trials(size) ~ period + (1 | herd)",
        ml.datasets.load("cbpp"),
        family="binomial",
    ).fit(seed=2, **SETTINGS)
    s = fit.summary()
    lme4 = {
        "Intercept": -1.3983,
        "period[T.2]": -0.9919,
        "period[T.3]": -1.1282,
        "period[T.4]": -1.5797,
    }
    for name, value in lme4.items():
        assert abs(s.loc[name, "mean"] - value) < s.loc[name, "sd"], name
    assert s.loc["sd(Intercept|herd)", "q5"] < 0.6421 < s.loc["sd(Intercept|herd)", "q95"]
    assert fit.diagnostics.divergences == 0


def _simulate(seed: int, n_groups: int, per_group: int, truth: dict, family: str):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(n_groups), per_group)
    x = rng.normal(size=g.size)
    effects = rng.normal(0, truth["sd(Intercept|g)"], n_groups)
    eta = truth["Intercept"] + truth["x"] * x + effects[g]
    if family == "poisson":
        y = rng.poisson(np.exp(eta))
    elif family == "logit":
        y = rng.random(g.size) < 1 / (1 + np.exp(-eta))
    else:  # probit
        y = rng.normal(size=g.size) < eta
    return pd.DataFrame({"y": y.astype(int), "x": x, "g": [f"g{i:02d}" for i in g]})


def _recovered(fit, truth):
    """Each truth within 3 posterior sds of the posterior mean (99.7% band)."""
    s = fit.summary()
    for name, value in truth.items():
        z = (s.loc[name, "mean"] - value) / s.loc[name, "sd"]
        assert abs(z) < 3, (name, z, s.loc[name].to_dict())


def test_poisson_glmm_recovers_truth():
    truth = {"Intercept": 0.5, "x": 0.3, "sd(Intercept|g)": 0.5}
    data = _simulate(7, 40, 25, truth, "poisson")
    fit = ml.Model("y ~ x + (1 | g)", data, family="poisson").fit(seed=3, **SETTINGS)
    _recovered(fit, truth)


@pytest.mark.parametrize("link", ["logit", "probit"])
def test_bernoulli_glmm_recovers_truth(link):
    truth = {"Intercept": -0.3, "x": 0.8, "sd(Intercept|g)": 0.7}
    data = _simulate(11, 50, 40, truth, link)
    fit = ml.Model("y ~ x + (1 | g)", data, family="bernoulli", link=link).fit(seed=4, **SETTINGS)
    _recovered(fit, truth)
