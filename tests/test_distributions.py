"""The count distributions of ``multilevel.distributions`` that stand in for NumPyro's
(smaller compiled programs, the same law): densities, gradients and draws.

* Log pmfs against ``scipy.stats`` in float64, to 1e-6 relative (and NumPyro's own, which
  computes the same expression, to 1e-12), over counts from 0 to 2,000 and shapes from
  0.27 (rstanarm's roaches) to 1e4 (nearly Poisson).
* Gradients against NumPyro's, which differentiates ``betaln`` itself, to 1e-6 relative
  in float64; ``digamma_difference`` against exact sums (``psi(x) - psi(x + n) =
  -sum_{k<n} 1 / (x + k)``) to 1e-9 relative.
* Draws: 200,000 per case, mean and variance against the exact ones within 5 Monte Carlo
  standard errors (estimated from the draws), the share of zeros within 5 binomial
  standard errors: a correct sampler fails a check with probability below 6e-7. The
  gamma draws also pass a Kolmogorov-Smirnov bound (D < 1.95 / sqrt(n), the 0.1% level).
"""

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from scipy import special, stats

from multilevel import distributions as extra
from multilevel.distributions import log_prob_kernel

N_DRAWS = 200_000
# (mean, shape): roaches' heavy tail and zeros; small counts; a near-Poisson shape
NB_CASES = [(25.0, 0.27), (0.6, 1.5), (4.0, 8.0), (30.0, 1e4)]


def _within(draws, mean, variance, z=5.0):
    """Mean and variance of ``draws`` (n, k) within ``z`` Monte Carlo ses of the exact."""
    n = draws.shape[0]
    centred = draws - draws.mean(axis=0)
    mean_se = draws.std(axis=0) / np.sqrt(n)
    var_se = (centred**2).std(axis=0) / np.sqrt(n)
    np.testing.assert_array_less(np.abs(draws.mean(axis=0) - mean), z * mean_se)
    np.testing.assert_array_less(np.abs(draws.var(axis=0) - variance), z * var_se)


def _counts():
    return np.array([0.0, 1.0, 2.0, 5.0, 17.0, 60.0, 400.0, 2000.0])


# --------------------------------------------------------------------------- log_beta


def test_digamma_difference_matches_exact_sums():
    with jax.enable_x64(True):
        for x in [0.3, 2.0, 9.99, 10.0, 37.5, 1e3, 1e6]:
            for n in [1, 3, 25, 400]:
                exact = -np.sum(1.0 / (x + np.arange(n)))
                got = float(extra.digamma_difference(jnp.float64(x), jnp.float64(n)))
                assert got == pytest.approx(exact, rel=1e-9), (x, n)
        # non-integer gaps where scipy's two digammas do not cancel badly
        x, a = np.array([0.27, 3.0, 12.0, 50.0]), np.array([0.5, 7.3, 0.01, 2.5])
        got = np.asarray(extra.digamma_difference(jnp.asarray(x), jnp.asarray(a)))
        np.testing.assert_allclose(got, special.digamma(x) - special.digamma(x + a), rtol=1e-8)


def test_log_beta_value_and_gradient():
    a = np.array([0.27, 1.0, 3.5, 0.01, 12.0, 1e4, 2.0])
    b = np.array([1.0, 401.0, 2.5, 5.0, 1e6, 31.0, 9.5])
    with jax.enable_x64(True):
        value = np.asarray(extra.log_beta(jnp.asarray(a), jnp.asarray(b)))
        betaln = np.asarray(jax.scipy.special.betaln(jnp.asarray(a), jnp.asarray(b)))
        np.testing.assert_array_equal(value, betaln)  # JAX's value, to the bit
        # which is scipy's to 2e-7 (JAX's series for b >= 8 stops early: 1.6e-7 at b = 9.5)
        np.testing.assert_allclose(value, special.betaln(a, b), rtol=1e-6)
        grad = jax.grad(lambda a, b: extra.log_beta(a, b).sum(), argnums=(0, 1))
        da, db = (np.asarray(g) for g in grad(jnp.asarray(a), jnp.asarray(b)))
        # scipy's two digammas cancel to at most 1e-9 of these differences in float64;
        # JAX's gradient of betaln is off by 1.3e-6 at (2, 9.5), where its series begins
        psi_ab = special.digamma(a + b)
        np.testing.assert_allclose(da, special.digamma(a) - psi_ab, rtol=1e-8)
        np.testing.assert_allclose(db, special.digamma(b) - psi_ab, rtol=1e-8)


# --------------------------------------------------------------------------- negative binomial


@pytest.mark.parametrize("mean, shape", NB_CASES)
def test_negative_binomial_log_pmf(mean, shape):
    y = _counts()
    reference = stats.nbinom(shape, shape / (shape + mean)).logpmf(y)
    with jax.enable_x64(True):
        law = extra.NegativeBinomial(jnp.full(y.shape, mean), jnp.float64(shape))
        got = np.asarray(law.log_prob(jnp.asarray(y)))
        numpyro = np.asarray(dist.NegativeBinomial2(mean, shape).log_prob(jnp.asarray(y)))
        zero = float(law.log_prob_zero()[0])
    np.testing.assert_allclose(got, reference, rtol=1e-6)
    np.testing.assert_allclose(got, numpyro, rtol=1e-12)
    assert zero == pytest.approx(reference[0], rel=1e-12)


def test_negative_binomial_gradient_matches_numpyro():
    y = jnp.asarray(_counts())
    with jax.enable_x64(True):
        for mean, shape in NB_CASES:

            def total(law):
                return lambda m, s: law(jnp.exp(m), jnp.exp(s)).log_prob(y).sum()

            args = (jnp.full(y.shape, np.log(mean)), jnp.float64(np.log(shape)))
            ours = jax.grad(total(extra.NegativeBinomial), argnums=(0, 1))(*args)
            theirs = jax.grad(total(dist.NegativeBinomial2), argnums=(0, 1))(*args)
            for g, h in zip(ours, theirs):
                np.testing.assert_allclose(np.asarray(g), np.asarray(h), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("mean, shape", NB_CASES)
def test_negative_binomial_draws(mean, shape):
    law = extra.NegativeBinomial(jnp.full(2, mean), shape)
    draws = np.asarray(law.sample(jax.random.PRNGKey(1), (N_DRAWS,)), dtype=float)
    assert draws.shape == (N_DRAWS, 2) and (draws >= 0).all()
    assert np.array_equal(draws, np.round(draws))
    _within(draws, mean, mean + mean**2 / shape)
    p_zero = (shape / (shape + mean)) ** shape
    zero_se = np.sqrt(p_zero * (1 - p_zero) / N_DRAWS)
    assert abs((draws == 0).mean() - p_zero) < 5 * zero_se


# --------------------------------------------------------------------------- gamma


@pytest.mark.parametrize("alpha", [0.05, 0.27, 1.0, 3.7, 250.0])
def test_standard_gamma_draws(alpha):
    draws = np.asarray(extra.standard_gamma(jax.random.PRNGKey(2), alpha, (N_DRAWS, 1)))
    assert (draws >= 0).all()
    _within(draws, alpha, alpha)
    # float32 holds no value below its smallest normal number (1.2e-38), where Gamma(0.05)
    # keeps 1.3% of its mass (x^alpha / Gamma(1 + alpha)): such draws are 0 (as JAX's
    # own gamma draws), so the share below it is checked, the rest against the cdf there
    law, tiny = stats.gamma(alpha), np.finfo(np.float32).tiny
    below, p_below = (draws[:, 0] < tiny).mean(), law.cdf(tiny)
    assert abs(below - p_below) <= 5 * np.sqrt(p_below * (1 - p_below) / N_DRAWS)
    kept = draws[:, 0][draws[:, 0] >= tiny]
    statistic = stats.kstest(kept, lambda x: (law.cdf(x) - p_below) / (1 - p_below)).statistic
    assert statistic < 1.95 / np.sqrt(kept.size)


def test_standard_gamma_takes_one_concentration_per_element():
    alpha = jnp.array([0.5, 2.0, 40.0])
    draws = np.asarray(extra.standard_gamma(jax.random.PRNGKey(3), alpha, (N_DRAWS, 3)))
    _within(draws, np.asarray(alpha), np.asarray(alpha))


# --------------------------------------------------------------------------- beta-binomial


def test_beta_binomial_log_pmf_and_gradient():
    n = np.array([1, 12, 12, 40, 40, 300])
    k = np.array([0, 0, 7, 40, 13, 150], dtype=float)
    a = np.array([0.3, 2.0, 15.0, 0.8, 1e3, 4.0])
    b = np.array([0.7, 5.0, 0.2, 3.0, 2e3, 1e4])
    reference = stats.betabinom(n, a, b).logpmf(k)
    with jax.enable_x64(True):

        def total(law):
            return lambda a, b: law(a, b, total_count=jnp.asarray(n)).log_prob(jnp.asarray(k))

        args = (jnp.asarray(a), jnp.asarray(b))
        got = np.asarray(total(extra.BetaBinomial)(*args))
        numpyro = np.asarray(total(dist.BetaBinomial)(*args))
        ours = jax.grad(lambda *x: total(extra.BetaBinomial)(*x).sum(), argnums=(0, 1))(*args)
        theirs = jax.grad(lambda *x: total(dist.BetaBinomial)(*x).sum(), argnums=(0, 1))(*args)
    np.testing.assert_allclose(got, reference, rtol=1e-6)
    np.testing.assert_allclose(got, numpyro, rtol=1e-12)
    for g, h in zip(ours, theirs):
        np.testing.assert_allclose(np.asarray(g), np.asarray(h), rtol=1e-6, atol=1e-12)


# --------------------------------------------------------------------------- hurdles


GATE, HURDLE_MEAN, HURDLE_SHAPE = 0.3, 2.5, 0.8
# (ours, NumPyro's) built from (mean, shape, gate), and the base's scipy law
HURDLES = {
    "poisson": (
        lambda m, s, g: extra.HurdleCounts(extra.Poisson(m), g),
        lambda m, s, g: dist.HurdlePoisson(g, m),
        stats.poisson(HURDLE_MEAN),
    ),
    "negative_binomial": (
        lambda m, s, g: extra.HurdleCounts(extra.NegativeBinomial(m, s), g),
        lambda m, s, g: dist.HurdleNegativeBinomial2(g, m, s),
        stats.nbinom(HURDLE_SHAPE, HURDLE_SHAPE / (HURDLE_SHAPE + HURDLE_MEAN)),
    ),
}


@pytest.mark.parametrize("base", HURDLES)
def test_hurdle_log_pmf_and_gradient(base):
    """Against the written-out pmf (scipy's base) and NumPyro's hurdle; gradients (through
    the closed-form log P(0)) against NumPyro's, which differentiates its log pmf at 0."""
    ours, theirs, law = HURDLES[base]
    y = _counts()[:6]
    reference = np.where(y == 0, np.log(GATE), np.log1p(-GATE) + law.logpmf(y) - np.log(law.sf(0)))
    with jax.enable_x64(True):

        def total(build):  # log pmf of each count, from log mean, log shape and gate
            return jax.jit(lambda m, s, g: build(jnp.exp(m), jnp.exp(s), g).log_prob(y))

        args = (jnp.full(y.shape, np.log(HURDLE_MEAN)), jnp.log(HURDLE_SHAPE), jnp.float64(GATE))
        got, numpyro = np.asarray(total(ours)(*args)), np.asarray(total(theirs)(*args))
        gradients = [
            jax.grad(lambda *a, f=f: f(*a).sum(), argnums=(0, 1, 2))(*args)
            for f in (total(ours), total(theirs))
        ]
    np.testing.assert_allclose(got, reference, rtol=1e-6)
    np.testing.assert_allclose(got, numpyro, rtol=1e-10)
    for g, h in zip(*gradients):
        np.testing.assert_allclose(np.asarray(g), np.asarray(h), rtol=1e-6, atol=1e-12)


@pytest.mark.parametrize("base", HURDLES)
def test_hurdle_draws(base):
    ours, _, law = HURDLES[base]
    hurdle = ours(jnp.full(2, HURDLE_MEAN), HURDLE_SHAPE, GATE)
    draws = jax.jit(lambda key: hurdle.sample(key, (N_DRAWS,)))(jax.random.PRNGKey(4))
    draws = np.asarray(draws, dtype=float)
    positive = law.sf(0)
    mean = (1 - GATE) * law.mean() / positive
    second = (1 - GATE) * (law.var() + law.mean() ** 2) / positive
    _within(draws, mean, second - mean**2)
    zero_se = np.sqrt(GATE * (1 - GATE) / N_DRAWS)
    assert abs((draws == 0).mean() - GATE) < 5 * zero_se
    assert float(hurdle.mean[0]) == pytest.approx(mean, rel=1e-5)


@pytest.mark.parametrize(
    "make",
    [
        lambda eta, n: dist.Poisson(jnp.exp(eta)),
        lambda eta, n: dist.BinomialLogits(eta, total_count=n),
        lambda eta, n: dist.BinomialProbs(jax.nn.sigmoid(eta), total_count=n),
    ],
    ids=["poisson", "binomial_logits", "binomial_probs"],
)
def test_log_prob_kernel_differs_from_log_prob_by_the_data_alone(make):
    """log_prob - kernel is the same at two parameter values (only data terms are
    dropped); float64, so the differences agree to rounding."""
    rng = np.random.default_rng(3)
    n = rng.integers(1, 30, 50).astype(float)
    y = np.floor(rng.random(50) * (n + 1))
    with jax.enable_x64(True):
        eta_a, eta_b = jnp.asarray(rng.normal(0, 1, 50)), jnp.asarray(rng.normal(1, 2, 50))
        gap_a = make(eta_a, n).log_prob(y) - log_prob_kernel(make(eta_a, n), y)
        gap_b = make(eta_b, n).log_prob(y) - log_prob_kernel(make(eta_b, n), y)
        np.testing.assert_allclose(gap_a, gap_b, rtol=1e-10, atol=1e-10)
        assert np.ptp(np.asarray(gap_a)) > 0  # something data-dependent was dropped


def test_log_prob_kernel_of_other_laws_is_their_log_prob():
    law = dist.Normal(0.3, 2.0)
    np.testing.assert_array_equal(log_prob_kernel(law, 1.5), law.log_prob(1.5))
