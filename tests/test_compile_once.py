"""Compile once: a refit of same-shaped data reuses every compiled program.

The model function takes data and prior numbers as arguments, so only the structure and
the shapes key a compiled program (BlackJAX's ``test_compilation.py`` is the model).
These checks cover what the distributional work added; the older ones live beside the
fits they reuse (``models/test_gaussian.py``: a same-seed refit; ``workflow/test_recover.py``:
replications; ``workflow/test_kfold.py``: folds with zero weights).
"""

import jax.monitoring
import numpy as np
import pandas as pd
import pytest

import multilevel as ml
from multilevel import loglik
from multilevel.inference import nuts

SETTINGS = dict(chains=1, warmup=100, draws=100, progress=False, warn=False)
LISTENING: list[list] = []  # lists that record the names of the functions JAX traces


def _record_compiles(event, duration, **kwargs):
    if event == "/jax/core/compile/jaxpr_trace_duration":
        for names in LISTENING:
            names.append(kwargs.get("fun_name", event))


jax.monitoring.register_event_duration_secs_listener(_record_compiles)


def traces() -> int:
    return sum(nuts.TRACE_COUNTS.values())


@pytest.fixture(scope="module")
def hetero():
    rng = np.random.default_rng(5)
    g = np.repeat(np.arange(6), 10)
    x = rng.normal(size=60)
    y = 1 + 0.5 * x + rng.normal(0, 0.3, 6)[g] + np.exp(-0.5 + 0.3 * x) * rng.normal(size=60)
    data = pd.DataFrame({"y": y, "x": x, "g": g})
    model = ml.Model(ml.bf("y ~ x + (1 | g)", sigma="~ x"), data)
    return model, model.fit(seed=1, **SETTINGS)


def test_a_new_response_reuses_the_distributional_sampler(hetero):
    model, fit = hetero
    before = traces()
    y = model.simulate(seed=3)["y"].to_numpy()
    refit = model.with_response(y).fit(seed=2, **SETTINGS)
    assert traces() == before, "a same-shaped refit of a distributional model recompiled"
    # it sampled the new response's posterior, not the old one's
    assert not np.allclose(refit.draws("sigma_x"), fit.draws("sigma_x"))


def test_other_prior_numbers_reuse_the_sampler(hetero):
    """Prior numbers are arguments: a new scale for sigma's slope does not recompile."""
    model, _ = hetero
    before = traces()
    other = ml.Model(
        ml.bf("y ~ x + (1 | g)", sigma="~ x"), model.data, priors={"sigma_b": ml.Normal(0, 2)}
    )
    other.fit(seed=1, **SETTINGS)
    assert traces() == before


def test_one_log_likelihood_program_per_layout(hetero):
    model, fit = hetero
    key = ("gaussian", "identity", loglik.layout_of(model.spec))
    assert key in loglik._PROGRAMS  # the fit stored its log-likelihood with it
    before = len(loglik._PROGRAMS)
    loglik.log_likelihood_values(model.spec, model.design, fit.idata.posterior)
    assert len(loglik._PROGRAMS) == before  # computed again by the same program


def test_data_of_another_size_in_the_bucket_reuses_every_program():
    """Rows and groups are padded to their size bucket (``shape_buckets``): a data set of
    another size in the same bucket (57 rows in 12 groups -> 64 rows, 12 groups; then 60
    rows in 11 groups, also 64 and 12) compiles nothing, neither the sampler nor the
    stored log-likelihood's program; its draws have its own number of groups."""
    rng = np.random.default_rng(11)

    def data(n, groups):
        g = np.arange(n) % groups
        x = rng.normal(size=n)
        y = rng.poisson(np.exp(0.3 + 0.4 * x + rng.normal(0, 0.5, groups)[g]))
        return pd.DataFrame({"y": y, "x": x, "g": g})

    formula = "y ~ x + (1 + x | g)"
    ml.Model(formula, data(57, 12), family="poisson").fit(seed=1, **SETTINGS)
    compiled = []
    # registered for good (JAX has no public way to remove one); it records while the
    # list is the one listening
    LISTENING.append(compiled)
    try:
        before = traces()
        fit = ml.Model(formula, data(60, 11), family="poisson").fit(seed=1, **SETTINGS)
    finally:
        LISTENING.remove(compiled)
    assert traces() == before, "a data set in the same bucket retraced the sampler"
    assert compiled == [], f"compiled {compiled} for a data set in the same bucket"
    assert fit.idata.posterior["Intercept|g"].shape == (1, 100, 11)
    assert fit.idata.log_likelihood["y"].shape == (1, 100, 60)
