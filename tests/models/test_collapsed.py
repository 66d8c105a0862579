"""The collapsed Gaussian sampler: its likelihood against the dense multivariate normal,
its exact draws of group effects against their analytic conditional, and its posterior
against the joint NUTS sampler."""

import dataclasses
from types import SimpleNamespace

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
from posterior_checks import same_posterior
from scipy import stats

import multilevel as ml
from multilevel.backends import gaussian_collapsed as gc


@pytest.fixture(scope="module")
def small():
    """Unbalanced groups (1 to 9 rows), correlated intercept + slope, an extra covariate."""
    rng = np.random.default_rng(3)
    sizes = [1, 2, 5, 9, 3, 7]
    g = np.repeat(np.arange(len(sizes)), sizes)
    n = g.size
    data = pd.DataFrame({
        "y": rng.normal(10, 3, n) + 100, "x": rng.normal(size=n), "z": rng.normal(size=n),
        "g": [f"g{i}" for i in g],
    })  # fmt: skip
    model = ml.Model("y ~ x + z + (1 + x | g)", data)
    return model


def _dense_loglik(model, beta, sigma, scale_tril):
    """log N(y | X beta, sigma^2 I + Z (I_L kron S S') Z') with a dense n x n covariance."""
    d = model.design
    block = d.blocks[0]  # every term shares this grouping factor (same codes)
    z_all = np.concatenate([b.Z for b in d.blocks], axis=1)
    levels, q = len(block.levels), z_all.shape[1]
    z_dense = np.zeros((d.n, levels * q))  # dense on purpose: the reference
    for j in range(q):
        z_dense[np.arange(d.n), block.codes * q + j] = z_all[:, j]
    cov_b = np.kron(np.eye(levels), scale_tril @ scale_tril.T)
    cov = sigma**2 * np.eye(d.n) + z_dense @ cov_b @ z_dense.T
    return stats.multivariate_normal(d.X @ beta, cov).logpdf(d.y)


def _tril(sd, rho):
    corr = np.array([[1.0, rho], [rho, 1.0]])
    return np.diag(sd) @ np.linalg.cholesky(corr)


@pytest.mark.parametrize(
    "beta, sigma, sd, rho",
    [
        ([100.0, 0.5, -1.0], 3.0, [2.0, 1.0], -0.6),
        ([98.0, 0.0, 0.3], 0.7, [5.0, 0.01], 0.9),  # a nearly vanishing slope sd
        ([101.0, 2.0, 0.0], 10.0, [1e-4, 1e-4], 0.0),  # effects all but absent
    ],
)
def test_collapsed_likelihood_equals_dense_to_1e8(small, beta, sigma, sd, rho):
    with jax.enable_x64(True):
        st = gc.as_model_args(gc.sufficient_statistics(small.design), dtype=jnp.float64)
        tril = _tril(np.array(sd), rho)
        ours = float(gc.marginal_log_likelihood(jnp.array(beta), sigma, jnp.array(tril), st))
    reference = _dense_loglik(small, np.array(beta), sigma, tril)
    assert ours == pytest.approx(reference, rel=1e-8, abs=1e-8)


def test_two_terms_of_one_factor_collapse_to_a_block_diagonal_covariance(small):
    """(1 | g) + (0 + x | g): independent terms, one block-diagonal S."""
    model = ml.Model("y ~ x + z + (1 | g) + (0 + x | g)", small.data)
    beta, sigma, tril = np.array([99.0, 0.4, 0.2]), 2.0, np.diag([1.5, 0.7])
    with jax.enable_x64(True):
        st = gc.as_model_args(gc.sufficient_statistics(model.design), dtype=jnp.float64)
        ours = float(gc.marginal_log_likelihood(jnp.array(beta), sigma, jnp.array(tril), st))
    assert ours == pytest.approx(_dense_loglik(model, beta, sigma, tril), rel=1e-8, abs=1e-8)


def test_group_effect_draws_follow_their_conditional(small):
    """Mean and covariance of 40,000 draws against b | y ~ N(C Z'r / sigma^2, C),
    C = (Sigma^-1 + Z'Z / sigma^2)^-1, per group. Tolerances: 5 Monte Carlo sds."""
    beta, sigma, tril = np.array([100.0, 0.5, -1.0]), 3.0, _tril(np.array([2.0, 1.0]), -0.6)
    with jax.enable_x64(True):
        st = gc.as_model_args(gc.sufficient_statistics(small.design), dtype=jnp.float64)
        keys = jax.random.split(jax.random.PRNGKey(0), 40_000)
        draws = jax.vmap(gc.draw_group_effects, in_axes=(0, None, None, None, None))(
            keys, jnp.array(beta), sigma, jnp.array(tril), st
        )
    draws = np.asarray(draws)  # (S, L, q)
    d, block = small.design, small.design.blocks[0]
    r = d.y - d.X @ beta
    sigma_b = tril @ tril.T
    for j in range(len(block.levels)):
        rows = block.codes == j
        zj = block.Z[rows]
        cov = np.linalg.inv(np.linalg.inv(sigma_b) + zj.T @ zj / sigma**2)
        mean = cov @ zj.T @ r[rows] / sigma**2
        sd = np.sqrt(np.diag(cov))
        assert np.all(np.abs(draws[:, j].mean(0) - mean) < 5 * sd / np.sqrt(40_000))
        np.testing.assert_allclose(np.cov(draws[:, j].T), cov, rtol=0.05, atol=0.05 * sd.max() ** 2)


def test_auto_picks_collapsed_only_where_it_applies(small):
    assert gc.plan(small.design, "gaussian") == gc.Plan(collapsed=(0,))
    assert "closed-form" in gc.collapsible(small.design, "poisson")
    pen = ml.Model("diameter ~ 1 + (1 | plate) + (1 | sample)", ml.datasets.load("Penicillin"))
    # 24 plates, 6 samples: the factor with more levels is integrated out; the samples
    # are rich in data (24 rows each, sd 1.9 against sigma 0.55) but few: non-centred
    assert gc.data_rich(pen.design, 1, 0)
    assert gc.plan(pen.design, "gaussian") == gc.Plan(
        (0,), sampled=(1,), centered=(False,), parents=(-1,)
    )
    pastes = ml.Model("strength ~ 1 + (1 | batch/cask)", ml.datasets.load("Pastes")).design
    assert not gc.data_rich(pastes, 0, 1)  # 6 rows per batch, but from only 3 casks
    no_groups = ml.Model("diameter ~ 1", ml.datasets.load("Penicillin"))
    assert "no group terms" in gc.collapsible(no_groups.design, "gaussian")
    with pytest.raises(ml.MultilevelError, match="does not apply"):
        no_groups.fit(method="collapsed")
    with pytest.raises(
        ml.MultilevelError, match="'auto', 'nuts', 'collapsed', 'gibbs' or 'laplace'"
    ):
        small.fit(method="bogus")
    with pytest.raises(ml.MultilevelError, match="not the gaussian family"):
        small.fit(method="laplace")  # approximate integration is for discrete families


@pytest.fixture(scope="module")
def crossed():
    """Crossed factors a (11 levels: padded to 12) and b (4 levels) with a slope on a."""
    rng = np.random.default_rng(5)
    n = 60
    data = pd.DataFrame({
        "y": rng.normal(50, 2, n), "x": rng.normal(size=n),
        "a": [f"a{i}" for i in rng.integers(0, 11, n)], "b": rng.choice(list("pqrs"), n),
    })  # fmt: skip
    return ml.Model("y ~ x + (1 + x | a) + (1 | b)", data)


def test_partially_collapsed_likelihood_equals_dense_to_1e8(crossed):
    """Given b's effects, y ~ N(X beta + Z_b u_b, sigma^2 I + Z_a (I kron S S') Z_a')."""
    d = crossed.design
    chosen = gc.plan(d, "gaussian")
    assert chosen.collapsed == (0,) and chosen.sampled == (1,)
    beta, sigma, tril = np.array([49.0, 0.3]), 1.7, _tril(np.array([1.2, 0.5]), 0.4)
    u_b = np.array([[0.5], [-1.0], [0.2], [0.0]])
    with jax.enable_x64(True):
        st = gc.as_model_args(gc.sufficient_statistics(d, chosen), dtype=jnp.float64)
        assert st["ZtZ"].shape[0] == 12 and st["e"].shape[0] == 64  # padded: 11 -> 12, 60 -> 64
        ours = gc.marginal_log_likelihood(
            jnp.array(beta), sigma, jnp.array(tril), st, (jnp.array(u_b),)
        )
    block_a, block_b = d.blocks
    shifted = dataclasses.replace(
        d, y=d.y - block_b.Z[:, 0] * u_b[block_b.codes, 0], blocks=(block_a,)
    )
    reference = _dense_loglik(SimpleNamespace(design=shifted), beta, sigma, tril)
    assert float(ours) == pytest.approx(reference, rel=1e-8, abs=1e-8)


@pytest.mark.filterwarnings("ignore::multilevel.ConvergenceWarning")
def test_partially_collapsed_and_joint_nuts_agree_on_crossed_penicillin():
    model = ml.Model("diameter ~ 1 + (1 | plate) + (1 | sample)", ml.datasets.load("Penicillin"))
    kw = dict(chains=4, warmup=1000, draws=1000, progress=False, warn=False)
    fast = model.fit(seed=1, method="collapsed", target_accept=0.95, **kw)
    joint = model.fit(seed=2, method="nuts", target_accept=0.95, **kw)
    assert "partially collapsed" in fast.info["method"]
    assert fast.diagnostics.divergences <= 2
    effects = [n for t in model.spec.terms for n in t.effect_names]
    same_posterior(fast, joint, [*model.spec.hyper_names, *effects])


@pytest.mark.parametrize(
    "data, formula",
    [
        ("sleepstudy", "Reaction ~ Days + (Days | Subject)"),
        # 15-20 s: slow; sleepstudy's correlated slopes stay in the default run
        pytest.param("radon", "log_radon ~ floor + (1 + floor | county)", marks=pytest.mark.slow),
    ],
)
def test_collapsed_and_joint_nuts_agree(data, formula):
    model = ml.Model(formula, ml.datasets.load(data))
    kw = dict(chains=4, warmup=1000, draws=1000, progress=False, warn=False)
    fast = model.fit(seed=1, **kw)
    joint = model.fit(seed=2, method="nuts", target_accept=0.95, **kw)
    assert fast.info["method"].startswith("NUTS, group effects integrated out")
    assert joint.info["method"] == "NUTS"
    assert fast.diagnostics.divergences == 0
    effects = [n for t in model.spec.terms for n in t.effect_names]
    same_posterior(fast, joint, [*model.spec.hyper_names, *effects])
