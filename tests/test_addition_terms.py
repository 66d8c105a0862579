"""brms' addition terms: ``weights()``, ``rate()``, ``offset()``, ``cens()``, ``trunc()``,
``se(s, sigma = TRUE)`` and lme4's ``cbind()``: parsing, the densities they imply
(against scipy), and what bad input gets. No sampling here except where stated: the
model's log density is compared at fixed parameter values (exact, float32 rounding)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pandas as pd
import pytest
from numpyro.infer.util import initialize_model, potential_energy
from scipy import stats

import multilevel as ml
from multilevel.errors import DataError, FormulaError, MultilevelError
from multilevel.families import FAMILIES
from multilevel.formula import parse_formula
from multilevel.response_bounds import Bounded


@pytest.fixture(scope="module")
def rows():
    rng = np.random.default_rng(3)
    n = 60
    g = rng.integers(0, 6, n)
    x = rng.normal(size=n)
    t = rng.uniform(0.5, 3.0, n)
    y = rng.normal(1 + 0.5 * x, 1.0)
    return pd.DataFrame({
        "y": y, "x": x, "g": g, "t": t, "k": rng.poisson(2 * t),
        "w": rng.integers(1, 3, n).astype(float),
        "c": np.where(y > 2, "right", np.where(y < 0, "left", "none")),
        "lo": y - 1.0, "hi": y + 1.0, "s": rng.uniform(0.2, 0.5, n),
    })  # fmt: skip


# ---------------------------------------------------------------------------- parsing
def test_addition_terms_are_read_into_fields():
    parsed = parse_formula("y | cens(c, y2) + weights(w) + trunc(lb = 0, ub = u) ~ x")
    assert (parsed.cens, parsed.cens_upper, parsed.weights) == ("c", "y2", "w")
    assert parsed.trunc_bounds == ("0", "u")
    assert parsed.columns == {"y", "c", "y2", "w", "u"}  # the number 0 is not a column
    rate = parse_formula("n | rate(t) ~ x + offset(np.log(a)) + offset(b)")
    assert rate.rate == "t" and rate.offsets == ("np.log(a)", "b") and rate.fixed == "x"
    assert parse_formula("y | se(s, sigma = TRUE) ~ 1").se_sigma
    assert parse_formula("cbind(k, n - k) ~ x").trials == "n"
    assert parse_formula("cbind(k, f) ~ x").failures == "f"


@pytest.mark.parametrize(
    "formula, words",
    [
        ("y | weights(w) | rate(t) ~ x", "join several addition terms with `+`"),
        ("y | cens(c) + cens(d) ~ x", "`cens()` is given twice"),
        ("y | trunc() ~ x", "needs `lb =` or `ub =`"),
        ("y | trunc(lb = np.log(a)) ~ x", "takes a number or a column name"),
        ("y | se(s, sigma = maybe) ~ x", "takes TRUE or FALSE"),
        ("y | subset(s) ~ x", "`subset()` is not supported"),
        ("cbind(k, n - j) ~ x", "`n - k` with `n` a column of totals"),
        ("y ~ x * offset(t)", "term of its own"),
    ],
)
def test_unreadable_addition_terms_are_refused_by_name(formula, words):
    with pytest.raises(FormulaError) as error:
        parse_formula(formula)
    assert words in str(error.value)


# ---------------------------------------------------------------------- the densities
def test_censored_and_truncated_densities_match_scipy():
    """Bounded's log probability, row by row, against scipy's normal and Poisson."""
    y = jnp.array([0.3, 1.2, -0.4, 0.5])
    law = dist.Normal(jnp.zeros(4), 1.5)
    cens = jnp.array([0, -1, 1, 2])
    y2 = jnp.array([0.3, 1.2, -0.4, 2.0])
    got = Bounded(law, cens=cens, y2=y2).log_prob(y)
    norm = stats.norm(0, 1.5)
    expected = [norm.logpdf(0.3), norm.logcdf(1.2), norm.logsf(-0.4),
                np.log(norm.cdf(2.0) - norm.cdf(0.5))]  # fmt: skip
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    truncated = Bounded(law, lower=jnp.full(4, -0.5), upper=jnp.full(4, 2.0)).log_prob(y)
    reference = stats.truncnorm(-0.5 / 1.5, 2.0 / 1.5, scale=1.5).logpdf(np.asarray(y))
    np.testing.assert_allclose(truncated, reference, rtol=1e-5)
    # counts: right-censored at k is P(Y > k); truncated below at 1 keeps k = 1 (brms)
    counts = jnp.array([3.0, 3.0, 1.0])
    law = dist.Poisson(jnp.full(3, 2.5))
    got = Bounded(law, cens=jnp.array([0, 1, 0]), lower=jnp.array([0.0, 0.0, 1.0]),
                  discrete=True).log_prob(counts)  # fmt: skip
    poisson = stats.poisson(2.5)
    expected = [poisson.logpmf(3), poisson.logsf(3), poisson.logpmf(1) - np.log(poisson.sf(0))]
    np.testing.assert_allclose(got, expected, rtol=1e-5)


def test_truncated_draws_stay_inside_and_follow_the_truncated_law():
    """20,000 rejection draws of N(0, 1) on [-0.5, 2]: inside the bounds, and their mean
    within 5 Monte Carlo ses of the truncated normal's."""
    n = 20_000
    law = Bounded(dist.Normal(jnp.zeros(n), 1.0), lower=jnp.full(n, -0.5), upper=jnp.full(n, 2.0))
    draws = np.asarray(jax.jit(law.sample)(jax.random.PRNGKey(1)))
    assert draws.min() >= -0.5 and draws.max() <= 2.0
    reference = stats.truncnorm(-0.5, 2.0)
    assert abs(draws.mean() - reference.mean()) < 5 * reference.std() / np.sqrt(n)


# ----------------------------------------------------------------- the model's density
def _log_density(model, params):
    """The model's log density at unconstrained site values ``params``."""
    data, prior = model.model_args()
    return -float(potential_energy(model.numpyro_model(), (data, prior), {}, params))


def _params(model, seed=0):
    """Unconstrained site values of one initial point, shared by models of one shape."""
    data, prior = model.model_args()
    info = initialize_model(
        jax.random.PRNGKey(seed), model.numpyro_model(), model_args=(data, prior)
    )
    return info.param_info.z


def test_weights_count_rows_as_repeated_rows(rows):
    """A weight of 2 is the row written twice: the models' log densities agree at the
    same parameter values (float32 sums: 1e-5 relative). The priors are the weighted
    model's for both, not each data set's defaults."""
    weighted = ml.Model("y | weights(w) ~ x + (1 | g)", rows)
    doubled = pd.concat([rows, rows[rows["w"] == 2]], ignore_index=True)
    repeated = ml.Model("y ~ x + (1 | g)", doubled, priors=dict(weighted.spec.priors))
    params = _params(weighted)
    assert _log_density(weighted, params) == pytest.approx(_log_density(repeated, params), rel=1e-5)
    unweighted = ml.Model("y ~ x + (1 | g)", rows, priors=dict(weighted.spec.priors))
    assert _log_density(unweighted, params) != pytest.approx(
        _log_density(weighted, params), rel=1e-3
    )


def test_offset_and_rate_are_the_same_model(rows):
    """``rate(t)`` is ``offset(np.log(t))`` on the log link: equal log densities, and
    the offset moves the log density as log(t) added to eta would."""
    rate = ml.Model("k | rate(t) ~ x + (1 | g)", rows, family="poisson")
    offset = ml.Model("k ~ x + offset(np.log(t)) + (1 | g)", rows, family="poisson")
    params = _params(rate)
    assert _log_density(rate, params) == pytest.approx(_log_density(offset, params), rel=1e-6)
    np.testing.assert_allclose(rate.design.offset, np.log(rows["t"]))
    plain = ml.Model("k ~ x + (1 | g)", rows, family="poisson")
    assert _log_density(plain, params) != pytest.approx(_log_density(rate, params), rel=1e-3)


def test_se_with_sigma_adds_a_residual_sd(rows):
    """``se(s, sigma = TRUE)``: each row's sd is sqrt(s^2 + sigma^2) (brms), so the model
    has a sigma, and the collapsed sampler steps aside."""
    model = ml.Model("y | se(s, sigma = TRUE) ~ x", rows)
    assert "sigma" in model.spec.aux
    assert "plus a residual sigma" in model.spec.describe()
    assert ml.Model("y | se(s) ~ x", rows).spec.aux == ()
    law = FAMILIES["gaussian"].likelihood(
        jnp.zeros(2), "identity", {"sigma": jnp.asarray(0.4)}, None, se=jnp.array([0.3, 0.0])
    )
    np.testing.assert_allclose(law.scale, [0.5, 0.4], rtol=1e-6)


def test_cbind_is_trials(rows):
    data = rows.assign(n=rows["k"] + 3, f=3)
    a = ml.Model("cbind(k, n - k) ~ x + (1 | g)", data, family="binomial")
    b = ml.Model("cbind(k, f) ~ x + (1 | g)", data, family="binomial")
    c = ml.Model("k | trials(n) ~ x + (1 | g)", data, family="binomial")
    np.testing.assert_array_equal(a.design.trials, c.design.trials)
    np.testing.assert_array_equal(b.design.trials, c.design.trials)


def test_addition_terms_keep_rows_apart(rows):
    """Offsets, weights and bounds make each row's likelihood its own: no pooling of
    rows into covariate patterns, no collapsed sampler; the design holds them as data."""
    model = ml.Model("y | cens(c) + weights(w) ~ x + (1 | g)", rows)
    assert model.design.has_additions
    assert model._collapse_plan("auto") is None  # the joint sampler
    assert "offsets, weights, censoring" in model._plan
    with pytest.raises(MultilevelError, match="does not apply here"):
        model._collapse_plan("collapsed")
    data, _ = model.model_args()
    assert set(data["bounds"]) == {"cens"} and data["weight"].shape == (len(rows),)


# ------------------------------------------------------------------------ bad input
@pytest.mark.parametrize(
    "formula, change, words",
    [
        ("y | weights(w) ~ x", {"w": -1.0}, "must be finite and >= 0"),
        ("y | weights(w) ~ x", {"w": 0.0, "_all": True}, "Every weight in `w` is 0"),
        ("k | rate(t) ~ x", {"t": 0.0}, "must be positive"),
        ("k ~ x + offset(np.log(t))", {"t": -1.0}, "log of non-positive numbers"),
        ("y | cens(c) ~ x", {"c": "censored"}, 'must hold "none", "left"'),
        ("y | cens(c) ~ x", {"c": 3}, "brms' codes"),
        ("y | cens(c) ~ x", {"c": "interval"}, "needs the upper ends"),
        ("y | cens(c, lo) ~ x", {"c": "interval"}, "need `lo` > the response"),
        ("y | trunc(lb = 0) ~ x", {}, "below its truncation bound"),
        ("y | trunc(ub = hi) ~ x", {"hi": -5.0}, "above its truncation bound"),
    ],
)
def test_bad_addition_values_name_the_column_and_row(rows, formula, change, words):
    data = rows.copy()
    family = "poisson" if formula.startswith("k") else "gaussian"
    for column, value in change.items():
        if column == "_all":
            continue
        if change.get("_all"):
            data[column] = value
        elif isinstance(value, int):  # a numeric column of codes, one of them wrong
            data[column] = 0
            data.loc[4, column] = value
        else:
            data[column] = data[column].astype(object if isinstance(value, str) else float)
            data.loc[4, column] = value
    with pytest.raises(DataError) as error:
        ml.Model(formula, data, family=family)
    assert words in str(error.value)


def test_families_without_a_cdf_refuse_censoring(rows):
    data = rows.assign(b=(rows["y"] > 1).astype(int))
    with pytest.raises(DataError, match="needs the cdf of the bernoulli family"):
        ml.Model("b | cens(c) ~ x", data, family="bernoulli")


def test_rate_needs_a_log_link(rows):
    data = rows.assign(b=(rows["y"] > 1).astype(int))
    with pytest.raises(MultilevelError, match="link='log'"):
        ml.Model("b | rate(t) ~ x", data, family="bernoulli")


def test_prediction_needs_the_exposure(rows):
    """New rows need the exposure the offset reads; its values move the mean."""
    model = ml.Model("k | rate(t) ~ x", rows, family="poisson")
    fit = model.fit(chains=1, warmup=150, draws=100, seed=1, progress=False, warn=False)
    with pytest.raises(DataError, match="Column 't' named in an offset"):
        fit.predict(rows[["x"]].head(2))
    once = fit.predict(rows.head(2).assign(t=1.0)).values
    twice = fit.predict(rows.head(2).assign(t=2.0)).values
    np.testing.assert_allclose(twice, 2 * once, rtol=1e-6)


def test_only_truncated_draws_are_checked_for_rejection_failures():
    """A draw that is NaN for another reason (a prior draw whose mean overflows) is not
    a truncation failure: the prior predictive check counts it as absurd instead. A
    Poisson(1) kept above 50 (mass 1e-65) cannot be drawn by rejection: refused."""
    gaussian, poisson = FAMILIES["gaussian"], FAMILIES["poisson"]
    drawn = gaussian.draw(np.array([np.nan, 0.0]), "identity", {"sigma": np.ones(2)})
    assert np.isnan(drawn[0]) and np.isfinite(drawn[1])
    with pytest.raises(DataError, match="outside their `trunc\\(\\)` bounds"):
        poisson.draw(np.array([0.0]), "log", {}, bounds={"lower": np.array([50.0])})
    with pytest.raises(DataError, match="outside their `trunc\\(\\)` bounds"):  # inverse cdf
        gaussian.draw(
            np.zeros(1), "identity", {"sigma": np.ones(1)}, bounds={"lower": np.full(1, 50.0)}
        )
