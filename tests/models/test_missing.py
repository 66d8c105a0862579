"""Missing values: refused, dropped with a report, or modelled (brms ``mi()``).

The modelled fit is checked against simulated data with known truth: the imputed
predictor values and the predicted responses cover their true values at their nominal
rate, the estimates agree with the fit of the complete data, and keeping the rows
gives tighter estimates than dropping them.
"""

import re
import warnings

import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel.errors import DataError, MultilevelError
from multilevel.missing import MissingDataWarning

FORMULA = "y ~ x + (1 | g)"
SETTINGS = dict(chains=4, warmup=500, draws=500, seed=3, progress=False)
GROUPS, ROWS = 30, 600


@pytest.fixture(scope="module")
def data():
    """x varies strongly by group (so its group predicts a missing value), y ~ x; 35% of
    x and 6% of y missing at random, with some rows missing both."""
    rng = np.random.default_rng(11)
    g = rng.integers(0, GROUPS, ROWS)
    x = rng.normal(0, 1, GROUPS)[g] + rng.normal(0, 0.5, ROWS)
    y = 1.0 + 0.8 * x + rng.normal(0, 0.5, GROUPS)[g] + rng.normal(0, 1, ROWS)
    complete = pd.DataFrame({"y": y, "x": x, "g": [f"g{i:02d}" for i in g]})
    gappy = complete.copy()
    gappy.loc[rng.random(ROWS) < 0.35, "x"] = np.nan
    gappy.loc[rng.random(ROWS) < 0.06, "y"] = np.nan
    return complete, gappy


@pytest.fixture(scope="module")
def fits(data):
    complete, gappy = data
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingDataWarning)
        dropped = ml.Model(FORMULA, gappy, missing="drop")
    modelled = ml.Model(FORMULA, gappy, missing="model")
    return {
        "complete": ml.Model(FORMULA, complete).fit(**SETTINGS),
        "drop": dropped.fit(**SETTINGS),
        "model": modelled.fit(**SETTINGS),
    }


# ----------------------------------------------------------------------------- options
def test_default_refuses_and_names_the_options(data):
    _, gappy = data
    with pytest.raises(DataError) as err:
        ml.Model(FORMULA, gappy)
    message = str(err.value)
    n_x, n_y = int(gappy["x"].isna().sum()), int(gappy["y"].isna().sum())
    assert f"'x' ({n_x} missing)" in message and f"'y' ({n_y} missing)" in message
    assert "missing='drop'" in message and "missing='model'" in message


def test_drop_reports_the_rows_it_removes(data):
    _, gappy = data
    lost = int(gappy[["x", "y"]].isna().any(axis=1).sum())
    with pytest.warns(MissingDataWarning, match=f"Dropped {lost} of {ROWS} rows"):
        model = ml.Model(FORMULA, gappy, missing="drop")
    assert model.missing.dropped == lost and model.design.n == ROWS - lost


def test_unknown_option_is_refused(data):
    with pytest.raises(MultilevelError, match="missing must be one of"):
        ml.Model(FORMULA, data[1], missing="impute")


@pytest.mark.parametrize(
    "formula, match",
    [
        ("y ~ I(x ** 2) + (1 | g)", "enters the design column 'I(x ** 2)'"),
        ("y ~ x * z + (1 | g)", "enters the design column 'x:z'"),
    ],
)
def test_predictor_inside_a_transformation_is_refused(data, formula, match):
    frame = data[1].assign(z=np.arange(ROWS) % 3)
    with pytest.raises(DataError, match=re.escape(match)):
        ml.Model(formula, frame, missing="model")


def test_missing_group_or_category_is_refused(data):
    frame = data[0].copy()
    frame.loc[:4, "g"] = None
    with pytest.raises(DataError, match=r"'g' \(5 missing\).*missing='drop'"):
        ml.Model(FORMULA, frame, missing="model")
    frame = data[0].assign(c=np.where(np.arange(ROWS) % 2, "a", "b"))
    frame.loc[:2, "c"] = None
    with pytest.raises(DataError, match="numeric predictors only"):
        ml.Model("y ~ x + c + (1 | g)", frame, missing="model")


def test_a_predictor_observed_once_cannot_be_modelled(data):
    frame = data[0].copy()
    frame.loc[1:, "x"] = np.nan
    with pytest.raises(DataError, match="fewer than 2 observed values"):
        ml.Model(FORMULA, frame, missing="model")


def test_simulation_needs_known_predictors(data):
    model = ml.Model(FORMULA, data[1], missing="model")
    with pytest.raises(MultilevelError, match="samples the missing values of x"):
        model.simulate(seed=1)


# ----------------------------------------------------------------------------- modelled
def test_modelled_fit_says_what_it_did(fits, data):
    fit, gappy = fits["model"], data[1]
    assert fit.info["method"] == "NUTS"  # imputation needs the joint sampler
    assert fit.info["device"] == "cpu"
    assert f"x ({int(gappy['x'].isna().sum())})" in fit.info["missing"]
    assert "Models of missing predictors" in repr(fit)
    assert fit.diagnostics.max_r_hat < 1.02 and fit.diagnostics.divergences == 0


def test_imputed_predictors_cover_their_true_values(fits, data):
    """90% intervals of the imputed x hold the true x about 90% of the time: with n
    imputed values the count is binomial, so 3 sd of it bounds the rate."""
    complete, gappy = data
    posterior = fits["model"].idata.posterior
    rows = posterior["mi(x)_row"].values
    truth = complete.loc[rows, "x"].to_numpy()
    draws = posterior["mi(x)"].values.reshape(-1, len(rows))
    lo, hi = np.quantile(draws, [0.05, 0.95], axis=0)
    rate = np.mean((truth > lo) & (truth < hi))
    assert abs(rate - 0.9) < 3 * np.sqrt(0.09 / len(rows))
    # and they are informative: the group and y say much about a missing x
    assert np.corrcoef(draws.mean(axis=0), truth)[0, 1] > 0.8


def test_predicted_responses_cover_their_true_values(fits, data):
    complete, gappy = data
    posterior = fits["model"].idata.posterior
    rows = posterior["mi(y)_row"].values
    assert set(rows) == set(gappy.index[gappy["y"].isna()])
    truth = complete.loc[rows, "y"].to_numpy()
    draws = posterior["mi(y)"].values.reshape(-1, len(rows))
    lo, hi = np.quantile(draws, [0.05, 0.95], axis=0)
    rate = np.mean((truth > lo) & (truth < hi))
    assert abs(rate - 0.9) < 3 * np.sqrt(0.09 / len(rows))
    # rows missing x as well are predicted with draws of x: wider intervals
    both = gappy.loc[rows, "x"].isna().to_numpy()
    assert both.any() and (~both).any()
    spread = draws.std(axis=0)
    assert spread[both].mean() > spread[~both].mean()


def test_estimates_agree_with_the_complete_data(fits):
    """The modelled fit uses less data than the complete one, so its means may differ by
    about the extra posterior sd; 2.5 of its sd (not Monte Carlo error alone) bounds it."""
    names = ["Intercept", "x", "sd(Intercept|g)", "sigma"]
    full = fits["complete"].summary().loc[names]
    modelled = fits["model"].summary().loc[names]
    gap = (modelled["mean"] - full["mean"]).abs()
    assert (gap < 2.5 * modelled["sd"]).all(), gap / modelled["sd"]


def test_modelling_is_more_precise_than_dropping(fits):
    """Rows with a missing x still inform sigma and their group's intercept. Posterior
    sds are estimated to about 1/sqrt(2 ESS) (~3% here), far below the gaps asserted."""
    drop, modelled = fits["drop"], fits["model"]
    assert modelled.summary().loc["sigma", "sd"] < 0.93 * drop.summary().loc["sigma", "sd"]
    spread = {
        name: f.idata.posterior["Intercept|g"].std(("chain", "draw")).mean().item()
        for name, f in (("drop", drop), ("model", modelled))
    }
    assert spread["model"] < 0.97 * spread["drop"]


def test_log_likelihood_and_predictions_use_the_imputed_values(fits):
    """Row by row, for a few draws: y ~ Normal(Intercept + x b + u_g, sigma) with x the
    draw's imputed value."""
    from scipy import stats

    fit = fits["model"]
    post = fit.idata.posterior.isel(chain=0, draw=slice(0, 5))
    design = fit.model.design
    rows = post["mi(x)_row"].values[:10]
    positions = np.flatnonzero(np.isin(fit.model.data.index, rows))
    codes = design.blocks[0].codes[positions]
    x = post["mi(x)"].values[:, :10]
    eta = (
        post["Intercept"].values[:, None]
        + post["x"].values[:, None] * x
        + post["Intercept|g"].values[:, codes]
    )
    expected = stats.norm.logpdf(design.y[positions], eta, post["sigma"].values[:, None])
    stored = fit.idata.log_likelihood["y"].isel(chain=0, draw=slice(0, 5)).values
    np.testing.assert_allclose(stored[:, positions], expected, rtol=1e-4, atol=1e-4)
    link = fit.predict(kind="link").draws["y"].isel(chain=0, draw=slice(0, 5)).values
    np.testing.assert_allclose(link[:, positions], eta, rtol=1e-4, atol=1e-4)


def test_saved_fit_keeps_the_imputation(fits, tmp_path):
    fit = fits["model"]
    loaded = ml.load(fit.save(tmp_path / "fit.nc"))
    assert loaded.spec == fit.spec
    assert "mi(x)" in loaded.idata.posterior and "mi(y)" in loaded.idata.posterior
