"""Integrating group effects out (``population_average``), against closed forms and
adaptive quadrature: the expectations of exp and of linear functions of normal variables
are known exactly, the logistic's by ``scipy.integrate.quad``; the trapezoid rule (one
and two predictors) must reproduce them to ~1e-10, the Monte Carlo rule (three or more)
within the error it reports."""

import numpy as np
import pytest
from scipy import integrate as scipy_integrate
from scipy import special

from multilevel.population_average import integrate


def _etas(rng, names, shape=(2, 3, 4)):
    return {name: rng.normal(size=shape) for name in names}


def test_one_predictor_matches_the_lognormal_mean():
    """E[exp(eta + c)], c ~ N(0, s^2): exp(eta + s^2 / 2), to 1e-9 relative for s up
    to 2 (exp's mass sits at z = s, where the grid of spacing 0.5 is coarsest)."""
    rng = np.random.default_rng(1)
    etas = _etas(rng, ["mu"])
    variance = rng.uniform(0.01, 4.0, size=(2, 3, 4))
    value, error = integrate(lambda e: np.exp(e["mu"]), etas, variance[..., None, None], ["mu"])
    np.testing.assert_allclose(value, np.exp(etas["mu"] + variance / 2), rtol=1e-9)
    assert error == 0.0


@pytest.mark.parametrize("sd", [0.3, 1.5, 3.0, 6.0])
def test_the_logistic_average_matches_adaptive_quadrature(sd):
    """The logistic's poles at +-pi i limit any fixed rule; Gauss-Hermite with 32 nodes
    was off by 1e-5 at sd 3 and 8e-4 at sd 5. The trapezoid spacing shrinks with sd:
    within 1e-9 at every sd."""
    etas = {"mu": np.array([[[-2.0, 0.3, 2.5]]])}
    variance = np.full((1, 1, 3, 1, 1), sd**2)
    value, _ = integrate(lambda e: special.expit(e["mu"]), etas, variance, ["mu"])
    for j, eta in enumerate(etas["mu"].ravel()):
        exact, _ = scipy_integrate.quad(
            lambda z, eta=eta: special.expit(eta + sd * z) * np.exp(-z * z / 2),
            -np.inf, np.inf, epsabs=1e-14, limit=200,
        )  # fmt: skip
        assert value[0, 0, j] == pytest.approx(exact / np.sqrt(2 * np.pi), abs=1e-9)


def test_a_linear_function_is_unchanged():
    """The identity link: the average over groups is the typical group's prediction."""
    rng = np.random.default_rng(2)
    etas = _etas(rng, ["mu"])
    variance = rng.uniform(0.1, 9.0, size=(2, 3, 4, 1, 1))
    value, _ = integrate(lambda e: 3.0 * e["mu"] + 1.0, etas, variance, ["mu"])
    np.testing.assert_allclose(value, 3.0 * etas["mu"] + 1.0, rtol=1e-12, atol=1e-12)


def test_two_correlated_predictors_match_the_closed_form():
    """E[exp(c1 + 2 c2)] = exp(var(c1 + 2 c2) / 2), with correlated c (a mean and a
    sigma linked by |p|): the 20 x 20 Gauss-Hermite grid to 1e-6 relative where the sd
    of the exponent reaches 2.5."""
    rng = np.random.default_rng(3)
    etas = _etas(rng, ["mu", "sigma"])
    a = rng.normal(scale=0.6, size=(2, 3, 4, 2, 2))
    covariance = a @ np.swapaxes(a, -1, -2)
    value, error = integrate(
        lambda e: np.exp(e["mu"] + 2 * e["sigma"]), etas, covariance, ["mu", "sigma"]
    )
    weights = np.array([1.0, 2.0])
    variance = np.einsum("i,...ij,j->...", weights, covariance, weights)
    expected = np.exp(etas["mu"] + 2 * etas["sigma"] + variance / 2)
    np.testing.assert_allclose(value, expected, rtol=1e-6)
    assert error == 0.0


def test_three_predictors_use_monte_carlo_within_its_stated_error():
    """Three or more predictors: quasi-random nodes; the reported error is the largest
    Monte Carlo se, and every value is within 5 of them of the closed form."""
    rng = np.random.default_rng(4)
    names = ["muB", "muC", "muD"]
    etas = _etas(rng, names, shape=(1, 2, 3))
    a = rng.normal(scale=0.3, size=(1, 2, 3, 3, 3))
    covariance = a @ np.swapaxes(a, -1, -2)
    value, error = integrate(lambda e: np.exp(e["muB"] - e["muD"]), etas, covariance, names)
    weights = np.array([1.0, 0.0, -1.0])
    variance = np.einsum("i,...ij,j->...", weights, covariance, weights)
    expected = np.exp(etas["muB"] - etas["muD"] + variance / 2)
    assert error > 0
    assert np.abs(value - expected).max() < 5 * error
    assert np.abs(value / expected - 1).max() < 0.02  # 512 quasi-random nodes: ~1%


@pytest.mark.parametrize("sd", [1.0, 4.0])
def test_two_predictors_with_a_logistic_match_quadrature(sd):
    """A softmax of two categories against the reference (a categorical model with three
    categories): independent contributions of sd 1 (Gauss-Hermite grid) and 4 (the
    trapezoid disc), against nested adaptive quadrature, to 1e-7."""
    etas = {"muB": np.array([[[0.4]]]), "muC": np.array([[[-0.7]]])}
    covariance = np.diag([sd**2, (sd / 2) ** 2])[None, None, None]

    def share_b(e):
        b, c = e["muB"], e["muC"]
        return np.exp(b) / (1 + np.exp(b) + np.exp(c))

    value, error = integrate(share_b, etas, covariance, ["muB", "muC"])

    def inner(zc, zb):
        b, c = 0.4 + sd * zb, -0.7 + sd / 2 * zc
        return np.exp(b) / (1 + np.exp(b) + np.exp(c)) * np.exp(-(zb**2 + zc**2) / 2)

    exact, _ = scipy_integrate.dblquad(inner, -12, 12, -12, 12, epsabs=1e-12)
    assert error == 0.0
    assert value[0, 0, 0] == pytest.approx(exact / (2 * np.pi), abs=1e-7)
