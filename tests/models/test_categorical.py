"""The categorical family (multinomial logit, brms' ``categorical``): one linear
predictor per category but the first, each with the whole formula and its own group
terms, named ``mu<label>_...`` as brms names them.

Reference: a hand-written NumPyro model of the same simulated choices (600 rows, three
modes of transport, 15 groups) with the same priors (read from the spec), softmax of
``[0, eta_car, eta_train]``; agreement within Monte Carlo error (``same_posterior``:
means within 4.5 combined MCSEs, sds within 12%). The same fit must hold the simulation's
truth within 4 posterior sds.
"""

import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
import pandas as pd
import pytest
from posterior_checks import numpyro_priors, same_posterior
from test_distributional import reference_fit

import multilevel as ml
from multilevel.errors import DataError

SETTINGS = dict(chains=2, warmup=500, draws=750, progress=False, warn=False)
TRUTH = {"mucar_Intercept": 0.5, "mucar_x": 0.8, "mutrain_Intercept": -0.3,
         "mutrain_x": -0.6, "sd(mucar_Intercept|g)": 0.5, "sd(mutrain_Intercept|g)": 0.5}  # fmt: skip


@pytest.fixture(scope="module")
def choices():
    rng = np.random.default_rng(1)
    n, groups = 600, 15
    g = rng.integers(0, groups, n)
    x = rng.normal(size=n)
    u = rng.normal(0, 0.5, (groups, 2))
    logits = np.stack([np.zeros(n), 0.5 + 0.8 * x + u[g, 0], -0.3 - 0.6 * x + u[g, 1]], axis=1)
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    mode = np.array([rng.choice(["bus", "car", "train"], p=row) for row in p])
    return pd.DataFrame({"mode": mode, "x": x, "g": g})


@pytest.fixture(scope="module")
def model(choices):
    return ml.Model("mode ~ x + (1 | g)", choices, family="categorical")


@pytest.fixture(scope="module")
def fit(model):
    return model.fit(seed=3, **SETTINGS)


def choice_reference(y, x, codes, n_groups, priors):
    etas = []
    for name in ("mucar", "mutrain"):
        intercept = numpyro.sample(f"{name}_Intercept", priors[f"{name}_Intercept"])
        slope = numpyro.sample(f"{name}_x", priors[f"{name}_x"])
        sd_name = f"sd({name}_Intercept|g)"
        tau = numpyro.sample(sd_name, priors[sd_name])
        with numpyro.plate(f"groups_{name}", n_groups):
            u = tau * numpyro.sample(f"z_{name}", dist.Normal(0, 1))
        etas.append(intercept + slope * x + u[codes])
    logits = jnp.stack([jnp.zeros_like(x), *etas], axis=-1)
    numpyro.sample("y", dist.CategoricalLogits(logits), obs=y)


def test_names_follow_brms(model):
    spec = model.spec
    assert spec.response_levels == ("bus", "car", "train")
    assert [d.name for d in spec.dpars] == ["mucar", "mutrain"]
    assert set(TRUTH) <= set(spec.hyper_names) and "Intercept" not in spec.columns
    assert "(the first is the reference)" in spec.describe()


def test_matches_a_hand_written_numpyro_model(choices, model, fit):
    assert fit.diagnostics.divergences <= 2
    args = (
        jnp.asarray(model.design.y, dtype=jnp.int32),
        jnp.asarray(choices["x"].to_numpy(), dtype=jnp.float32),
        jnp.asarray(model.design.dpars[0].blocks[0].codes),
        15,
        numpyro_priors(model.spec),
    )
    names = list(model.spec.hyper_names)
    same_posterior(fit, reference_fit(choice_reference, args, seed=4, names=names), names)


def test_the_truth_is_recovered(fit):
    """6 parameters within 4 posterior sds (a false alarm ~4e-4)."""
    summary = fit.summary()
    z = (summary.loc[list(TRUTH), "mean"] - pd.Series(TRUTH)) / summary.loc[list(TRUTH), "sd"]
    assert (z.abs() < 4).all(), z


def test_predictions_are_probabilities_and_categories(choices, fit):
    probabilities = fit.predict(choices.head(4)).draws["mode"]
    assert probabilities.dims == ("chain", "draw", "obs", "category")
    np.testing.assert_allclose(probabilities.sum("category"), 1.0, rtol=1e-9)
    drawn = fit.predict(choices.head(4), kind="response").values
    assert set(np.unique(drawn)) <= {1.0, 2.0, 3.0}
    assert np.isfinite(fit.loo().elpd)


def test_a_single_category_is_refused():
    data = pd.DataFrame({"mode": ["car"] * 4, "x": [0.1, 0.4, -0.2, 0.8]})
    with pytest.raises(DataError, match="one category"):
        ml.Model("mode ~ x", data, family="categorical")
