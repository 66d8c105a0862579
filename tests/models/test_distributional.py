"""Distributional regression (``ml.bf``): a formula for a family parameter.

Reference checks against hand-written NumPyro models on real data (radon, sleepstudy),
with the same priors (read from the spec) and a plainly written likelihood; agreement
within Monte Carlo error (``posterior_checks.same_posterior``: means within 4.5 combined
MCSEs, sds within 12% or 4.5 combined ses). The API around it (names, priors by class,
predictions of a parameter, save/load, refusals) is checked on the same fits.
Recovery on simulated truth: ``test_distributional_recovery.py``.
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest
from numpyro.infer import MCMC, NUTS
from posterior_checks import same_posterior

import multilevel as ml
from multilevel._arviz import az
from multilevel.missing import MissingDataWarning

RADON = ml.bf("log_radon ~ floor + (1 | county)", sigma="~ floor + (1 | county)")
SLEEP = ml.bf("Reaction ~ Days + (1 | Subject)", sigma="~ Days", nu=4)
SETTINGS = dict(chains=2, warmup=500, draws=750, progress=False, warn=False)


def reference_fit(
    model_fn, args, seed: int, names: list[str], warmup=500, draws=750, dense_mass=False
):
    """A plain NumPyro NUTS run, its draws as a fit-like object for ``same_posterior``."""
    mcmc = MCMC(NUTS(model_fn, dense_mass=dense_mass), num_warmup=warmup, num_samples=draws,
                num_chains=2, chain_method="sequential", progress_bar=False)  # fmt: skip
    mcmc.run(jax.random.PRNGKey(seed), *args)
    samples = mcmc.get_samples(group_by_chain=True)

    class Reference:
        idata = az.from_dict(posterior={n: np.asarray(samples[n]) for n in names})

    return Reference()


# ------------------------------------------------------------------ heteroscedastic radon
@pytest.fixture(scope="module")
def radon():
    return ml.datasets.load("radon")


@pytest.fixture(scope="module")
def radon_model(radon):
    return ml.Model(RADON, radon)


@pytest.fixture(scope="module")
def radon_fit(radon_model):
    return radon_model.fit(seed=1, **SETTINGS)


def radon_reference(y, floor, county, n_county, priors):
    """log_radon_i ~ Normal(b0 + b1 floor_i + u[c_i], exp(s0 + s1 floor_i + v[c_i])),
    u ~ Normal(0, tau_u), v ~ Normal(0, tau_v), non-centred; priors as the spec's."""
    b0 = numpyro.sample("Intercept", priors["Intercept"])
    b1 = numpyro.sample("floor", priors["floor"])
    s0 = numpyro.sample("sigma_Intercept", priors["sigma_Intercept"])
    s1 = numpyro.sample("sigma_floor", priors["sigma_floor"])
    tau_u = numpyro.sample("sd(Intercept|county)", priors["sd(Intercept|county)"])
    tau_v = numpyro.sample("sd(sigma_Intercept|county)", priors["sd(sigma_Intercept|county)"])
    with numpyro.plate("counties", n_county):
        u = tau_u * numpyro.sample("z_u", dist.Normal(0, 1))
        v = tau_v * numpyro.sample("z_v", dist.Normal(0, 1))
    mean = b0 + b1 * floor + u[county]
    sd = jnp.exp(s0 + s1 * floor + v[county])
    numpyro.sample("y", dist.Normal(mean, sd), obs=y)


def test_names_and_priors_follow_brms(radon_model):
    spec = radon_model.spec
    assert spec.columns == ("Intercept", "floor", "sigma_Intercept", "sigma_floor")
    assert spec.sd_names == ("sd(Intercept|county)", "sd(sigma_Intercept|county)")
    assert spec.aux == ()  # sigma is a linear predictor now, not one number
    assert [d.name for d in spec.dpars] == ["sigma"] and spec.dpars[0].link == "log"
    text = spec.describe()
    assert "sigma ~ floor + (1 | county) (link: log)" in text
    assert "sigma_floor" in text and "sd(sigma_Intercept|county)" in text
    # the intercept of log(sigma) is centred on log(sd(y)) (prior_rules.dpar_centre)
    log_sd = np.log(np.std(radon_model.design.y))
    assert spec.prior_of["sigma_Intercept"].mu == pytest.approx(log_sd)


@pytest.mark.slow  # 20-25 s; the student_t reference below stays in the default run
def test_heteroscedastic_radon_matches_a_hand_written_numpyro_model(radon, radon_model, radon_fit):
    design = radon_model.design
    priors = {name: p.to_numpyro() for name, p in radon_model.spec.priors}
    county = design.blocks[0].codes
    args = (
        jnp.asarray(design.y),
        jnp.asarray(radon["floor"].to_numpy(dtype=float)),
        jnp.asarray(county),
        len(design.blocks[0].levels),
        priors,
    )
    names = list(radon_model.spec.hyper_names)
    reference = reference_fit(radon_reference, args, seed=2, names=names)
    assert "NUTS" in radon_fit.info["method"]  # not the collapsed sampler: sigma varies
    same_posterior(radon_fit, reference, names)


def test_predicting_sigma(radon_fit):
    new = pd.DataFrame({"floor": [0, 1], "county": ["AITKIN", "a new county"]})
    sigma = radon_fit.predict(new, dpar="sigma", groups="population").draws["sigma"].values
    link = radon_fit.predict(new, dpar="sigma", kind="link", groups="population")
    post = radon_fit.idata.posterior
    expected = np.exp(post["sigma_Intercept"].values + post["sigma_floor"].values)
    np.testing.assert_allclose(sigma[..., 1], expected, rtol=1e-6)
    np.testing.assert_allclose(np.log(sigma), link.draws["sigma"].values, rtol=1e-6)
    own = radon_fit.predict(new, dpar="sigma")  # a new county draws its sigma effect
    assert own.new_levels == {"county": ("a new county",)}
    with pytest.raises(ml.MultilevelError, match="kind='mean'.*kind='link'"):
        radon_fit.predict(new, dpar="sigma", kind="response")
    with pytest.raises(ml.MultilevelError, match="'mu', 'sigma'"):
        radon_fit.predict(new, dpar="nu")


def test_saved_and_loaded_fits_keep_the_formulas(radon, radon_fit, tmp_path):
    path = radon_fit.save(tmp_path / "hetero.nc")
    loaded = ml.load(path)
    assert loaded.spec == radon_fit.spec
    new = pd.DataFrame({"floor": [0, 1], "county": ["AITKIN", "AITKIN"]})
    a = radon_fit.predict(new, dpar="sigma").draws["sigma"].values
    b = loaded.predict(new, dpar="sigma", data=radon).draws["sigma"].values
    np.testing.assert_allclose(a, b, rtol=1e-6)
    assert "sigma ~ floor + (1 | county)" in str(loaded)


def test_loo_scores_the_rows_with_their_own_sigma(radon_fit):
    """The stored log-likelihood uses each row's sigma: recomputed by hand for a draw."""
    ll = radon_fit.idata.log_likelihood["log_radon"].values
    post = radon_fit.idata.posterior
    design = radon_fit.model.design
    codes, floor = design.blocks[0].codes, design.X[:, 1]
    c, d = 1, 321
    mean = post["Intercept"].values[c, d] + post["floor"].values[c, d] * floor
    mean = mean + post["Intercept|county"].values[c, d][codes]
    log_sd = post["sigma_Intercept"].values[c, d] + post["sigma_floor"].values[c, d] * floor
    log_sd = log_sd + post["sigma_Intercept|county"].values[c, d][codes]
    expected = -0.5 * ((design.y - mean) / np.exp(log_sd)) ** 2 - log_sd - 0.5 * np.log(2 * np.pi)
    np.testing.assert_allclose(ll[c, d], expected, rtol=1e-9, atol=1e-9)
    assert np.isfinite(radon_fit.loo().elpd)


# ------------------------------------------------------------------ student_t, nu fixed
@pytest.fixture(scope="module")
def sleep():
    return ml.datasets.load("sleepstudy")


def sleep_reference(y, days, subject, n_subject, priors):
    """Reaction ~ StudentT(4, b0 + b1 Days + u[s], exp(s0 + s1 Days)), u ~ N(0, tau)."""
    b0 = numpyro.sample("Intercept", priors["Intercept"])
    b1 = numpyro.sample("Days", priors["Days"])
    s0 = numpyro.sample("sigma_Intercept", priors["sigma_Intercept"])
    s1 = numpyro.sample("sigma_Days", priors["sigma_Days"])
    tau = numpyro.sample("sd(Intercept|Subject)", priors["sd(Intercept|Subject)"])
    with numpyro.plate("subjects", n_subject):
        u = tau * numpyro.sample("z_u", dist.Normal(0, 1))
    mean = b0 + b1 * days + u[subject]
    numpyro.sample("y", dist.StudentT(4.0, mean, jnp.exp(s0 + s1 * days)), obs=y)


def test_student_t_with_nu_fixed_matches_a_hand_written_numpyro_model(sleep):
    model = ml.Model(SLEEP, sleep, family="student_t")
    spec = model.spec
    assert spec.aux == () and spec.fixed_dpars == {"nu": 4.0}
    assert "nu = 4 (fixed)" in spec.describe()
    fit = model.fit(seed=3, **SETTINGS)
    priors = {name: p.to_numpyro() for name, p in spec.priors}
    args = (
        jnp.asarray(model.design.y),
        jnp.asarray(sleep["Days"].to_numpy(dtype=float)),
        jnp.asarray(model.design.blocks[0].codes),
        len(model.design.blocks[0].levels),
        priors,
    )
    names = list(spec.hyper_names)
    same_posterior(fit, reference_fit(sleep_reference, args, seed=4, names=names), names)


# ------------------------------------------------------------------ priors and refusals
def test_priors_by_class_of_a_parameter(radon):
    model = ml.Model(
        RADON,
        radon,
        priors={
            "sigma_b": ml.Normal(0, 0.5),
            "sigma_Intercept": ml.Normal(-0.3, 1),
            "sd": ml.HalfNormal(1),
        },
    )
    spec = model.spec
    sources = dict(spec.prior_sources)
    assert spec.prior_of["sigma_floor"] == ml.Normal(0, 0.5)
    assert sources["sigma_floor"] == "set by class 'sigma_b'"
    assert spec.prior_of["sigma_Intercept"] == ml.Normal(-0.3, 1)
    # 'sd' is the mean's class; the sds of sigma's terms have their own, 'sigma_sd'
    assert spec.prior_of["sd(Intercept|county)"] == ml.HalfNormal(1)
    assert spec.prior_of["sd(sigma_Intercept|county)"] != ml.HalfNormal(1)
    with pytest.raises(ml.PriorError, match="sigma_sd"):
        ml.Model(RADON, radon, priors={"sigma_sdd": ml.HalfNormal(1)})
    with pytest.raises(ml.PriorError, match="sigma_floor"):
        ml.Model(RADON, radon, priors={"sigma_floor": ml.HalfNormal(1)})  # a real coefficient


@pytest.mark.parametrize(
    "formula, family, message",
    [
        (ml.bf("y ~ x", phi="~ x"), "gaussian", "no parameter 'phi'.*sigma"),
        (ml.bf("y | se(s) ~ x", sigma="~ x"), "gaussian", "known sd"),
        (ml.bf("y ~ x", sigma="~ z"), "gaussian", "Column 'z'.*formula of sigma"),
        (ml.bf("y ~ x", sigma="~ x + (1 | g)"), "poisson", "no parameter 'sigma'.*none"),
    ],
)
def test_refusals_name_the_parameter(formula, family, message):
    data = pd.DataFrame({"y": [1.0, 2, 3, 4], "x": [0.0, 1, 0, 1], "s": 1.0, "g": list("aabb")})
    with pytest.raises((ml.DataError, ml.FormulaError), match=message):
        ml.Model(formula, data, family=family)


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"sigma": "x +"}, "formula for sigma"),
        ({"sigma": "nu ~ x"}, "starts with 'nu'"),
        ({"mu": "~ x"}, "first argument"),
        ({"nu": float("inf")}, "finite"),
        ({"sigma": ["~ x"]}, "formula such as"),
    ],
)
def test_bf_checks_its_arguments(kwargs, message):
    with pytest.raises(ml.FormulaError, match=message):
        ml.bf("y ~ x", **kwargs)


def test_bf_accepts_brms_spellings():
    assert ml.bf("y ~ x", sigma="sigma ~ x").predicted == {"sigma": "~ x"}
    assert ml.bf("y ~ x", sigma="x + (1 | g)").predicted == {"sigma": "~ x + (1 | g)"}


def test_missing_values_in_a_parameters_formula(radon):
    w = np.random.default_rng(0).normal(size=len(radon))
    data = radon.assign(w=np.where(np.arange(len(radon)) < 5, np.nan, w))
    formula = ml.bf("log_radon ~ floor", sigma="~ w")
    with pytest.raises(ml.DataError, match="'w'"):
        ml.Model(formula, data)
    with pytest.warns(MissingDataWarning, match="Dropped 5 .*'w' \\(5\\)"):
        dropped = ml.Model(formula, data, missing="drop")
    assert dropped.design.n == len(radon) - 5
    with pytest.raises(ml.DataError, match="missing='drop'"):
        ml.Model(formula, data, missing="model")


def test_pooling_comparison_refuses_distributional_models(radon, radon_fit):
    with pytest.raises(ml.MultilevelError, match="ml.compare"):
        ml.compare_pooling(RADON, radon)
    with pytest.raises(ml.MultilevelError, match="ml.compare"):
        ml.PoolingComparison.from_fit(radon_fit)
