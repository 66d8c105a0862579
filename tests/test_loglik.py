"""The pointwise log-likelihood (multilevel.loglik): stored by small fits and saved fits,
equal to the family's own density written out by hand, computed on demand past the
threshold."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats

import multilevel as ml
from conftest import KW, PARTIAL
from multilevel import loglik


# --------------------------------------------------------------------------- log-likelihood
def test_log_likelihood_is_stored_and_matches_scipy(partial, radon):
    ll = partial.idata.log_likelihood["log_radon"]
    assert ll.dims == ("chain", "draw", "obs") and ll.shape == (4, 300, 919)
    assert ll.dtype == np.float64
    assert partial.info["log_likelihood"] == "stored"
    post = partial.idata.posterior
    county = pd.Index(post["county"].values).get_indexer(radon["county"])
    for c, d in [(0, 0), (2, 150), (3, 299)]:
        mu = (
            float(post["Intercept"][c, d])
            + float(post["floor"][c, d]) * radon["floor"].to_numpy()
            + post["Intercept|county"].values[c, d][county]
        )
        ref = stats.norm.logpdf(radon["log_radon"], mu, float(post["sigma"][c, d]))
        np.testing.assert_allclose(ll.values[c, d], ref, rtol=1e-10)
    # workflow.pooling uses the same function, now from evaluation
    np.testing.assert_array_equal(loglik.pointwise_log_likelihood(partial), ll.values)


def test_auto_threshold_and_override(partial, radon, monkeypatch, tmp_path):
    """Over the threshold nothing is stored (and info says so); loo computes it on
    demand, to the same numbers. log_likelihood=True/False override the threshold."""
    monkeypatch.setattr(loglik, "MAX_STORED_VALUES", 1000)
    model = ml.Model(PARTIAL, radon)
    skipped = model.fit(**KW)  # same seed: the same draws as `partial`
    assert "log_likelihood" not in skipped.idata.groups()
    assert skipped.info["log_likelihood"].startswith("not stored")
    assert "fit.loo()" in skipped.info["log_likelihood"]
    assert skipped.loo().elpd == pytest.approx(partial.loo().elpd, rel=1e-12)
    assert "log_likelihood" in model.fit(**KW, log_likelihood=True).idata.groups()
    monkeypatch.setattr(loglik, "MAX_STORED_VALUES", 2e8)
    off = model.fit(**KW, log_likelihood=False)
    assert "log_likelihood" not in off.idata.groups()
    assert "log_likelihood=False" in off.info["log_likelihood"]
    # saving writes what was not stored (a saved fit keeps no data), not what was refused
    skipped.save(tmp_path / "skipped.nc")
    off.save(tmp_path / "off.nc")
    assert "log_likelihood" not in skipped.idata.groups()  # the fit itself is unchanged
    loaded = ml.load(tmp_path / "skipped.nc")
    np.testing.assert_array_equal(
        loaded.idata.log_likelihood["log_radon"].values,
        partial.idata.log_likelihood["log_radon"].values,
    )
    assert loaded.info["log_likelihood"] == loglik.ADDED_WHEN_SAVED
    assert "log_likelihood" not in ml.load(tmp_path / "off.nc").idata.groups()
    monkeypatch.setattr(loglik, "MAX_SAVED_VALUES", 1000)  # too large to save: left out
    skipped.save(tmp_path / "large.nc")
    assert "log_likelihood" not in ml.load(tmp_path / "large.nc").idata.groups()


def test_log_densities_of_other_families_match_scipy():
    rng = np.random.default_rng(0)
    eta = rng.normal(0, 1.5, size=40)
    y01 = rng.integers(0, 2, size=40).astype(float)
    np.testing.assert_allclose(
        loglik.log_density("bernoulli", "logit", y01, eta, {}),
        stats.bernoulli.logpmf(y01, 1 / (1 + np.exp(-eta))),
    )
    np.testing.assert_allclose(
        loglik.log_density("bernoulli", "probit", y01, eta, {}),
        stats.bernoulli.logpmf(y01, stats.norm.cdf(eta)),
    )
    trials = rng.integers(1, 20, size=40).astype(float)
    k = np.floor(trials * rng.uniform(size=40))
    np.testing.assert_allclose(
        loglik.log_density("binomial", "logit", k, eta, {}, trials),
        stats.binom.logpmf(k, trials, 1 / (1 + np.exp(-eta))),
    )
    counts = rng.poisson(3, size=40).astype(float)
    np.testing.assert_allclose(
        loglik.log_density("poisson", "log", counts, eta, {}),
        stats.poisson.logpmf(counts, np.exp(eta)),
    )
