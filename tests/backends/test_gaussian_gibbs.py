"""The Gibbs sampler's conditionals (backends.gaussian_gibbs) against dense algebra."""

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel.backends import gaussian_gibbs as gg
from multilevel.backends.numpyro_model import structure_of

NESTED = "y ~ x + (1 | parent) + (1 | child) + (1 | other)"
SLOPES = "y ~ x + (0 + x | parent) + (0 + x | child) + (1 | other)"  # a chain of slopes


def _nested_crossed(seed=0, formula=NESTED):
    """30 rows: 3 parents of 2 children each (nested), a crossed factor of 4 levels, x."""
    rng = np.random.default_rng(seed)
    n = 30
    child = rng.integers(0, 6, n)
    child[:6] = np.arange(6)  # every child level has rows
    frame = pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "x": rng.normal(size=n),
            "parent": [f"p{c // 2}" for c in child],
            "child": [f"p{c // 2}:c{c}" for c in child],
            "other": [f"o{i % 4}" for i in range(n)],
        }
    )
    return ml.Model(formula, frame)


@pytest.fixture(scope="module")
def nested():
    model = _nested_crossed()
    chosen = gg.layout(model.design, model.structure)
    with jax.enable_x64(True):
        data = jax.tree.map(jnp.asarray, gg.data_arrays(model.design, chosen))
    return model, chosen, data


def _term(model, group):
    return [b.group for b in model.design.blocks].index(group)


def test_layout_chains_a_nesting_and_leaves_a_crossed_factor_alone(nested):
    model, chosen, _ = nested
    parent, child, other = (_term(model, g) for g in ("parent", "child", "other"))
    assert sorted(chosen.chains) == sorted([(parent, child), (other,)])
    assert chosen.parents[child] == parent and chosen.parents[parent] == -1


def test_siblings_nested_in_one_parent_get_blocks_of_their_own():
    rng = np.random.default_rng(1)
    n = 48
    frame = pd.DataFrame(
        {
            "y": rng.normal(size=n),
            "dept": [f"d{i % 3}" for i in range(n)],
            "lecturer": [f"d{i % 3}:l{i % 6}" for i in range(n)],
            "course": [f"d{i % 3}:c{i % 12}" for i in range(n)],
        }
    )
    model = ml.Model("y ~ 1 + (1 | dept) + (1 | lecturer) + (1 | course)", frame)
    chosen = gg.layout(model.design, model.structure)
    # the course nests in both; one child per parent: dept > lecturer > course is a chain
    # (courses nest in lecturers too), or a sibling starts a block of its own
    for chain in chosen.chains:
        for upper, lower in zip(chain, chain[1:]):
            assert chosen.parents[lower] == upper
    assert sorted(k for chain in chosen.chains for k in chain) == [0, 1, 2]
    assert sum(a >= 0 for a in chosen.parents) == len(chosen.parents) - len(chosen.chains)


def _dense_conditional(model, chosen, data, chain, effects, sigma, sd):
    """Mean and covariance of (beta, the chain's effects) given the rest, with a flat
    prior on beta: the Gaussian of the dense design."""
    design = model.design
    n = design.n
    columns = [design.X]
    prior = [np.zeros(design.X.shape[1])]
    r = design.y.astype(float).copy()
    for k, block in enumerate(design.blocks):
        size = data["zz"][k].shape[0]
        Z = np.zeros((n, size))
        Z[np.arange(n), block.codes] = block.Z[:, 0]
        if k in chain:
            columns.append(Z)
            prior.append(np.full(size, 1.0 / sd[chosen.sd_index[k]] ** 2))
        else:
            r -= Z @ np.asarray(effects[k])
    A = np.concatenate([columns[0], *[columns[1 + chain.index(k)] for k in chain]], axis=1)
    precision = A.T @ A / sigma**2 + np.diag(np.concatenate(prior))
    cov = np.linalg.inv(precision)
    return cov @ A.T @ r / sigma**2, cov


@pytest.mark.parametrize("formula", [NESTED, SLOPES])
def test_block_draws_have_the_dense_conditionals_mean_and_covariance(formula):
    """20,000 draws of (beta, parent, child) given the crossed factor's effects: each
    coordinate's mean within 5 Monte Carlo standard errors of the dense Gaussian's, and
    the covariance within 0.05 of its scale (the standard error of a sample covariance
    of 20,000 draws is under 0.01 of it). Intercepts, and slopes (z = x, not 1)."""
    model = _nested_crossed(formula=formula)
    chosen = gg.layout(model.design, model.structure)
    with jax.enable_x64(True):
        data = jax.tree.map(jnp.asarray, gg.data_arrays(model.design, chosen))
    parent, child, other = (_term(model, g) for g in ("parent", "child", "other"))
    chain = (parent, child)
    assert chain in chosen.chains
    with jax.enable_x64(True):
        rng = np.random.default_rng(2)
        effects = tuple(jnp.asarray(rng.normal(size=z.shape[0]) * 0.5) for z in data["zz"])
        sigma, sd = 0.7, jnp.asarray([0.9, 0.6, 0.4])
        beta = jnp.zeros(model.design.X.shape[1])

        def one(key):
            b, e = gg.draw_block(key, chain, chosen, beta, effects, sigma, sd, data)
            return jnp.concatenate([b, e[parent], e[child]])

        draws = np.asarray(jax.jit(jax.vmap(one))(jax.random.split(jax.random.PRNGKey(0), 20_000)))
    mean, cov = _dense_conditional(model, chosen, data, chain, effects, sigma, np.asarray(sd))
    sizes = [model.design.X.shape[1], data["zz"][parent].shape[0], data["zz"][child].shape[0]]
    assert draws.shape[1] == sum(sizes)
    mcse = np.sqrt(np.diag(cov) / len(draws))
    assert np.all(np.abs(draws.mean(0) - mean) < 5 * mcse)
    scale = np.sqrt(np.outer(np.diag(cov), np.diag(cov)))
    assert np.max(np.abs(np.cov(draws.T) - cov) / scale) < 0.05


def test_scale_moments_give_the_residual_sum_of_squares_as_a_quadratic(nested):
    model, chosen, data = nested
    rng = np.random.default_rng(3)
    with jax.enable_x64(True):
        effects = tuple(jnp.asarray(rng.normal(size=z.shape[0])) for z in data["zz"])
        beta = jnp.asarray(rng.normal(size=model.design.X.shape[1]))
        resid = gg.residuals(chosen, beta, effects, data)
        sd = 0.8
        for group in ("other", "parent", "child"):
            k = _term(model, group)
            chain = next(c for c in chosen.chains if k in c)
            finest = gg.level_sums((chain[-1],), resid, data)[chain[-1]]
            zr = gg.sums_at(chain, k, finest, data)
            np.testing.assert_allclose(zr, gg.level_sums(chain, resid, data)[k])
            a, b = (float(v) for v in gg.scale_moments(k, effects, zr, data))

            def rss(s, k=k):  # term k's effects at sd s, standardised effects fixed
                scaled = tuple(e * (s / sd) if i == k else e for i, e in enumerate(effects))
                r = gg.residuals(chosen, beta, scaled, data)
                return float(r @ r)

            for s in (0.3, 1.7):  # rss(s) - rss(sd) = (s^2 - sd^2) A_u - 2 (s - sd) B_u
                expected = (s**2 - sd**2) * a / sd**2 - 2 * (s - sd) * b / sd
                assert rss(s) - rss(sd) == pytest.approx(expected, rel=1e-9), group


def test_child_moments_give_the_childrens_prior_as_a_quadratic(nested):
    model, chosen, data = nested
    parent, child = _term(model, "parent"), _term(model, "child")
    rng = np.random.default_rng(4)
    with jax.enable_x64(True):
        effects = tuple(jnp.asarray(rng.normal(size=z.shape[0])) for z in data["zz"])
        a, b = (float(v) for v in gg.child_moments(child, parent, effects, data))
        codes = np.asarray(data["parent_codes"][child])[: int(data["levels"][child])]
        coefficients = np.asarray(effects[child] + effects[parent][data["parent_codes"][child]])
    coefficients = coefficients[: len(codes)]
    sd = 0.5

    def squares(s):  # the children's effects, coefficients fixed, parent at sd s
        parent_effects = np.asarray(effects[parent]) * (s / sd)
        return float(np.sum((coefficients - parent_effects[codes]) ** 2))

    for s in (0.2, 1.4):
        expected = (s**2 - sd**2) * a / sd**2 - 2 * (s - sd) * b / sd
        assert squares(s) - squares(sd) == pytest.approx(expected, rel=1e-9)


def test_zero_weights_leave_rows_out_of_every_sum():
    model = _nested_crossed(5)
    chosen = gg.layout(model.design, model.structure)
    weights = np.ones(model.design.n)
    weights[::3] = 0.0
    weighted = gg.data_arrays(model.design, chosen, weights)
    kept = weights > 0
    X, y = model.design.X[kept], model.design.y[kept]
    assert weighted["n"] == kept.sum()
    np.testing.assert_allclose(weighted["XtX"], X.T @ X)
    np.testing.assert_allclose(weighted["Xty"], X.T @ y)
    for k, block in enumerate(model.design.blocks):
        counts = np.bincount(block.codes[kept], minlength=weighted["zz"][k].shape[0])
        np.testing.assert_allclose(weighted["zz"][k], counts)


def test_prior_log_densities_match_numpyro():
    frame = pd.DataFrame({"y": np.arange(20.0), "g": [f"g{i % 4}" for i in range(20)]})
    model = ml.Model("y ~ 1 + (1 | g)", frame)
    st = structure_of(model.spec)
    from multilevel.backends.numpyro_model import prior_arrays

    prior = prior_arrays(model.spec)
    one = gg.element_log_prior(st.sd_groups, prior["sd"], 0)
    law = model.spec.prior_of[model.spec.sd_names[0]]
    loc, scale = law.loc_scale()
    for value in (0.3, 2.0, 7.5):
        expected = law.to_numpyro().log_prob(value) + np.log(scale)  # up to a constant
        assert float(one(value)) == pytest.approx(float(expected), rel=1e-5)


def test_terms_of_several_covariates_are_refused_by_name():
    rng = np.random.default_rng(6)
    frame = pd.DataFrame(
        {"y": rng.normal(size=40), "x": rng.normal(size=40), "g": [f"g{i % 5}" for i in range(40)]}
    )
    model = ml.Model("y ~ x + (1 + x | g)", frame)
    reason = gg.unsupported(model.design, model.structure)
    assert reason is not None and "1 + x | g" in reason and "one covariate" in reason
