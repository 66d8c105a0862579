"""The preconditioned start of NUTS: a point moved towards the mode and a starting
inverse mass matrix from the curvature there."""

import jax
import jax.numpy as jnp
import numpy as np

from multilevel.inference import precondition

# Posterior sds from 1e-3 to 10: the spread of scales (log sigma at 73k rows beside a
# lecturer's effect) that makes an identity mass matrix crawl.
SCALES = {"a": np.array([1e-3, 0.05]), "b": np.array([[0.3], [2.0], [10.0]])}
MODE = {"a": np.array([0.4, -0.2]), "b": np.array([[1.0], [-0.5], [0.1]])}


def _gaussian(z):
    return sum(jnp.sum(0.5 * ((z[k] - MODE[k]) / SCALES[k]) ** 2) for k in z)


def _start(potential, z, search=True, dense=()):
    """In float64, as the collapsed sampler runs it."""
    with jax.enable_x64(True):
        point, inverse, block = jax.jit(precondition.start, static_argnums=(0, 3, 4))(
            potential, z, jax.random.key(3), search, dense
        )
        if dense:
            return jax.tree.map(np.asarray, point), jax.tree.map(np.asarray, inverse), block
        assert block is None
        return jax.tree.map(np.asarray, point), jax.tree.map(np.asarray, inverse)


def test_inverse_mass_is_the_variance_of_a_gaussian():
    """A Gaussian's Hessian is diagonal and constant: Hutchinson's estimate (central
    differences of the gradient) is exact up to rounding whatever point the search ends
    at, and clipped only outside its bounds."""
    z0 = {"a": np.array([1.5, 1.0]), "b": np.full((3, 1), -1.0)}
    _, inverse = _start(_gaussian, z0)
    low, high = precondition.INVERSE_MASS_BOUNDS
    for k in SCALES:
        expected = np.clip(np.asarray(SCALES[k]) ** 2, low, high)
        np.testing.assert_allclose(inverse[k], expected, rtol=1e-6)


def test_the_start_moves_towards_the_mode():
    z0 = {"a": np.array([1.5, 1.0]), "b": np.full((3, 1), -1.0)}
    point, _ = _start(_gaussian, z0)
    before, after = float(_gaussian(z0)), float(_gaussian(point))
    assert after < 1e-3 * before, (before, after)


def test_without_search_the_curvature_is_probed_at_the_start():
    """The joint sampler's chains start near the typical set: the point is kept and the
    inverse mass is the (constant) Gaussian variance, probed there."""
    z0 = {"a": np.array([1.5, 1.0]), "b": np.full((3, 1), -1.0)}
    point, inverse = _start(_gaussian, z0, search=False)
    for k in z0:
        np.testing.assert_array_equal(point[k], z0[k])
    low, high = precondition.INVERSE_MASS_BOUNDS
    for k in SCALES:
        expected = np.clip(np.asarray(SCALES[k]) ** 2, low, high)
        np.testing.assert_allclose(inverse[k], expected, rtol=1e-6)


def test_a_potential_that_is_nowhere_finite_keeps_the_start_and_the_identity():
    z0 = {"a": np.array([0.3, 0.2])}
    point, inverse = _start(lambda z: jnp.sum(z["a"]) + jnp.inf, z0)
    np.testing.assert_array_equal(point["a"], z0["a"])
    np.testing.assert_array_equal(inverse["a"], np.ones(2))


def test_mass_blocks_follow_numpyros_layout():
    inverse = {"b": jnp.array([1.0, 2.0]), "s": jnp.array([3.0]), "t": jnp.array([[4.0], [5.0]])}
    blocks = precondition.mass_blocks(inverse, [("b",)])
    np.testing.assert_array_equal(blocks[("b",)], np.diag([1.0, 2.0]))
    np.testing.assert_array_equal(blocks[("s", "t")], [3.0, 4.0, 5.0])


# An intercept and the slope of a predictor far from zero: correlation -0.995
COVARIANCE = np.array([[1.0, -0.0995], [-0.0995, 0.01]])


def _correlated(z):
    d = z["b"] - np.array([0.2, 0.1])
    return 0.5 * d @ jnp.linalg.solve(COVARIANCE, d) + jnp.sum(0.5 * z["r"] ** 2)


def test_the_dense_block_starts_from_its_inverse_hessian():
    """A Gaussian's Hessian is constant: the dense block's inverse mass is its covariance
    (up to rounding), where a diagonal would keep only the conditional variances (1 %
    of the marginal ones here); the other sites keep their diagonal."""
    z0 = {"b": np.array([1.0, -1.0]), "r": np.zeros((3, 1))}
    _, inverse, block = _start(_correlated, z0, search=False, dense=("b",))
    np.testing.assert_allclose(np.asarray(block), COVARIANCE, rtol=1e-5, atol=1e-9)
    np.testing.assert_allclose(inverse["r"], np.ones((3, 1)), rtol=1e-6)
    blocks = precondition.mass_blocks(
        {k: jnp.asarray(v) for k, v in inverse.items()}, [("b",)], block
    )
    np.testing.assert_allclose(np.asarray(blocks[("b",)]), COVARIANCE, rtol=1e-5, atol=1e-9)


def test_a_dense_block_keeps_its_eigenvalues_bounded():
    """A concave direction gets the identity's 1, as the diagonal does; a nowhere finite
    potential falls back to the diagonal estimate (the identity there)."""
    z0 = {"b": np.array([0.3, -0.2])}
    saddle = lambda z: 0.5 * (4.0 * z["b"][0] ** 2 - z["b"][1] ** 2)  # noqa: E731
    _, _, block = _start(saddle, z0, search=False, dense=("b",))
    np.testing.assert_allclose(np.asarray(block), np.diag([0.25, 1.0]), atol=1e-6)
    _, _, block = _start(lambda z: jnp.sum(z["b"]) + jnp.inf, z0, search=False, dense=("b",))
    np.testing.assert_array_equal(np.asarray(block), np.eye(2))


def test_a_second_dense_block_starts_diagonal():
    """The joint sampler's second block (sds and correlations,
    ``Structure.joint_dense_blocks``) starts from its diagonal; ``start``'s matrix goes
    to the first block only."""
    inverse = {"b": jnp.array([1.0, 2.0]), "sd": jnp.array([3.0]), "L": jnp.array([4.0])}
    first = jnp.array([[1.0, 0.5], [0.5, 2.0]])
    blocks = precondition.mass_blocks(inverse, [("b",), ("sd", "L")], first)
    np.testing.assert_array_equal(blocks[("b",)], first)
    np.testing.assert_array_equal(blocks[("sd", "L")], np.diag([3.0, 4.0]))
    assert set(blocks) == {("b",), ("sd", "L")}


def test_the_joint_sampler_puts_a_correlated_terms_scales_in_a_block_of_their_own():
    import pandas as pd

    import multilevel as ml

    rng = np.random.default_rng(0)
    data = pd.DataFrame(
        {"y": rng.integers(0, 2, 200), "x": rng.standard_normal(200), "g": rng.integers(0, 20, 200)}
    )
    correlated = ml.Model("y ~ x + (1 + x | g)", data, family="bernoulli").structure
    assert correlated.joint_dense_blocks == (correlated.dense_sites, ("sd_exponential", "L_0"))
    plain = ml.Model("y ~ x + (1 + x || g)", data, family="bernoulli").structure
    assert plain.joint_dense_blocks == (plain.dense_sites,)
