"""Parameter recovery on the simulated cafe data (true values known), non-centred and
centred parameterisations of correlated varying intercepts and slopes."""

import numpy as np
import pytest

import multilevel as ml
from multilevel.datasets import cafe_truth

FORMULA = "wait ~ afternoon + (1 + afternoon | cafe)"


@pytest.fixture(scope="module")
def fits():
    data = ml.datasets.load("cafe")
    # The joint sampler, in both parameterisations (the default for this gaussian model
    # would integrate the group effects out; tests/models/test_collapsed.py covers that).
    kw = dict(chains=4, warmup=1000, draws=1000, seed=5, progress=False, target_accept=0.9)
    return {
        "noncentred": ml.Model(FORMULA, data).fit(method="nuts", **kw),
        "centred": ml.Model(FORMULA, data, centered=True).fit(method="nuts", **kw),
    }


def test_true_correlation_inside_90_percent_interval(fits):
    fit = fits["noncentred"]
    rho = fit.draws("cor(Intercept,afternoon|cafe)")
    lo, hi = np.quantile(rho, [0.05, 0.95])
    assert lo < -0.7 < hi
    assert np.mean(rho < 0) > 0.9  # the data clearly say "negative"


def test_every_hyperparameter_recovered(fits):
    """Each true value within 3 posterior sds of the posterior mean (a 99.7% band: with
    20 cafes the posterior is wide, but a coding error moves it by far more)."""
    truth = cafe_truth()
    s = fits["noncentred"].summary()
    for name in s.index:
        z = (s.loc[name, "mean"] - truth[name]) / s.loc[name, "sd"]
        assert abs(z) < 3, (name, z)


def test_cafe_effects_cover_their_truth(fits):
    """The 40 true per-cafe deviations fall inside their 90% intervals at about the
    nominal rate: Binomial(40, 0.9) has mean 36 and sd 1.9; 30 is three sds below."""
    truth = cafe_truth()
    post = fits["noncentred"].idata.posterior
    inside = 0
    for name in ["Intercept|cafe", "afternoon|cafe"]:
        lo, hi = (post[name].quantile(q, ("chain", "draw")).to_series() for q in (0.05, 0.95))
        true = truth[name].reindex(lo.index)
        inside += int(((lo < true) & (true < hi)).sum())
    assert inside >= 30, inside


def test_centred_and_noncentred_agree(fits):
    """Same model, two parameterisations: posterior means within 4 combined MCSEs."""
    a, b = fits["noncentred"].summary(), fits["centred"].summary()
    mcse = np.hypot(a["sd"] / np.sqrt(a["ess_bulk"]), b["sd"] / np.sqrt(b["ess_bulk"]))
    assert ((a["mean"] - b["mean"]).abs() < 4 * mcse).all(), (a["mean"] - b["mean"]) / mcse
    assert fits["centred"].spec.centered and "centred" in fits["centred"].spec.describe()
