"""Centred group effects with the intercept as the groups' mean (hierarchical centring):
when the data choose it, and that it is the same posterior as the non-centred model."""

import numpy as np
import pandas as pd
import pytest
from posterior_checks import same_posterior

import multilevel as ml
from multilevel.backends import centring


def _bernoulli(groups: int, rows_per_group: int, sd: float = 0.7, seed: int = 5):
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), rows_per_group)
    x = rng.integers(0, 2, g.size).astype(float)
    eta = -0.5 + 0.5 * x + sd * rng.standard_normal(groups)[g]
    y = (rng.random(g.size) < 1 / (1 + np.exp(-eta))).astype(int)
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i:03d}" for i in g]})


def test_rich_groups_are_centred_and_sparse_ones_not():
    rich = ml.Model("y ~ x + (1 | g)", _bernoulli(100, 200), family="bernoulli")
    assert rich.spec.centered
    sparse = ml.Model("y ~ x + (1 | g)", _bernoulli(100, 4), family="bernoulli")
    assert not sparse.spec.centered
    few = ml.Model("y ~ x + (1 | g)", _bernoulli(20, 200), family="bernoulli")
    assert not few.spec.centered  # fewer than MIN_LEVELS groups
    cbpp = ml.datasets.load("cbpp")
    assert not ml.Model(
        "incidence | trials(size) ~ period + (1 | herd)", cbpp, family="binomial"
    ).spec.centered
    # the user's choice stands either way
    assert not ml.Model(
        "y ~ x + (1 | g)", _bernoulli(100, 200), family="bernoulli", centered=False
    ).spec.centered


def test_poisson_rule_reads_counts():
    rng = np.random.default_rng(2)
    g = np.repeat(np.arange(80), 50)
    y = rng.poisson(np.exp(1.0 + 0.5 * rng.standard_normal(80))[g])
    data = pd.DataFrame({"y": y, "g": g})
    assert centring.rich_groups(
        ml.Model("y ~ 1 + (1 | g)", data, family="poisson").design, "poisson"
    )
    assert not centring.rich_groups(
        ml.Model("y ~ 1 + (1 | g)", data.groupby("g").head(1), family="poisson").design, "poisson"
    )


@pytest.mark.filterwarnings("ignore::multilevel.ConvergenceWarning")
def test_hierarchically_centred_equals_non_centred_posterior():
    """Same data, both parameterisations: every hyper-parameter and group effect agrees
    within Monte Carlo error (``same_posterior``: 4.5 combined MCSEs)."""
    data = _bernoulli(60, 150)
    centred = ml.Model("y ~ x + (1 | g)", data, family="bernoulli")
    plain = ml.Model("y ~ x + (1 | g)", data, family="bernoulli", centered=False)
    assert centred.spec.centered and not plain.spec.centered
    kw = dict(chains=4, warmup=500, draws=1000, progress=False, log_likelihood=False)
    a, b = centred.fit(seed=1, **kw), plain.fit(seed=2, **kw)
    same_posterior(a, b, [*centred.spec.hyper_names, "Intercept|g"])
    # and the centred one mixes better where the non-centred one struggles
    assert a.summary().loc["Intercept", "ess_bulk"] > b.summary().loc["Intercept", "ess_bulk"]


def test_fixed_group_effects_survive_the_centred_sites():
    """Simulating with given effects maps them to the centred sites (effects + the
    intercept) and back: the effects reported are the ones given."""
    model = ml.Model("y ~ x + (1 | g)", _bernoulli(60, 150), family="bernoulli")
    assert model.spec.centered
    effects = np.linspace(-1, 1, 60)
    params = {"Intercept": -0.5, "x": 0.5, "sd(Intercept|g)": 0.7, "Intercept|g": effects}
    drawn = model.draw(n=2, seed=1, params=params)
    np.testing.assert_allclose(drawn["Intercept|g"], np.broadcast_to(effects, (2, 60)), atol=1e-5)


@pytest.mark.filterwarnings("ignore::multilevel.ConvergenceWarning")
def test_partially_collapsed_with_a_centred_sampled_term_equals_joint_nuts():
    """Crossed factors: a (100 levels) integrated out, b (60 levels, 100 rows each)
    sampled centred on the intercept. Against the joint sampler, non-centred."""
    rng = np.random.default_rng(8)
    a, b = np.meshgrid(np.arange(100), np.arange(60))
    a, b = a.ravel(), b.ravel()
    y = 2.0 + rng.normal(0, 0.5, 100)[a] + rng.normal(0, 1.0, 60)[b] + rng.normal(0, 1, a.size)
    data = pd.DataFrame({"y": y, "a": a, "b": b})
    model = ml.Model("y ~ 1 + (1 | a) + (1 | b)", data)
    kw = dict(chains=4, warmup=500, draws=1000, progress=False, log_likelihood=False)
    fast = model.fit(seed=1, **kw)
    assert "partially collapsed" in fast.info["method"]
    assert model._plan.centered == (True,)
    joint = ml.Model("y ~ 1 + (1 | a) + (1 | b)", data, centered=False).fit(
        seed=2, method="nuts", **kw
    )
    same_posterior(fast, joint, [*model.spec.hyper_names, "Intercept|a", "Intercept|b"])
