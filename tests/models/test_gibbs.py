"""The blocked Gibbs sampler (``inference.gibbs``, ``fit(method="gibbs")``) against the
partially collapsed NUTS sampler on crossed (Penicillin) and nested (Pastes) data: the
same posterior within Monte Carlo error."""

import numpy as np
import pandas as pd
import pytest
from posterior_checks import same_posterior

import multilevel as ml
from multilevel.errors import MultilevelError

SETTINGS = dict(chains=4, warmup=500, draws=1000, progress=False, warn=False)


def _pastes():
    frame = ml.datasets.load("Pastes")
    frame["cask"] = frame["batch"].astype(str) + ":" + frame["cask"].astype(str)
    return ml.Model("strength ~ 1 + (1 | batch) + (1 | cask)", frame)


@pytest.fixture(scope="module")
def penicillin():
    """Gibbs (``method="auto"``), and the partially collapsed NUTS as the reference: the
    same model built with ``centered=False`` (the data's choice for its one sampled
    term), which keeps NUTS under ``method="auto"``."""
    formula, data = "diameter ~ 1 + (1 | plate) + (1 | sample)", ml.datasets.load("Penicillin")
    model = ml.Model(formula, data)
    nuts = ml.Model(formula, data, centered=False).fit(seed=2, **SETTINGS)
    return model, model.fit(seed=1, **SETTINGS), nuts


@pytest.fixture(scope="module")
def pastes():
    model = _pastes()
    return model, model.fit(seed=1, **SETTINGS), model.fit(method="collapsed", seed=2, **SETTINGS)


def test_auto_runs_gibbs_on_crossed_intercepts_unless_centring_was_chosen(penicillin):
    _, gibbs, nuts = penicillin
    assert gibbs.info["method"].startswith("blocked Gibbs")
    assert "partially collapsed" in nuts.info["method"]
    assert gibbs.diagnostics.converged and gibbs.diagnostics.min_ess_bulk > 1000


def test_crossed_posterior_matches_partially_collapsed_nuts(penicillin):
    _, gibbs, nuts = penicillin
    names = ["Intercept", "sd(Intercept|plate)", "sd(Intercept|sample)", "sigma"]
    effects = ["Intercept|plate", "Intercept|sample"]  # every level of each
    same_posterior(gibbs, nuts, names + effects)


def test_nested_posterior_matches_partially_collapsed_nuts(pastes):
    """Pastes' casks nest in its batches: one block, and the batches' sd moved with the
    casks' coefficients fixed (without that step its bulk ESS was 206 in 4 x 1000)."""
    _, gibbs, nuts = pastes
    names = ["Intercept", "sd(Intercept|batch)", "sd(Intercept|cask)", "sigma"]
    same_posterior(gibbs, nuts, names)
    assert gibbs.diagnostics.min_ess_bulk > 600


def test_same_seed_same_draws(penicillin):
    model, gibbs, _ = penicillin
    again = model.fit(seed=1, **SETTINGS)
    for name in ("Intercept", "sigma", "sd(Intercept|plate)"):
        np.testing.assert_array_equal(
            gibbs.idata.posterior[name].values, again.idata.posterior[name].values
        )
    other = model.fit(seed=3, **SETTINGS)
    assert not np.array_equal(gibbs.idata.posterior["sigma"], other.idata.posterior["sigma"])


def test_draws_serve_the_fits_methods(penicillin):
    _, gibbs, _ = penicillin
    assert np.isfinite(gibbs.loo().elpd_loo)
    stats = gibbs.idata.sample_stats
    assert not stats["diverging"].values.any()
    assert np.isfinite(stats["lp"].values).all()
    assert float(stats["acceptance_rate"].mean()) > 0.9  # a weak prior: nearly all taken


def test_gibbs_refuses_what_it_cannot_sample_and_says_why():
    rng = np.random.default_rng(0)
    n = 60
    frame = pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": rng.normal(size=n),
            "a": [f"a{i % 6}" for i in range(n)],
            "b": [f"b{i % 5}" for i in range(n)],
        }
    )
    slopes = ml.Model("y ~ x + (1 + x | a) + (1 | b)", frame)
    with pytest.raises(MultilevelError, match=r"1 \+ x \| a.*one covariate"):
        slopes.fit(method="gibbs", **SETTINGS)
    frame["hit"] = (frame["y"] > 0).astype(int)
    binary = ml.Model("hit ~ x + (1 | a) + (1 | b)", frame, family="bernoulli")
    with pytest.raises(MultilevelError, match="bernoulli family"):
        binary.fit(method="gibbs", **SETTINGS)


def test_printed_fit_leaves_out_what_only_nuts_has(penicillin):
    _, gibbs, nuts = penicillin
    gibbs_line = str(gibbs).splitlines()[-1]
    assert gibbs_line.startswith("Diagnostics: max R-hat")
    assert "divergences" not in gibbs_line and "tree depth" not in gibbs_line
    assert "tree depth saturated" in str(nuts)
