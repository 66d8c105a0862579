"""Model.draw (prior and fixed-parameter simulation) and Model.with_response."""

import numpy as np
import pytest

import multilevel as ml

FORMULA = "wait ~ afternoon + (1 + afternoon | cafe)"


@pytest.fixture(scope="module")
def cafe():
    data = ml.datasets.load("cafe")
    return data, ml.Model(FORMULA, data)


def test_fixed_parameters_give_the_stated_population(cafe):
    data, model = cafe
    truth = data.attrs["truth"]
    sim = model.draw(4000, seed=2, params={k: truth[k] for k in model.spec.hyper_names})
    assert np.all(sim["Intercept"] == pytest.approx(3.5))
    # 80,000 simulated cafe effects: sds within 2% and the correlation within 0.02 of the
    # truth (Monte Carlo sd of a correlation estimate ~ (1 - rho^2)/sqrt(n) < 0.002).
    a, b = sim["Intercept|cafe"].ravel(), sim["afternoon|cafe"].ravel()
    assert a.std() == pytest.approx(1.0, rel=0.02)
    assert b.std() == pytest.approx(0.5, rel=0.02)
    assert np.corrcoef(a, b)[0, 1] == pytest.approx(-0.7, abs=0.02)


def test_fixed_group_effects_are_used_exactly(cafe):
    data, model = cafe
    truth = data.attrs["truth"]
    levels = model.spec.terms[0].levels
    effects = {k: truth[k].reindex(levels).to_numpy() for k in ["Intercept|cafe", "afternoon|cafe"]}
    params = {**{k: truth[k] for k in model.spec.hyper_names}, **effects}
    sim = model.draw(200, seed=3, params=params)
    np.testing.assert_allclose(sim["afternoon|cafe"][0], effects["afternoon|cafe"], atol=1e-5)
    codes = model.design.blocks[0].codes
    mean = (
        3.5
        + effects["Intercept|cafe"][codes]
        + (-1.0 + effects["afternoon|cafe"][codes]) * data["afternoon"].to_numpy()
    )
    residual = sim["y"] - mean  # (200, 200) draws of N(0, 0.5) noise
    assert residual.std() == pytest.approx(0.5, rel=0.02)
    assert abs(residual.mean()) < 0.01


def test_prior_draws_follow_the_priors(cafe):
    _, model = cafe
    draws = model.draw(20_000, seed=1)
    prior = model.spec.prior_of["sigma"]  # Exponential(rate)
    assert draws["sigma"].mean() == pytest.approx(1 / prior.rate, rel=0.03)
    assert draws["y"].shape == (20_000, len(model.design.y))


def test_missing_values_are_named(cafe):
    _, model = cafe
    with pytest.raises(KeyError, match="sigma"):
        model.draw(1, params={"Intercept": 1.0})


def test_with_response_keeps_priors(cafe):
    data, model = cafe
    new = model.with_response(data["wait"].to_numpy() * 10)
    assert new.spec == model.spec
    np.testing.assert_allclose(new.design.y, data["wait"] * 10)
    np.testing.assert_allclose(model.design.y, data["wait"])
    with pytest.raises(ml.MultilevelError, match="shape"):
        model.with_response(np.zeros(3))
