"""``compile.options``: a sampler's own XLA options over the package's, inside a block
only; ``row_pass_options``, the fusion emitters for samplers over many rows, and that
they compute what the usual compile does."""

import jax
import numpy as np
import pandas as pd
import pytest
from numpyro import handlers
from numpyro.infer.util import potential_energy, unconstrain_fn

import multilevel as ml
from multilevel.inference import compile as compiling


def test_options_override_inside_the_block_and_are_restored():
    if jax.default_backend() != "cpu":  # the options are the CPU compiler's
        assert compiling.compiler_options() == {}
        return
    assert compiling.compiler_options() == compiling.COMPILER_OPTIONS
    with compiling.options(xla_cpu_use_fusion_emitters=True):
        assert compiling.compiler_options()["xla_cpu_use_fusion_emitters"] is True
        with compiling.options():  # nested, nothing new: the outer override stays
            assert compiling.compiler_options()["xla_cpu_use_fusion_emitters"] is True
    assert compiling.compiler_options() == compiling.COMPILER_OPTIONS


def test_row_pass_options_turn_the_fusion_emitters_on_from_the_threshold():
    if jax.default_backend() != "cpu":
        return
    with compiling.row_pass_options(compiling.ROW_PASS_MIN_WORK - 1):
        assert compiling.compiler_options() == compiling.COMPILER_OPTIONS
    with compiling.row_pass_options(compiling.ROW_PASS_MIN_WORK):
        assert compiling.compiler_options() == {
            **compiling.COMPILER_OPTIONS,
            **compiling.FUSION_EMITTERS,
        }
        with compiling.base_options():  # the other samplers' chain initialisation
            assert compiling.compiler_options() == compiling.COMPILER_OPTIONS
        with compiling.run_once_options():  # the joint sampler's: no emitters, -O0
            assert compiling.compiler_options() == {
                **compiling.COMPILER_OPTIONS,
                **compiling.RUN_ONCE_OPTIONS,
            }
        assert compiling.compiler_options()["xla_cpu_use_fusion_emitters"] is True
    assert compiling.compiler_options() == compiling.COMPILER_OPTIONS


def test_the_fusion_emitters_compute_the_same_potential_and_gradient():
    """The joint sampler's programs over many rows compile with XLA's fusion emitters:
    the same potential and gradient as the package's usual compile, at random points.
    Tolerance: float32 sums of 5,000 rows in another order (relative 1e-7 per row, the
    value about 3,000): 1e-4 relative, 1e-3 absolute on the gradient."""
    rng = np.random.default_rng(3)
    n, groups = 5_000, 50
    g = rng.integers(0, groups, n)
    x = rng.standard_normal(n)
    eta = -0.3 + rng.normal(0, 0.7, groups)[g] + (0.5 + rng.normal(0, 0.3, groups)[g]) * x
    data = pd.DataFrame(
        {"y": (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(int), "x": x, "g": g.astype(str)}
    )
    model = ml.Model("y ~ x + (1 + x | g)", data, family="bernoulli")
    args = model.model_args()
    numpyro_model = model.numpyro_model()

    def prior_draw(key):  # unconstrained, compiled: NumPyro's initialize_model took 11 s
        trace = handlers.trace(handlers.seed(numpyro_model, key)).get_trace(*args)
        latent = {
            name: site["value"]
            for name, site in trace.items()
            if site["type"] == "sample" and not site["is_observed"]
        }
        return unconstrain_fn(numpyro_model, args, {}, latent)

    draw = jax.jit(prior_draw)
    points = [draw(jax.random.PRNGKey(i)) for i in range(2)]

    def value_and_gradient(z):
        return potential_energy(numpyro_model, args, {}, z)

    usual = compiling.jit(jax.value_and_grad(value_and_gradient))
    with compiling.options(**compiling.FUSION_EMITTERS):
        fused = compiling.jit(jax.value_and_grad(value_and_gradient))
    for z in points:
        (v0, g0), (v1, g1) = usual(z), fused(z)
        assert float(v1) == pytest.approx(float(v0), rel=1e-4)
        for name in g0:
            np.testing.assert_allclose(g1[name], g0[name], rtol=1e-4, atol=1e-3, err_msg=name)
