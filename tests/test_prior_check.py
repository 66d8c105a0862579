"""Prior predictive checks: summaries, plausible ranges, warnings that name the prior."""

import warnings

import numpy as np
import pandas as pd
import pytest
from scipy.special import expit

import multilevel as ml
from multilevel.prior_check import (
    QUANTILES,
    PriorPredictiveCheck,
    PriorPredictiveWarning,
    default_plausible_range,
)

RADON = "log_radon ~ floor + (1 | county)"


def _quiet(model, **kwargs) -> PriorPredictiveCheck:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PriorPredictiveWarning)
        return model.sample_prior_predictive(**kwargs)


@pytest.fixture(scope="module")
def radon():
    return ml.datasets.load("radon")


@pytest.fixture(scope="module")
def default_check(radon):
    model = ml.Model(RADON, radon)
    with warnings.catch_warnings():
        warnings.simplefilter("error", PriorPredictiveWarning)  # none may be raised
        return model.sample_prior_predictive(seed=1)


@pytest.fixture(scope="module")
def binary():
    """400 simulated 0/1 outcomes, 20 groups, one standardised predictor."""
    rng = np.random.default_rng(3)
    g = rng.integers(0, 20, 400)
    x = rng.normal(size=400)
    u = rng.normal(0, 0.5, 20)
    y = rng.binomial(1, expit(-0.3 + 0.8 * x + u[g]))
    return pd.DataFrame({"y": y, "x": x, "g": [f"g{i}" for i in g]})


def test_default_priors_imply_outcomes_on_the_data_scale(default_check):
    check = default_check
    assert check.warnings == []
    assert check.attribution is None
    assert check.plausible_source == "default"
    # Default priors are scaled to the data: well under 5% outside [min - 2R, max + 2R]
    # (0.3% at seed 1; a 5% bound leaves room for Monte Carlo noise of 500 draws).
    assert check.share_outside < 0.05
    y = check.observed
    width = y.max() - y.min()
    assert check.plausible == pytest.approx((y.min() - 2 * width, y.max() + 2 * width))
    assert "No warnings" in repr(check)


def test_summary_agrees_with_numpy(default_check):
    check = default_check
    sim, obs = check.draws["y"].astype(float), check.observed
    table = check.summary
    labels = [f"q{100 * q:g}%" for q in QUANTILES]
    np.testing.assert_allclose(table.loc[labels, "simulated"], np.quantile(sim.ravel(), QUANTILES))
    np.testing.assert_allclose(table.loc[labels, "observed"], np.quantile(obs, QUANTILES))
    means = sim.mean(axis=1)
    np.testing.assert_allclose(
        table.loc["mean", ["simulated", "5%", "95%"]], np.quantile(means, [0.5, 0.05, 0.95])
    )
    assert table.loc["max", "observed"] == pytest.approx(obs.max())
    assert table.loc["sd", "observed"] == pytest.approx(obs.std())
    assert sim.shape == (500, len(obs))
    assert {"Intercept", "floor", "sigma", "sd(Intercept|county)", "Intercept|county"} <= set(
        check.draws
    )


def test_user_plausible_range_is_used(radon):
    model = ml.Model(RADON, radon)
    check = model.sample_prior_predictive(n=200, seed=2, plausible=(-8, 10))
    assert check.plausible == (-8.0, 10.0)
    assert check.plausible_source == "given"
    y = check.draws["y"]
    assert check.share_outside == pytest.approx(np.mean((y < -8) | (y > 10)))
    assert "[-8, 10]" in repr(check)
    with pytest.raises(ml.MultilevelError, match="lo < hi"):
        model.sample_prior_predictive(n=10, plausible=(3, 1))


def test_same_seed_gives_identical_draws(radon, default_check):
    again = ml.Model(RADON, radon).sample_prior_predictive(seed=1)
    assert again.draws.keys() == default_check.draws.keys()
    for name, values in default_check.draws.items():
        np.testing.assert_array_equal(again.draws[name], values)
    pd.testing.assert_frame_equal(again.summary, default_check.summary)


def test_absurd_intercept_prior_is_named(radon):
    model = ml.Model(RADON, radon, priors={"Intercept": ml.Normal(0, 1000)})
    with pytest.warns(PriorPredictiveWarning, match=r"prior on 'Intercept' \(Normal\(0, 1000\)\)"):
        check = model.sample_prior_predictive(seed=1)
    assert check.share_outside > 0.9
    singles = check.attribution[check.attribution["kind"] == "single"]
    assert singles["share"].idxmin() == "Intercept"
    assert singles.loc["Intercept", "share"] < 0.05
    assert "drives it" in check.warnings[0]
    assert "Warnings:" in repr(check)


def test_absurd_sigma_prior_is_named(radon):
    model = ml.Model(RADON, radon, priors={"sigma": ml.HalfNormal(1000)})
    with pytest.warns(PriorPredictiveWarning, match=r"prior on 'sigma' \(HalfNormal\(1000\)\)"):
        check = model.sample_prior_predictive(seed=1)
    singles = check.attribution[check.attribution["kind"] == "single"]
    assert singles["share"].idxmin() == "sigma"
    # Fixing sigma at its prior median (674) would not help; the moderate value is the
    # median of the default prior, on the data's scale.
    assert singles.loc["sigma", "fixed at"] < 2


def test_two_absurd_priors_are_named_together(radon):
    priors = {"Intercept": ml.Normal(0, 1000), "sigma": ml.HalfNormal(1000)}
    model = ml.Model(RADON, radon, priors=priors)
    check = _quiet(model, n=200, seed=1)
    (message,) = check.warnings
    assert "No single prior explains it" in message
    assert "'Intercept'" in message and "'sigma'" in message
    assert check.attribution.attrs["joint"] == ["Intercept", "sigma"]


def test_bernoulli_extreme_probabilities(binary):
    default = ml.Model("y ~ x + (1 | g)", binary, family="bernoulli")
    check = _quiet(default, n=300, seed=1)
    assert check.warnings == []
    assert check.plausible == (0.01, 0.99)
    model = ml.Model("y ~ x + (1 | g)", binary, family="bernoulli", priors={"b": ml.Normal(0, 50)})
    with pytest.warns(PriorPredictiveWarning, match="extreme probabilities") as record:
        check = model.sample_prior_predictive(n=300, seed=1)
    assert "prior on 'x' (Normal(0, 50), set by class 'b')" in str(record[0].message)
    assert check.share_outside > 0.5
    rates = check.draws["y"].mean(axis=1)
    assert check.share_extreme_rates == pytest.approx(np.mean((rates < 0.01) | (rates > 0.99)))
    assert check.summary.loc["success rate", "observed"] == pytest.approx(binary["y"].mean())


def test_default_ranges_by_family():
    y = np.array([0.0, 3.0, 5.0])
    assert default_plausible_range(y, "gaussian") == (-10.0, 15.0)
    assert default_plausible_range(y, "poisson") == (0.0, 60.0)
    assert default_plausible_range(np.array([0, 1, 1, 0]), "bernoulli") == (0.01, 0.99)
    rare = np.array([1] + [0] * 199)  # success rate 0.005: the range reaches down to 0.0005
    assert default_plausible_range(rare, "bernoulli")[0] == pytest.approx(0.0005)


def _has_observed(fig) -> bool:
    artists = [a for ax in fig.axes for a in (*ax.lines, *ax.patches, *ax.collections)]
    return any(a.get_label() == "observed" for a in artists)


def test_plot_writes_png_and_svg(default_check, binary, tmp_path):
    for suffix in ("png", "svg"):
        path = tmp_path / f"check.{suffix}"
        fig = default_check.plot(path)
        assert path.stat().st_size > 1000
    assert _has_observed(fig)
    left = fig.axes[0]
    assert len(left.lines) == 51  # 50 simulated data sets + the observed density
    model = ml.Model("y ~ x + (1 | g)", binary, family="bernoulli")
    fig = _quiet(model, n=100, seed=1).plot(tmp_path / "binary.png")
    assert _has_observed(fig) and (tmp_path / "binary.png").stat().st_size > 1000


def test_poisson_overflowing_rates_count_as_out_of_range(tmp_path):
    rng = np.random.default_rng(0)
    data = pd.DataFrame({"x": rng.normal(size=100)})
    data["k"] = rng.poisson(np.exp(1 + 0.3 * data["x"]))
    model = ml.Model("k ~ x", data, family="poisson", priors={"Intercept": ml.Normal(0, 100)})
    check = _quiet(model, n=100, seed=1)
    y = check.draws["y"]
    # NumPyro returns 0 for an overflowing rate; such counts are inf here, not "plausible".
    assert np.isinf(y).any()
    assert check.share_outside == pytest.approx(np.mean(~((y >= 0) & (y <= check.plausible[1]))))
    assert "'Intercept'" in check.warnings[0]
    fig = check.plot(tmp_path / "counts.png")
    assert _has_observed(fig)


@pytest.mark.parametrize("family", ["student_t", "negative_binomial", "gamma", "lognormal"])
def test_plot_draws_every_family(family, tmp_path):
    """Continuous outcomes get densities, counts get count bars: the figure used to
    read success rates for every family but gaussian and poisson (KeyError: 'rate')."""
    rng = np.random.default_rng(2)
    x = rng.normal(size=40)
    y = rng.poisson(np.exp(1 + 0.3 * x)) + (0 if family == "negative_binomial" else 1.0)
    data = pd.DataFrame({"y": y, "x": x, "g": np.repeat(np.arange(8), 5)})
    check = ml.Model("y ~ x + (1 | g)", data, family=family).sample_prior_predictive(n=40)
    fig = check.plot(tmp_path / f"{family}.png")
    assert (tmp_path / f"{family}.png").stat().st_size > 0
    title = fig.axes[0].get_title()
    assert ("Counts" in title) == (family == "negative_binomial")
